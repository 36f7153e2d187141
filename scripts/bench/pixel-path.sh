#!/usr/bin/env bash
# The pixel path against the bytes path, per photo: the tritonserver
# process's own CPU seconds per image (from /proc), bytes on the wire per
# image, the client's CPU seconds per image, and end-to-end images/s with
# client and server on this machine. One repository written with
# `repo-gen --pixel-path`, one local tritonserver, then `clip-client encode`
# of N copies of a photo with --preprocess server (clip_image, JPEG bytes),
# then local (clip_image_pixels, [S,S,3] UINT8). Prints a Markdown table;
# with --tsv also writes the raw measurements (scripts/bench.sh reads them).
# Never asserts a time.
#
#   scripts/bench/pixel-path.sh [--images N] [--model ViT-B-32::openai]
#       [--photos LABEL=FILE,...] [--tsv FILE] [--bin RELEASE_DIR]
#
# Default model: the tiny CLIP fixture, whose encoder costs next to nothing,
# so the server's CPU is its preprocessing and request handling (as on a GPU
# server); --model runs the real architecture with random weights (the
# encoder then dominates on a CPU-only machine). Default photos: three test
# fixtures. --bin: binaries already built (skips cargo build).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib/target.sh
inputs=tests/fixtures/images/inputs
images=64 model="" tsv="" bin=""
photos="coffee_q90=$inputs/coffee_q90.jpg,large_2mp=$inputs/large_2mp.jpg,large_12mp=$inputs/large_12mp.jpg"
while [[ $# -gt 0 ]]; do
    case $1 in
        --images) images=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --photos) photos=$2; shift 2 ;;
        --tsv) tsv=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "pixel-path: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z $bin ]]; then
    cargo build --release -p clip-backend -p repo-gen -p clip-client-cli >&2
    bin=$(cargo_target_dir)/release
fi
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
size=$(grep -A1 '"image_size"' "$work/repo/clip_image_pixels/config.pbtxt" |
    sed -n 's/.*string_value: "\([0-9]*\)".*/\1/p')

# One TSV row per photo and path: label, path, images, server CPU s,
# client CPU s, wall s, wire bytes per image.
rows=$work/rows.tsv
printf 'photo\tpath\timages\tserver_cpu_s\tclient_cpu_s\twall_s\twire_bytes\n' >"$rows"
for spec in ${photos//,/ }; do
    label=${spec%%=*} file=${spec#*=}
    list=$work/$label.txt
    for _ in $(seq "$images"); do echo "$file"; done >"$list"
    bytes=$(stat -c %s "$file")
    for path in server local; do
        encode() {
            "$bin/clip-client" --server "grpc://127.0.0.1:$grpc" encode \
                --preprocess "$path" --from "$list" -o "$work/out.npy" >/dev/null 2>&1
        }
        # Once unmeasured: the repository has no warmup, and a first run of
        # each batch shape pays ONNX Runtime's allocations (which made the
        # pixel path look as costly as the bytes path on few images).
        encode
        before=$(cpu_seconds "$server")
        TIMEFORMAT='%R %U %S'
        timing=$({ time encode; } 2>&1)
        after=$(cpu_seconds "$server")
        read -r wall user sys <<<"$timing"
        wire=$bytes
        [[ $path == local ]] && wire=$((size * size * 3))
        awk -v OFS='\t' -v p="$label" -v path="$path" -v n="$images" -v b="$before" -v a="$after" \
            -v w="$wall" -v u="$user" -v s="$sys" -v wire="$wire" \
            'BEGIN { print p, path, n, a - b, u + s, w, wire }' >>"$rows"
    done
done
[[ -n $tsv ]] && cp "$rows" "$tsv"

echo "Model: $model; $images copies of each photo per run; $(nproc) cores shared by client and server."
echo
echo "| photo | path | server CPU ms/image | client CPU ms/image | wire KB/image | images/s |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
awk -F'\t' 'NR > 1 { printf "| %s | %s | %.1f | %.1f | %.0f | %.1f |\n",
    $1, $2, $4 * 1000 / $3, $5 * 1000 / $3, $7 / 1000, $3 / $6 }' "$rows"
