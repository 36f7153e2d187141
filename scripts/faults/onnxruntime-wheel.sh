#!/usr/bin/env bash
# The ONNX Runtime library of another release, for scripts/faults.sh: the C
# library of PyPI's onnxruntime==VERSION wheel, unpacked into the project's
# cache as scripts/install-onnxruntime.sh does for the pinned one. Prints its
# path. Nothing is pip-installed.
#
#   scripts/faults/onnxruntime-wheel.sh 1.20.1
set -euo pipefail
version=${1:?usage: onnxruntime-wheel.sh VERSION}
WHEEL_TOOL=faults
source "$(dirname "${BASH_SOURCE[0]}")/../lib/wheel.sh"
dest="$wheel_cache/onnxruntime-$version"
library="$dest/libonnxruntime.so.$version"
if [[ ! -f "$dest/.complete" ]]; then
    wheel_lock "onnxruntime-$version"
fi
if [[ -f "$dest/.complete" ]]; then
    echo "$library"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(wheel_download "onnxruntime==$version" "$work" \
    manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64)
rm -rf "$dest"
mkdir -p "$dest"
"$wheel_python" - "$wheel" "$dest" "$version" <<'PY'
import os, sys, zipfile
wheel, dest, version = sys.argv[1:4]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as archive:
    if name not in archive.namelist():
        sys.exit(f"faults: the wheel lacks {name}")
    target = os.path.join(dest, os.path.basename(name))
    with archive.open(name) as src, open(target, "wb") as out:
        out.write(src.read())
    os.chmod(target, 0o755)
PY
touch "$dest/.complete"
echo "$library"
