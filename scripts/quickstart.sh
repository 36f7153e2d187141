#!/usr/bin/env bash
# From a fresh clone to CLIP embeddings served by Triton, in one command:
# builds the project, installs what is missing, generates a model repository,
# starts Triton on it, and uses it with clip-client: health, encode, rank, verify.
#
#   scripts/quickstart.sh                                  # ViT-B-32::openai from the Hugging Face hub
#   scripts/quickstart.sh --model ViT-L-14::openai
#   scripts/quickstart.sh --weights tests/fixtures/tiny-clip/quick_gelu   # no download: a tiny test model
#   options: --out DIR (default model_repository), --http-port N (gRPC and metrics on the next two),
#            --check (stop the server after the clip-client calls, for scripts and CI)
#
# With Docker and an NVIDIA GPU it serves from the NGC Triton container with
# Triton's ONNX Runtime backend on the GPU; otherwise from the local
# tritonserver with the encoders on the CPU through the clip backend.
# The server keeps running until you press Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf '\n==> %s\n' "$*" >&2; }

source_args=(--model ViT-B-32::openai)
out="$root/model_repository"
http=8000 check=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model|--weights) source_args=("$1" "$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        --http-port) http=$2; shift 2 ;;
        --check) check=true; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

grpc=$((http + 1)) metrics=$((http + 2))
for tool in cargo curl; do
    command -v "$tool" >/dev/null || { echo "quickstart: '$tool' is needed; install it first" >&2; exit 1; }
done

gpu_container=false
if command -v docker >/dev/null && docker info >/dev/null 2>&1 && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    gpu_container=true
fi

say "Building the backend, repo-gen and clip-client (release; the first build takes several minutes)"
cargo build --release -p clip-backend -p repo-gen -p clip-client-cli
source scripts/lib/target.sh
release=$(cargo_target_dir)/release

say "Installing ONNX Runtime 1.31.1 (used to check the exported encoders, and to run them on CPU hosts)"
ort_library=$(bash scripts/install-onnxruntime.sh)
if [[ $gpu_container == false ]]; then
    say "Installing the local Triton server (2.51.0, from the nvidia-pytriton wheel)"
    bash scripts/install-triton.sh >/dev/null
fi

if [[ $gpu_container == true ]]; then
    runtime=(--runtime onnxruntime --gpus auto)
    say "Docker and a GPU are present: the encoders will run on Triton's ONNX Runtime backend on the GPU"
else
    runtime=(--runtime ort --gpus none)
    say "No GPU container here: the encoders will run on the CPU inside the clip backend"
fi
say "Generating the model repository in $out from ${source_args[*]}"
if ! "$release/repo-gen" "${source_args[@]}" --out "$out" --force "${runtime[@]}" --ort-library "$ort_library"; then
    if [[ ${source_args[0]} == --model ]]; then
        cat >&2 <<HELP

quickstart: repo-gen could not produce the repository (see its message above).
If the Hugging Face hub cannot be reached from here:
  - point HF_ENDPOINT at a mirror of the hub, or
  - copy the model's folder (config.json, model.safetensors, tokenizer.json) here and run
      scripts/quickstart.sh --weights PATH/TO/FOLDER
  - or try the whole pipeline offline on the tiny test model:
      scripts/quickstart.sh --weights tests/fixtures/tiny-clip/quick_gelu
HELP
    fi
    exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/clip-triton.XXXXXX.log")
say "Starting Triton on $out (HTTP :$http, gRPC :$grpc); its log is $log"
mode=local
[[ $gpu_container == true ]] && mode=docker
bash scripts/launch-triton.sh --model-repository "$out" --backend-lib "$release/libtriton_clip.so" \
    --mode "$mode" --http-port "$http" --grpc-port "$grpc" --metrics-port "$metrics" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT INT TERM

say "Waiting until every model is ready"
for _ in $(seq 1 300); do
    if curl -sf "localhost:$http/v2/health/ready" >/dev/null; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "quickstart: Triton stopped while loading; the end of its log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 1
done
curl -sf "localhost:$http/v2/health/ready" >/dev/null || { echo "quickstart: Triton is not ready after 5 minutes; see $log" >&2; exit 1; }

client=("$release/clip-client" --server "grpc://localhost:$grpc")
photo=tests/fixtures/images/inputs/chelsea_444_q95.jpg
say "clip-client health"
"${client[@]}" health
say "clip-client encode \"a photo of a cat\" $photo   (JSON lines: one embedding per input)"
"${client[@]}" encode "a photo of a cat" "$photo" | cut -c1-160
say "clip-client rank $photo against three sentences"
"${client[@]}" rank "$photo" "a photo of a cat" "a rocket on the launch pad" "a cup of coffee"
say "clip-client verify   (the server against the probe embeddings repo-gen stored)"
"${client[@]}" verify

say "Done. Triton serves clip_text (TEXT -> EMBEDDING) and clip_image (IMAGE -> EMBEDDING) on HTTP :$http and gRPC :$grpc."
cat >&2 <<NEXT
Next, with the server running:
  export CLIP_SERVER=grpc://localhost:$grpc PATH="$release:\$PATH"
  clip-client encode photos/ --normalize -o photos.npy --progress   # every image under a folder
  clip-client index my-index photos/                                # an on-disk search index
  clip-client search my-index "a dog on a beach" -n 5
  clip-client profile "a photo of a cat"                            # where the time goes
README.md, "Running in production", has metrics, many servers and curl recipes.
NEXT
if [[ $check == true ]]; then
    exit 0
fi
echo "Ctrl-C stops it." >&2
wait "$server"
