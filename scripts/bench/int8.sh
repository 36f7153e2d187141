#!/usr/bin/env bash
# int8 against fp32 encoders on this CPU: repo-gen writes a ViT-B-32
# repository (real architecture, seeded random weights) with --dtype fp32
# and one with --dtype int8; both encoders of each run in ONNX Runtime 1.31
# (2 intra-op threads) at several batch sizes. As a peer, ONNX Runtime's own
# quantize_dynamic (per channel, int8 weights) quantizes the same fp32 files.
# Prints Markdown tables: items/s per batch, cosine of each model's
# embeddings to fp32's. Never asserts a time.
#
#   scripts/bench/int8.sh [--model ViT-B-32::openai] [--batches 1,8,32] [--seconds 5]
#   scripts/bench/int8.sh --weights tests/fixtures/tiny-clip/quick_gelu ...  # a weights folder instead
#
# The peer needs a Python with onnxruntime: PEER_PYTHON (default
# /work/venv-torch/bin/python); without one it is left out, saying so.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib/target.sh
model="ViT-B-32::openai" weights="" batches=1,8,32 seconds=5
while [[ $# -gt 0 ]]; do
    case $1 in
        --model) model=$2; shift 2 ;;
        --weights) weights=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "int8: unknown argument $1" >&2; exit 2 ;;
    esac
done
# Two builds: with --example, cargo would build only the example of both packages.
cargo build --release -p repo-gen >&2
cargo build --release -p clip-export --example throughput >&2
bin=$(cargo_target_dir)/release
ORT_DYLIB_PATH=$(bash scripts/install-onnxruntime.sh | tail -1)
export ORT_DYLIB_PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -n $weights ]]; then
    source_args=(--weights "$weights") model=$weights
else
    source_args=(--model "$model" --random-init --seed 0 --tokenizer tests/fixtures/text/tokenizer.json)
fi
for dtype in fp32 int8; do
    "$bin/repo-gen" "${source_args[@]}" --gpus none --dtype "$dtype" \
        --no-warmup --out "$work/$dtype" 2>&1 | grep -v '^repo-gen: note' >&2
done

peer_python=${PEER_PYTHON:-/work/venv-torch/bin/python}
peer=false
if "$peer_python" -c 'import onnxruntime.quantization' 2>/dev/null; then
    peer=true
else
    echo "int8: no onnxruntime in $peer_python (PEER_PYTHON); the ORT quantize_dynamic peer is left out" >&2
fi

echo "# int8 vs fp32 encoders, $model, $(nproc) cores"
for tower in text image; do
    encoder="$work/%s/clip_${tower}_encoder/1/model.onnx"
    # shellcheck disable=SC2059
    models=("fp32=$(printf "$encoder" fp32)" "int8=$(printf "$encoder" int8)")
    if $peer; then
        # shellcheck disable=SC2059
        "$peer_python" - "$(printf "$encoder" fp32)" "$work/peer_$tower.onnx" <<'PY' 2>/dev/null
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], per_channel=True, weight_type=QuantType.QInt8)
PY
        models+=("ort-quantize_dynamic=$work/peer_$tower.onnx")
    fi
    for m in "${models[@]}"; do
        echo "$m: $(du -m "${m#*=}" | cut -f1) MB" >&2
    done
    "$bin/examples/throughput" "$tower" "$batches" "$seconds" "${models[@]}"
done
