#!/usr/bin/env bash
# First-request latency after a load, with and without repo-gen's model
# warmup: for each, a fresh repository (ViT-B-32, real architecture, random
# weights), a fresh local tritonserver, then `clip-client encode` of one
# photo and one sentence, twice each (the second call is the warm figure).
# Prints a Markdown table; never asserts a time.
#
#   scripts/bench/first-request.sh [--model ViT-B-32::openai] [--photo FILE]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib/target.sh
model="ViT-B-32::openai" photo=tests/fixtures/images/inputs/large_2mp.jpg
while [[ $# -gt 0 ]]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --photo) photo=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "first-request: unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release -p clip-backend -p repo-gen -p clip-client-cli >&2
bin=$(cargo_target_dir)/release
ort=$(bash scripts/install-onnxruntime.sh | tail -1)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/serve.sh
ms() { echo $(($(date +%s%N) / 1000000)); }
# timed ARGS...: milliseconds one clip-client call takes.
timed() {
    local start
    start=$(ms)
    "$bin/clip-client" --server "grpc://127.0.0.1:$grpc" encode "$@" >/dev/null
    echo $(($(ms) - start))
}

echo "| repository | load to ready, s | photo: 1st call, ms | photo: 2nd, ms | sentence: 1st, ms | sentence: 2nd, ms |"
echo "| --- | --- | --- | --- | --- | --- |"
for mode in warmup no-warmup; do
    flags=()
    [[ $mode == no-warmup ]] && flags=(--no-warmup)
    "$bin/repo-gen" --model "$model" --random-init --seed 0 --tokenizer tests/fixtures/text/tokenizer.json \
        --out "$work/$mode" --runtime ort --gpus none --ort-library "$ort" "${flags[@]}" >&2
    start=$(ms)
    serve "$work/$mode" "$work/$mode.log"
    ready=$(($(ms) - start))
    p1=$(timed "$photo") p2=$(timed "$photo")
    t1=$(timed --text "a photo of a cat") t2=$(timed --text "a photo of a cat")
    printf '| %s | %.1f | %s | %s | %s | %s |\n' "$mode" "$(echo "$ready / 1000" | bc -l)" "$p1" "$p2" "$t1" "$t2"
    kill "$server"; wait "$server" 2>/dev/null || true
done
