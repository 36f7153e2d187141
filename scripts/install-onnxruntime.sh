#!/usr/bin/env bash
# Installs the ONNX Runtime 1.31.1 shared library (CPU) for this host from the
# PyPI wheel onnxruntime==1.31.1. Nothing is pip-installed: the wheel is
# downloaded and only the C library is unpacked into the project's cache
# folder. clip-export loads it at run time (ort's load-dynamic) to verify the
# ONNX models it writes; ort's `api-31` feature needs exactly this 1.31 line.
# Prints the full path of libonnxruntime.so on its last line, ready for
# ORT_DYLIB_PATH.
#
#   scripts/install-onnxruntime.sh            # install (or reuse) and print the path
#   CLIP_CACHE_DIR=/opt/cache scripts/install-onnxruntime.sh
set -euo pipefail

readonly VERSION="1.31.1"
readonly WHEEL_SPEC="onnxruntime==$VERSION"
WHEEL_TOOL=install-onnxruntime
source "$(dirname "${BASH_SOURCE[0]}")/lib/wheel.sh"
dest="$wheel_cache/onnxruntime-$VERSION"
library="$dest/libonnxruntime.so.$VERSION"

installed() { [[ -f "$library" && -f "$dest/.complete" ]]; }
if ! installed; then
    wheel_lock "onnxruntime-$VERSION"
fi
if installed; then
    echo "$library"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(wheel_download "$WHEEL_SPEC" "$work" \
    manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64)

# The library links only glibc and libstdc++; its RUNPATH is $ORIGIN, where
# libonnxruntime_providers_shared.so (needed by any execution-provider
# plug-in) is kept beside it. The Python extension module is left behind.
rm -rf "$dest"
mkdir -p "$dest"
"$wheel_python" - "$wheel" "$dest" "$VERSION" <<'PY'
import os, sys, zipfile
wheel, dest, version = sys.argv[1:4]
wanted = {
    f"onnxruntime/capi/libonnxruntime.so.{version}",
    "onnxruntime/capi/libonnxruntime_providers_shared.so",
}
with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    missing = sorted(wanted - names)
    if missing:
        sys.exit(f"install-onnxruntime: the wheel lacks {', '.join(missing)}")
    for name in sorted(wanted):
        target = os.path.join(dest, os.path.basename(name))
        with archive.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
        os.chmod(target, 0o755)
PY
# The soname is libonnxruntime.so.1; give dlopen-by-soname users that name too.
ln -sf "libonnxruntime.so.$VERSION" "$dest/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.$VERSION" "$dest/libonnxruntime.so"
touch "$dest/.complete"
echo "install-onnxruntime: installed ONNX Runtime $VERSION in $dest" >&2
echo "$library"
