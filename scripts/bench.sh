#!/usr/bin/env bash
# Benchmarks, side by side in one run, written to docs/benchmarks.md and
# docs/benchmarks.png (see docs/benchmarks.md for what each number means).
#
#   scripts/bench.sh                  # full run: ViT-B-32 (random weights), ~30-40 min on 2 cores
#   scripts/bench.sh --smoke          # CI: tiny model, tiny windows, report under .cache/bench/smoke/docs
#   scripts/bench.sh --model ViT-L-14::openai --out /tmp/docs
#
# In one run, on the same photos and sentences:
# 1. preprocessing alone inside Triton: the `clip` backend's models and the
#    same models written for Triton's Python backend (PIL + numpy,
#    transformers' CLIPTokenizerFast), and for images that Python model with
#    PIL's draft() (reduced-scale JPEG decode), with perf_analyzer 2.51.0:
#    batch 1 and 16, concurrency 1, 2 and 4, one and two instances, photos of
#    about 0.3, 2 and 12 megapixels at camera-like bytes per pixel;
# 2. image preprocessing in process, one thread and all cores: ours
#    (clip-image), libjpeg-turbo decoding alone at our DCT scale (the floor)
#    and NVIDIA DALI's CPU pipeline (scripts/bench/dali.py);
# 3. the ONNX encoders alone in-process through `ort` (the limit), and the
#    ensembles through Triton at the limit's best batch size, with the
#    preprocessing share of the ensembles' compute time;
# 4. the client: clip-client encode of 10,000 sentences and 1,000 photos
#    against Python's tritonclient sending the same requests, and its peak
#    memory over directories of 1,000 and 10,000 photos (scripts/bench/client.sh);
# 5. the pixel path against the bytes path per photo size: the server's own
#    CPU per image, bytes on the wire, client CPU (scripts/bench/pixel-path.sh,
#    tiny model);
# 6. int8 against fp32 encoders and ONNX Runtime's quantize_dynamic
#    (scripts/bench/int8.sh);
# 7. clip-index against faiss's HNSW over BENCH_INDEX_ITEMS vectors
#    (scripts/bench/index.sh; default 1000000, smoke 2000).
#
# --smoke keeps every part in a tiny form but skips DALI (a wheel of over
# 400 MB): its report says DALI was not measured.
#
# Everything is installed into .cache/ from nothing: the server and
# perf_analyzer from their PyPI wheels (pip download), ONNX Runtime, a venv
# for the Python comparison models and the photo generator, and DALI's
# wheels (kept in .cache/bench-wheels). Python never runs in this project's
# serving path; it is the thing compared against.
# Honors CARGO_TARGET_DIR. Never asserts a time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command_line="scripts/bench.sh${*:+ $*}"

mode=full model="ViT-B-32::openai" out="" jobs=${BENCH_JOBS:-2}
# Dynamic batching delay of the compared preprocessing models (both sides alike).
queue_delay_us=${BENCH_QUEUE_DELAY_US:-100}
while [[ $# -gt 0 ]]; do
    case $1 in
        --smoke) mode=smoke; shift ;;
        --model) model=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

source "$root/scripts/lib/target.sh"
target=$(cargo_target_dir)
work=$root/.cache/bench/$mode
results=$work/results
if [[ -z "$out" ]]; then
    if [[ $mode == smoke ]]; then out=$work/docs; else out=$root/docs; fi
fi
log() { echo "bench: $*" >&2; }

if [[ $mode == smoke ]]; then
    sizes="0.3mp=640x480" photos_per_size=2
    batches=(1) concurrencies=(1 2) instance_counts=(1 2)
    window_ms() { echo 300; }
    stability=100 trials=3 encoder_batches=1,2 encoder_seconds=0.3 sentences=50 inprocess_seconds=0.2
    pixel_images=8 index_items=${BENCH_INDEX_ITEMS:-2000}
else
    sizes="0.3mp=640x480,2mp=1632x1224,12mp=4000x3000" photos_per_size=6
    batches=(1 16) concurrencies=(1 2 4) instance_counts=(1 2)
    window_ms() { case $1 in image_12mp) echo 6000 ;; image_2mp|pixels) echo 2000 ;; *) echo 1500 ;; esac; }
    stability=50 trials=5 encoder_batches=1,4,8,16,32 encoder_seconds=4 sentences=1000 inprocess_seconds=3
    # 256: the server's CPU is read in 10 ms ticks; 64 images left the pixel path 6 ticks.
    pixel_images=256 index_items=${BENCH_INDEX_ITEMS:-1000000}
fi

rm -rf "$results"
mkdir -p "$results/pa" "$results/stats" "$work"
echo "$command_line" >"$results/command"
echo "$mode" >"$results/mode"
echo "$queue_delay_us" >"$results/queue_delay_us"
echo "$sentences" >"$results/sentences"
date -u '+%Y-%m-%d %H:%M UTC' >"$results/date"
cat /proc/loadavg >"$results/loadavg_start"

log "building (release, -j $jobs, target $target)"
cargo build --release -j "$jobs" -p clip-backend -p repo-gen -p clip-bench -p clip-client-cli
bin=$target/release
server=$(bash scripts/install-triton.sh | tail -1)
ort=$(bash scripts/install-onnxruntime.sh | tail -1)
perf_analyzer=$(bash scripts/bench/install-perf-analyzer.sh | tail -1)

# The Python environment of the comparison models and the photo generator.
venv=$root/.cache/bench-venv
if ! cmp -s scripts/bench/requirements.txt "$venv/.requirements" 2>/dev/null; then
    log "creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/bench/requirements.txt
    cp scripts/bench/requirements.txt "$venv/.requirements"
fi
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The Python backend runs its models in triton_python_backend_stub, built per
# Python version; the server wheel ships them beside the backend.
python_version=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
server_root=$(cd "$(dirname "$server")/.." && pwd)
stub=$server_root/python_backend_stubs/$python_version/triton_python_backend_stub
if [[ ! -x "$stub" ]]; then
    echo "bench: the server wheel has no Python backend stub for Python $python_version" >&2
    exit 1
fi
cp -n "$stub" "$server_root/backends/python/" 2>/dev/null || true
# DALI, full runs only, with requirements.txt as constraints (numpy stays 1.x).
if [[ $mode == full ]] && ! cmp -s scripts/bench/requirements-dali.txt "$venv/.requirements-dali" 2>/dev/null; then
    wheels=$root/.cache/bench-wheels
    dali_install() {
        "$venv/bin/pip" install --quiet --no-index --find-links "$wheels" \
            -r scripts/bench/requirements-dali.txt -c scripts/bench/requirements.txt
    }
    if ! dali_install 2>/dev/null; then
        log "downloading DALI into $wheels"
        "$venv/bin/pip" download --quiet -d "$wheels" \
            -r scripts/bench/requirements-dali.txt -c scripts/bench/requirements.txt
        dali_install
    fi
    cp scripts/bench/requirements-dali.txt "$venv/.requirements-dali"
fi

font=${BENCH_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
if [[ ! -f "$font" ]]; then
    log "installing fonts-dejavu-core for the chart"
    if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null
fi

# Photos and the repository.
photos=$work/photos
if [[ ! -f "$photos/manifest.json" || "$(cat "$photos/.spec" 2>/dev/null)" != "$sizes $photos_per_size" ]]; then
    log "generating photos ($sizes, $photos_per_size each)"
    rm -rf "$photos"
    "$venv/bin/python" scripts/bench/photos.py "$photos" "$sizes" --count "$photos_per_size"
    echo "$sizes $photos_per_size" >"$photos/.spec"
fi
repo=$work/repo
rm -rf "$repo"
if [[ $mode == smoke ]]; then
    source_args=(--weights tests/fixtures/tiny-clip/quick_gelu)
    echo "tiny-clip fixture (tests/fixtures/tiny-clip/quick_gelu)" >"$results/model"
else
    source_args=(--model "$model" --random-init --seed 0 --tokenizer tests/fixtures/text/tokenizer.json)
    echo "$model, real architecture with random weights (repo-gen --random-init --seed 0)" >"$results/model"
fi
"$bin/repo-gen" "${source_args[@]}" --out "$repo" --runtime ort --gpus none --ort-library "$ort" \
    --pixel-path
data=$work/data
"$bin/clip-bench" prepare --repo "$repo" --photos "$photos" --python-models scripts/bench/python \
    --site-packages "$site_packages" --data "$data" --sentences "$sentences" \
    --max-queue-delay-us "$queue_delay_us"

# Image preprocessing in process, before the server takes any CPU: ours, the
# decode-only floor, PIL draft()'s scales and DALI (see --help on smoke runs).
log "in process: clip and the decode floor"
"$bin/clip-bench" inprocess --repo "$repo" --photos "$photos" --seconds "$inprocess_seconds" \
    --out "$results/inprocess"
dali_args=()
[[ $mode == smoke ]] && dali_args=(--no-dali)
log "in process: DALI${dali_args:+ (skipped in smoke runs)}"
"$venv/bin/python" scripts/bench/dali.py --photos "$photos" --seconds "$inprocess_seconds" \
    --out "$results/inprocess" "${dali_args[@]}"

# The limit: each encoder alone, in-process, before the server takes any CPU.
for kind in image text; do
    log "encoder alone: $kind"
    "$bin/clip-bench" encoder --repo "$repo" --kind "$kind" --ort-library "$ort" \
        --batches "$encoder_batches" --seconds "$encoder_seconds" --out "$results/encoder_$kind.json"
done

source scripts/lib/serve.sh
http_port=$(free_port) grpc_port=$(free_port) metrics_port=$(free_port)
http_get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
log "starting tritonserver (http $http_port, grpc $grpc_port)"
bash scripts/launch-triton.sh --mode local --model-repository "$repo" \
    --backend-lib "$bin/libtriton_clip.so" --http-port "$http_port" --grpc-port "$grpc_port" \
    --metrics-port "$metrics_port" >"$results/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    if http_get "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -30 "$results/server.log" >&2
        echo "bench: tritonserver exited" >&2
        exit 1
    fi
    sleep 1
done
http_get "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null

# server_usage MODEL: the server's user + system CPU seconds so far (from /proc)
# and the batch elements MODEL has run, tab-separated.
# Either is empty when it cannot be read, and so is the difference below.
server_usage() {
    local cpu count
    cpu=$(cpu_seconds "$server_pid") || cpu=""
    count=$(http_get "http://127.0.0.1:$http_port/v2/models/$1/stats" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["model_stats"][0]["inference_count"])') ||
        count=""
    printf '%s\t%s\n' "$cpu" "$count"
}

# pa GROUP IMPL MODEL LABEL DATA INSTANCES BATCH CONCURRENCY: one perf_analyzer
# measurement on $data/DATA.json, recorded in runs.tsv with the server's CPU
# seconds and the model's batch elements over the whole run (a failure is
# recorded, not fatal).
pa() {
    local group=$1 impl=$2 name=$3 label=$4 input=$5 instances=$6 batch=$7 concurrency=$8
    local csv=pa/${name}_${input}_b${batch}_c${concurrency}.csv status=0 before after
    before=$(server_usage "$name")
    log "perf_analyzer $name $input batch $batch concurrency $concurrency"
    local window
    window=$(window_ms "$input")
    "$perf_analyzer" -m "$name" -u "127.0.0.1:$grpc_port" -i grpc --input-data "$data/$input.json" \
        -b "$batch" --concurrency-range "$concurrency:$concurrency" \
        -p "$window" -s "$stability" -r "$trials" -f "$results/$csv" \
        >"$results/$csv.log" 2>&1 || status=$?
    if [[ $status -ne 0 ]]; then
        # Unstable on a busy machine, or too few responses in a window: once
        # more with windows twice as long and any spread accepted.
        log "  retrying: $(grep -v '^$' "$results/$csv.log" | tail -1)"
        status=0
        "$perf_analyzer" -m "$name" -u "127.0.0.1:$grpc_port" -i grpc --input-data "$data/$input.json" \
            -b "$batch" --concurrency-range "$concurrency:$concurrency" \
            -p "$((window * 2))" -s 100 -r 3 -f "$results/$csv" \
            >>"$results/$csv.log" 2>&1 || status=$?
        if [[ $status -ne 0 ]]; then log "  failed ($status)"; else status=retried; fi
    fi
    after=$(server_usage "$name")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$group" "$impl" "$name" "$label" \
        "$instances" "$batch" "$concurrency" "$csv" "$status" \
        "$(paste <(echo "$before") <(echo "$after") | awk -F'\t' '{
            printf "%s\t%s", ($1 == "" || $3 == "") ? "" : sprintf("%.2f", $3 - $1),
                ($2 == "" || $4 == "") ? "" : $4 - $2 }')" \
        >>"$results/runs.tsv"
}

# Model names, as clip-bench prepare wrote them (from clip-contract).
source "$data/models.env"
inputs=(text)
for spec in ${sizes//,/ }; do inputs+=("image_${spec%%=*}"); done
for input in "${inputs[@]}"; do
    what=${input%%_*}
    label=${input#image_}
    for impl in clip python python_draft; do
        [[ $impl == python_draft && $what == text ]] && continue
        for instances in "${instance_counts[@]}"; do
            for batch in "${batches[@]}"; do
                for concurrency in "${concurrencies[@]}"; do
                    name=$(bench_variant "$impl" "$what" "$instances")
                    pa preprocess "$impl" "$name" "$label" "$input" "$instances" "$batch" "$concurrency"
                done
            done
        done
    done
done

# The ensembles at the encoder's best batch size, with Triton's statistics
# of their two steps around each run.
best_batch() { python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]; print(max(r, key=lambda p: p["items_per_second"])["batch"])' "$1"; }
stats() { # stats TAG WHEN MODEL...
    local tag=$1 when=$2 name
    shift 2
    for name in "$@"; do
        http_get "http://127.0.0.1:$http_port/v2/models/$name/stats" >"$results/stats/${tag}_${when}_${name}.json"
    done
}
ensemble_photos=${inputs[-1]}
[[ $mode == full ]] && ensemble_photos=image_2mp
for tower in image text; do
    if [[ $tower == image ]]; then
        ensemble=$IMAGE_ENSEMBLE steps=("$IMAGE_PREPROCESS" "$IMAGE_ENCODER") input=$ensemble_photos
    else
        ensemble=$TEXT_ENSEMBLE steps=("$TEXT_PREPROCESS" "$TEXT_ENCODER") input=text
    fi
    batch=$(best_batch "$results/encoder_$tower.json")
    stats "$ensemble" before "${steps[@]}"
    pa ensemble "$ensemble" "$ensemble" "$input" "$input" 1 "$batch" 2
    stats "$ensemble" after "${steps[@]}"
done
# The pixel path's ensemble (no preprocessing step) at the same batch.
pa ensemble "$IMAGE_PIXELS" "$IMAGE_PIXELS" pixels pixels 1 "$(best_batch "$results/encoder_image.json")" 2


kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
trap - EXIT

# The client, on a server of its own with the tiny model (see the script).
client_args=(--bin "$bin" --ort "$ort" --photos "$photos/${inputs[1]#image_}" --data "$data"
    --results "$results/client" --work "$work/client")
[[ $mode == smoke ]] && client_args+=(--smoke)
bash scripts/bench/client.sh "${client_args[@]}"

# The pixel path against the bytes path, one photo of each size, on a server
# of its own with the tiny model (see the script).
pixel_photos=""
for spec in ${sizes//,/ }; do
    size=${spec%%=*}
    pixel_photos+="${pixel_photos:+,}$size=$(find "$photos/$size" -name '*.jpg' | sort | head -1)"
done
log "pixel path against bytes path ($pixel_images images per photo and path)"
bash scripts/bench/pixel-path.sh --bin "$bin" --images "$pixel_images" --photos "$pixel_photos" \
    --tsv "$results/pixel_path.tsv" >"$results/pixel_path.md"

# int8 against fp32 and ONNX Runtime's quantize_dynamic, in process.
if [[ $mode == smoke ]]; then
    int8_args=(--weights tests/fixtures/tiny-clip/quick_gelu)
else
    int8_args=(--model "$model")
fi
log "int8 against fp32 encoders"
PEER_PYTHON=$venv/bin/python bash scripts/bench/int8.sh "${int8_args[@]}" \
    --batches "$encoder_batches" --seconds "$encoder_seconds" >"$results/int8.md"

# clip-index against faiss's HNSW.
log "clip-index against faiss HNSW, $index_items items"
echo "$index_items" >"$results/index_items"
bash scripts/bench/index.sh "$index_items" 1000 "$work/index" >"$results/index.txt"
# The vectors, truth and index take about 4 GB at 1M; the report needs only index.txt.
rm -rf "$work/index"
cat /proc/loadavg >"$results/loadavg_end"

"$bin/clip-bench" report --results "$results" --photos-manifest "$photos/manifest.json" \
    --out-md "$out/benchmarks.md" --out-png "$out/benchmarks.png" --font "$font"
log "done: $out/benchmarks.md"
