#!/usr/bin/env bash
# Builds the TensorRT plans of a repository that `repo-gen --runtime tensorrt`
# wrote. repo-gen cannot build them itself: a plan is specific to the GPU and
# the TensorRT version that load it. It writes the exact trtexec commands
# (ONNX file, plan file, min/opt/max shapes from the batch settings, --fp16
# for --dtype fp16) into <repository>/*build_tensorrt_plans.sh, one script per
# --name-prefix; this runs each of them.
#
# By default inside the NGC container whose TensorRT matches the server
# (trtexec at /usr/src/tensorrt/bin/trtexec), with the GPUs passed through;
# --local uses the trtexec on PATH (or $TRTEXEC) instead. The plans land beside
# each model.onnx as model.plan, owned by the calling user.
#
#   scripts/build-tensorrt-plans.sh model_repository
#   scripts/build-tensorrt-plans.sh --local model_repository
#   TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3 scripts/build-tensorrt-plans.sh model_repository
set -euo pipefail

readonly IMAGE=${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:24.10-py3}
readonly CONTAINER_TRTEXEC=/usr/src/tensorrt/bin/trtexec

mode=docker
if [[ ${1:-} == "--local" ]]; then
    mode=local
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [--local] MODEL_REPOSITORY" >&2
    exit 2
fi
repo=$(cd "$1" && pwd)
shopt -s nullglob
scripts=("$repo"/*build_tensorrt_plans.sh)
if [[ ${#scripts[@]} -eq 0 ]]; then
    echo "build-tensorrt-plans: $repo has no *build_tensorrt_plans.sh; write it with repo-gen --runtime tensorrt" >&2
    exit 1
fi

for script in "${scripts[@]}"; do
    name=$(basename "$script")
    echo "build-tensorrt-plans: running $name" >&2
    if [[ $mode == local ]]; then
        TRTEXEC=${TRTEXEC:-trtexec} sh "$script"
    else
        if ! command -v docker >/dev/null; then
            echo "build-tensorrt-plans: docker is not installed; use --local with trtexec on PATH" >&2
            exit 1
        fi
        docker run --rm --gpus all --user "$(id -u):$(id -g)" \
            -v "$repo":/models -w /models -e TRTEXEC="$CONTAINER_TRTEXEC" \
            "$IMAGE" sh "/models/$name"
    fi
done
echo "build-tensorrt-plans: plans written under $repo" >&2
