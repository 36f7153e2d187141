#!/usr/bin/env bash
# Installs NVIDIA's official Python client, tritonclient[grpc] 2.51.0 (the
# release that matches the server), into a virtual environment under .cache/.
# The tests use it to show that the repository repo-gen writes serves the
# official client too; the benchmarks compare clip-client with it.
# Prints the environment's python on its last line.
set -euo pipefail

readonly SPEC="tritonclient[grpc]==2.51.0"
WHEEL_TOOL=install-tritonclient
source "$(dirname "${BASH_SOURCE[0]}")/lib/wheel.sh"
venv="$wheel_cache/venv-tritonclient"
python="$venv/bin/python"

installed() { [[ -x "$python" && -f "$venv/.complete" ]]; }
if installed; then
    echo "$python"
    exit 0
fi
wheel_lock tritonclient
if installed; then
    echo "$python"
    exit 0
fi
if [[ -z "$wheel_python" ]] || ! "$wheel_python" -m venv --help >/dev/null 2>&1; then
    echo "install-tritonclient: python3 with the venv module is needed (apt install python3-venv)" >&2
    exit 1
fi
rm -rf "$venv"
"$wheel_python" -m venv "$venv" >&2
echo "install-tritonclient: installing $SPEC ..." >&2
if ! "$python" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2; then
    echo "install-tritonclient: pip could not install $SPEC; check that PyPI is reachable" >&2
    exit 1
fi
touch "$venv/.complete"
echo "$python"
