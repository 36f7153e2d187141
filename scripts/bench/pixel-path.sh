#!/usr/bin/env bash
# The pixel path against the bytes path, per photo size: the tritonserver
# process's own CPU seconds per image (from /proc), bytes on the wire per
# image, the client's CPU seconds per image, and end-to-end images/s with
# client and server on this machine. One repository written with
# `repo-gen --pixel-path`, one local tritonserver, then `clip-client encode`
# of N copies of a photo with --preprocess server, then local.
# Prints a Markdown table; never asserts a time.
#
#   scripts/bench/pixel-path.sh [--images N] [--model ViT-B-32::openai]
#
# Default model: the tiny CLIP fixture, whose encoder costs next to nothing,
# so the server's CPU is its preprocessing and request handling; --model runs
# the real architecture with random weights (the encoder then dominates on a
# CPU-only machine).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib/target.sh
images=64 model=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --images) images=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "pixel-path: unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release -p clip-backend -p repo-gen -p clip-client-cli >&2
bin=$(cargo_target_dir)/release
ort=$(bash scripts/install-onnxruntime.sh | tail -1)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/serve.sh

if [[ -n $model ]]; then
    source_args=(--model "$model" --random-init --seed 0 --tokenizer tests/fixtures/text/tokenizer.json)
else
    source_args=(--weights tests/fixtures/tiny-clip/quick_gelu)
    model="tiny CLIP fixture"
fi
"$bin/repo-gen" "${source_args[@]}" --out "$work/repo" --runtime ort --gpus none \
    --ort-library "$ort" --pixel-path --no-warmup >&2
serve "$work/repo" "$work/server.log"
ticks=$(getconf CLK_TCK)
# server_cpu: the server's user + system CPU seconds so far.
server_cpu() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$server/stat"; }
size=$(grep -A1 '"image_size"' "$work/repo/clip_image_pixels/config.pbtxt" |
    sed -n 's/.*string_value: "\([0-9]*\)".*/\1/p')

echo "Model: $model; $images copies of each photo per run; $(nproc) cores shared by client and server."
echo
echo "| photo | path | server CPU ms/image | client CPU ms/image | wire KB/image | images/s |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for photo in coffee_q90.jpg large_2mp.jpg large_12mp.jpg; do
    file=tests/fixtures/images/inputs/$photo
    list=$work/$photo.txt
    for _ in $(seq "$images"); do echo "$file"; done >"$list"
    bytes=$(stat -c %s "$file")
    for path in server local; do
        before=$(server_cpu)
        TIMEFORMAT='%R %U %S'
        timing=$({ time "$bin/clip-client" --server "grpc://127.0.0.1:$grpc" encode \
            --preprocess "$path" --from "$list" -o "$work/out.npy" >/dev/null 2>&1; } 2>&1)
        after=$(server_cpu)
        read -r wall user sys <<<"$timing"
        wire=$bytes
        [[ $path == local ]] && wire=$((size * size * 3))
        awk -v p="$photo" -v path="$path" -v n="$images" -v b="$before" -v a="$after" \
            -v w="$wall" -v u="$user" -v s="$sys" -v wire="$wire" 'BEGIN {
            printf "| %s | %s | %.1f | %.1f | %.0f | %.1f |\n", p, path,
                (a - b) * 1000 / n, (u + s) * 1000 / n, wire / 1000, n / w }'
    done
done
