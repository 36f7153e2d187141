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
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CLIP_CACHE_DIR:-$root/.cache}
dest="$cache/triton-$SERVER_VERSION"
binary="$dest/pytriton/tritonserver/bin/tritonserver"

if [[ -x "$binary" && -f "$dest/.complete" ]]; then
    echo "$binary"
    exit 0
fi

python=$(command -v python3 || command -v python || true)
if [[ -z "$python" ]]; then
    echo "install-triton: python3 with pip is needed to download the $WHEEL_SPEC wheel" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install-triton: downloading $WHEEL_SPEC (tritonserver $SERVER_VERSION) ..." >&2
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_35_x86_64 --python-version 3.11 \
        "$WHEEL_SPEC" -d "$work" >&2; then
    echo "install-triton: pip could not download $WHEEL_SPEC; check that PyPI is reachable" >&2
    exit 1
fi
wheel=$(ls "$work"/nvidia_pytriton-*.whl)

# Keep the wheel's layout: the binary finds its libraries through an RPATH
# relative to itself ($ORIGIN/../../../nvidia_pytriton.libs).
rm -rf "$dest"
mkdir -p "$dest"
"$python" - "$wheel" "$dest" <<'PY'
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
