#!/usr/bin/env bash
# Starts Triton on a model repository with the project's `clip` backend.
# With Docker and an NVIDIA GPU present it runs the NGC container; otherwise
# the local server from scripts/install-triton.sh. Runs in the foreground.
#
#   scripts/launch-triton.sh --model-repository model_repository
#   scripts/launch-triton.sh --model-repository DIR --mode local --http-port 9000 -- --log-verbose=1
set -euo pipefail

readonly NGC_IMAGE="nvcr.io/nvidia/tritonserver:24.10-py3"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CLIP_CACHE_DIR:-$root/.cache}

usage() {
    cat <<USAGE
Usage: $0 --model-repository DIR [options] [-- extra tritonserver flags]
  --model-repository DIR  the repository to serve (required)
  --backend-lib PATH      libtriton_clip.so to serve (default: release/libtriton_clip.so in cargo's
                          target folder, which honours CARGO_TARGET_DIR)
  --mode auto|local|docker  auto: the NGC container when Docker and a GPU are present, else local
  --http-port N --grpc-port N --metrics-port N   (defaults 8000 8001 8002)
USAGE
}

source "$root/scripts/lib/target.sh"
repository="" backend_lib="" mode=auto
http=8000 grpc=8001 metrics=8002
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model-repository) repository=$2; shift 2 ;;
        --backend-lib) backend_lib=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --http-port) http=$2; shift 2 ;;
        --grpc-port) grpc=$2; shift 2 ;;
        --metrics-port) metrics=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "launch-triton: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[[ -n "$repository" ]] || { usage >&2; exit 2; }
[[ -n "$backend_lib" ]] || backend_lib="$(cargo_target_dir)/release/libtriton_clip.so"
[[ -d "$repository" ]] || { echo "launch-triton: no model repository at '$repository'" >&2; exit 1; }
if [[ ! -f "$backend_lib" ]]; then
    echo "launch-triton: no backend library at '$backend_lib'; build it with: cargo build --release -p clip-backend" >&2
    exit 1
fi
repository=$(cd "$repository" && pwd)

gpu_container_possible() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 &&
        command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1
}
if [[ "$mode" == auto ]]; then
    if gpu_container_possible; then mode=docker; else mode=local; fi
fi

# Triton finds a backend as <backend-directory>/<name>/libtriton_<name>.so.
# The folder is named by the library's hash: a rebuilt library never
# replaces a file that a running server has loaded, and nothing piles up.
backends="$cache/backends/$(sha256sum "$backend_lib" | cut -c1-16)"
if [[ ! -f "$backends/clip/libtriton_clip.so" ]]; then
    mkdir -p "$backends/clip"
    cp "$backend_lib" "$backends/clip/.libtriton_clip.so.$$"
    mv "$backends/clip/.libtriton_clip.so.$$" "$backends/clip/libtriton_clip.so"
fi

# glibc raises its mmap threshold to the size of each large block freed (up
# to 32 MiB), after which decode and batch buffers come from the arenas and
# their freed pages stay in the process: RSS crept up under the soak while
# the live heap stayed flat. A fixed threshold keeps large buffers mmapped,
# returned to the system when freed. Set it yourself to override.
malloc_mmap_threshold=${MALLOC_MMAP_THRESHOLD_:-131072}

case "$mode" in
    docker)
        echo "launch-triton: NGC container $NGC_IMAGE on all GPUs" >&2
        exec docker run --rm --gpus all --shm-size=1g \
            -e MALLOC_MMAP_THRESHOLD_="$malloc_mmap_threshold" \
            -p "$http:8000" -p "$grpc:8001" -p "$metrics:8002" \
            -v "$repository:/models:ro" -v "$backends/clip:/opt/tritonserver/backends/clip:ro" \
            "$NGC_IMAGE" tritonserver --model-repository=/models "${extra[@]}"
        ;;
    local)
        server=$("$root/scripts/install-triton.sh")
        # The wheel's Python backend rides along, for models that want it.
        ln -sfn "$(dirname "$server")/../backends/python" "$backends/python"
        echo "launch-triton: local $server" >&2
        # --cache-directory: the wheel's response cache (used with --cache-config local,size=N).
        MALLOC_MMAP_THRESHOLD_=$malloc_mmap_threshold exec "$server" --model-repository="$repository" --backend-directory="$backends" \
            --cache-directory="$(dirname "$server")/../caches" \
            --http-port="$http" --grpc-port="$grpc" --metrics-port="$metrics" "${extra[@]}"
        ;;
    *) echo "launch-triton: --mode must be auto, local or docker" >&2; exit 2 ;;
esac
