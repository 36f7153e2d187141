#!/usr/bin/env bash
# Installs Triton's load generator perf_analyzer 2.51.0 (the release that
# matches the server) from the PyPI wheel tritonclient==2.51.0, into .cache/.
# Nothing is pip-installed: the wheel is downloaded and the binary unpacked.
# perf_analyzer needs libb64.so.0d and libcudart.so.12; the server wheel
# (scripts/install-triton.sh) bundles both under other names, so they are
# linked into a folder of their own and a wrapper sets LD_LIBRARY_PATH.
# Prints the wrapper's path on its last line.
set -euo pipefail

readonly WHEEL_SPEC="tritonclient==2.51.0"
WHEEL_TOOL=install-perf-analyzer
source "$(dirname "${BASH_SOURCE[0]}")/../lib/wheel.sh"
dest="$wheel_cache/perf-analyzer-2.51.0"
wrapper="$dest/perf_analyzer"

installed() { [[ -x "$wrapper" && -f "$dest/.complete" ]]; }
if installed; then
    echo "$wrapper"
    exit 0
fi
wheel_lock perf-analyzer
if installed; then
    echo "$wrapper"
    exit 0
fi

server=$(bash "$wheel_root/scripts/install-triton.sh" | tail -1)
server_libs=$(cd "$(dirname "$server")/../../../nvidia_pytriton.libs" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(wheel_download "$WHEEL_SPEC" "$work" manylinux1_x86_64)
rm -rf "$dest"
mkdir -p "$dest/lib"
"$wheel_python" - "$wheel" "$dest" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/bin/perf_analyzer"))
    with archive.open(name) as source, open(os.path.join(dest, "perf_analyzer.bin"), "wb") as target:
        target.write(source.read())
PY
chmod +x "$dest/perf_analyzer.bin"
link() { # link SONAME GLOB: the server wheel's copy of a library under its usual name
    local found
    found=$(ls "$server_libs"/$2 2>/dev/null | head -1)
    if [[ -z "$found" ]]; then
        echo "install-perf-analyzer: no $2 in $server_libs" >&2
        exit 1
    fi
    ln -sfn "$found" "$dest/lib/$1"
}
link libb64.so.0d 'libb64-*.so.0d'
link libcudart.so.12 'libcudart-*.so.12*'
cat >"$wrapper" <<SH
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$dest/lib:$server_libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$dest/perf_analyzer.bin" "\$@"
SH
chmod +x "$wrapper"
if ! "$wrapper" --help >/dev/null 2>&1 && ! "$wrapper" --version >/dev/null 2>&1; then
    echo "install-perf-analyzer: perf_analyzer does not start on this host:" >&2
    "$wrapper" --help 2>&1 | head -5 >&2
    exit 1
fi
touch "$dest/.complete"
echo "install-perf-analyzer: installed perf_analyzer 2.51.0 in $dest" >&2
echo "$wrapper"
