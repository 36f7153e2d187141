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
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CLIP_CACHE_DIR:-$root/.cache}
dest="$cache/onnxruntime-$VERSION"
library="$dest/libonnxruntime.so.$VERSION"

if [[ -f "$library" && -f "$dest/.complete" ]]; then
    echo "$library"
    exit 0
fi

# Test binaries may run this at the same time; one installs, the others wait.
mkdir -p "$cache"
if command -v flock >/dev/null; then
    exec 9>"$cache/.onnxruntime-$VERSION.lock"
    flock 9
    if [[ -f "$library" && -f "$dest/.complete" ]]; then
        echo "$library"
        exit 0
    fi
fi

python=$(command -v python3 || command -v python || true)
if [[ -z "$python" ]]; then
    echo "install-onnxruntime: python3 with pip is needed to download the $WHEEL_SPEC wheel" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install-onnxruntime: downloading $WHEEL_SPEC ..." >&2
# pip does not widen an explicit --platform to older manylinux tags, so name
# the ones the x86_64 wheel has been published under.
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --python-version 3.11 \
        "$WHEEL_SPEC" -d "$work" >&2; then
    echo "install-onnxruntime: pip could not download $WHEEL_SPEC; check that PyPI is reachable" >&2
    exit 1
fi
wheel=$(ls "$work"/onnxruntime-*.whl)

# The library links only glibc and libstdc++; its RUNPATH is $ORIGIN, where
# libonnxruntime_providers_shared.so (needed by any execution-provider
# plug-in) is kept beside it. The Python extension module is left behind.
rm -rf "$dest"
mkdir -p "$dest"
"$python" - "$wheel" "$dest" "$VERSION" <<'PY'
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
