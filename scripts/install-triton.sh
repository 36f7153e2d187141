#!/usr/bin/env bash
# Installs a real Triton Inference Server (tritonserver 2.51.0, the NGC 24.10
# release) for this host from the PyPI wheel nvidia-pytriton==0.7.0, which
# bundles the server binary and its libraries. Nothing is pip-installed: the
# wheel is downloaded and unpacked into the project's cache folder.
# Prints the path of the tritonserver binary on its last line.
#
#   scripts/install-triton.sh            # install (or reuse) and print the path
#   CLIP_CACHE_DIR=/opt/cache scripts/install-triton.sh
set -euo pipefail

readonly WHEEL_SPEC="nvidia-pytriton==0.7.0"
readonly SERVER_VERSION="2.51.0"
WHEEL_TOOL=install-triton
source "$(dirname "${BASH_SOURCE[0]}")/lib/wheel.sh"
dest="$wheel_cache/triton-$SERVER_VERSION"
binary="$dest/pytriton/tritonserver/bin/tritonserver"

installed() { [[ -x "$binary" && -f "$dest/.complete" ]]; }
if ! installed; then
    wheel_lock "triton-$SERVER_VERSION"
fi
if installed; then
    echo "$binary"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(wheel_download "$WHEEL_SPEC" "$work" manylinux_2_35_x86_64)

# Keep the wheel's layout: the binary finds its libraries through an RPATH
# relative to itself ($ORIGIN/../../../nvidia_pytriton.libs).
rm -rf "$dest"
mkdir -p "$dest"
"$wheel_python" - "$wheel" "$dest" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
keep = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        if info.filename.startswith(keep) and not info.is_dir():
            path = archive.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(path, mode or 0o644)
PY
chmod +x "$binary" "$dest"/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
# `--help` exits non-zero even when it works, so look for its usage line.
usage=$("$binary" --help 2>&1 || true)
if [[ "$usage" != *"Usage: tritonserver"* ]]; then
    echo "install-triton: the unpacked tritonserver does not start on this host:" >&2
    echo "$usage" | head -5 >&2
    exit 1
fi
touch "$dest/.complete"
echo "install-triton: installed tritonserver $SERVER_VERSION in $dest" >&2
echo "$binary"
