#!/usr/bin/env bash
# The client part of scripts/bench.sh: clip-client against NVIDIA's Python
# tritonclient sending the same requests (same list, batch size, requests in
# flight), and clip-client's peak memory over directories of growing size.
#
# It serves the tiny CLIP fixture on a server of its own: with ViT-B-32 on
# two CPU cores both clients would only wait on the encoder, and the numbers
# would say nothing about the clients. Each client's CPU time and peak RSS
# are measured as well as its wall-clock throughput.
#
#   scripts/bench/client.sh --bin DIR --ort LIB --photos DIR --data DIR --results DIR --work DIR [--smoke]
#
# DIR of --data holds models.env and text.json from `clip-bench prepare`.
# Writes DIR of --results/runs.json. Never asserts a time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

mode=full bin="" ort="" photos="" data="" results="" work=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=$2; shift 2 ;;
        --ort) ort=$2; shift 2 ;;
        --photos) photos=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --smoke) mode=smoke; shift ;;
        *) echo "bench client: unknown argument $1" >&2; exit 2 ;;
    esac
done
for required in bin ort photos data results work; do
    [[ -n "${!required}" ]] || { echo "bench client: --$required is required" >&2; exit 2; }
done
log() { echo "bench client: $*" >&2; }

if [[ $mode == smoke ]]; then
    sentences=300 images=40 directory_sizes=(200 800)
else
    sentences=10000 images=1000 directory_sizes=(1000 10000)
fi
batch_size=32 concurrency=4

python=$(bash scripts/install-tritonclient.sh | tail -1)
# Model and tensor names as clip-bench prepare wrote them (from clip-contract).
source "$data/models.env"

rm -rf "$work" "$results"
mkdir -p "$work" "$results"

# Inputs: the benchmark's sentences repeated to the count, and its smallest
# photos (camera-like JPEGs) cycled to the count; both clients read the same lists.
"$python" - "$data/text.json" "$TEXT_INPUT" "$sentences" "$work/sentences.txt" <<'PY'
import base64, itertools, json, sys
source, tensor, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
texts = [base64.b64decode(e[tensor]["b64"])[4:].decode() for e in json.load(open(source))["data"]]
with open(out, "w") as f:
    for i, text in zip(range(count), itertools.cycle(texts)):
        f.write(f"{text} ({i})\n")
PY
mapfile -t photo_files < <(find "$photos" -name '*.jpg' | sort)
for ((i = 0; i < images; i++)); do
    echo "${photo_files[i % ${#photo_files[@]}]}"
done >"$work/photos.txt"
# Directories of hard links (no extra disk) for the memory check.
for size in "${directory_sizes[@]}"; do
    mkdir -p "$work/dir_$size"
    for ((i = 0; i < size; i++)); do
        ln "${photo_files[i % ${#photo_files[@]}]}" "$work/dir_$size/$(printf '%06d' "$i").jpg"
    done
done

log "serving the tiny CLIP fixture"
"$bin/repo-gen" --weights tests/fixtures/tiny-clip/quick_gelu --out "$work/repo" --runtime ort \
    --gpus none --ort-library "$ort" >"$work/repo-gen.log" 2>&1
source scripts/lib/serve.sh
http_port=$(free_port) grpc_port=$(free_port) metrics_port=$(free_port)
bash scripts/launch-triton.sh --mode local --model-repository "$work/repo" \
    --backend-lib "$bin/libtriton_clip.so" --http-port "$http_port" --grpc-port "$grpc_port" \
    --metrics-port "$metrics_port" >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
url=grpc://127.0.0.1:$grpc_port
for _ in $(seq 1 120); do
    if "$bin/clip-client" --server "$url" --retries 0 health >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -30 "$work/server.log" >&2
        echo "bench client: tritonserver exited" >&2
        exit 1
    fi
    sleep 1
done
"$bin/clip-client" --server "$url" health >&2

# measure LABEL CMD...: runs CMD once, records wall time, CPU time and peak
# RSS of the process (getrusage of the waited-for child). A command that
# prints {"seconds": ...} (the Python client) also records that as job_s:
# its time without the interpreter's start and imports.
measure() {
    local label=$1
    shift
    python3 - "$results/$label.json" "$@" <<'PY'
import json, resource, subprocess, sys, time
out, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
if done.returncode != 0:
    sys.stderr.write(done.stderr)
    sys.exit(f"bench client: {command[0]} exited with {done.returncode}")
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
record = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_kib": usage.ru_maxrss}
try:
    record["job_s"] = json.loads(done.stdout)["seconds"]
except (ValueError, KeyError, TypeError):
    pass
json.dump(record, open(out, "w"))
PY
}

common=(--batch-size "$batch_size" --concurrency "$concurrency")
# A warm-up of each path, so neither client pays for the server's first requests.
"$bin/clip-client" --server "$url" encode --from "$work/photos.txt" --text -o "$work/warm.npy" "${common[@]}" 2>/dev/null
"$bin/clip-client" --server "$url" encode --from "$work/photos.txt" -o "$work/warm.npy" "${common[@]}" 2>/dev/null

for round in 1 2; do
    log "round $round: $sentences sentences, $images photos, each client"
    # clip-client's time includes its start and connection; the Python
    # client's job_s leaves out the interpreter's start.
    measure "clip-client_sentences_$round" "$bin/clip-client" --server "$url" encode --text \
        --from "$work/sentences.txt" -o "$work/sentences.npy" "${common[@]}"
    measure "tritonclient_sentences_$round" "$python" scripts/bench/python/tritonclient_encode.py \
        --url "127.0.0.1:$grpc_port" --model "$TEXT_ENSEMBLE" --input "$TEXT_INPUT" \
        --output "$EMBEDDING_OUTPUT" --list "$work/sentences.txt" "${common[@]}"
    measure "clip-client_photos_$round" "$bin/clip-client" --server "$url" encode \
        --from "$work/photos.txt" -o "$work/photos.npy" "${common[@]}"
    measure "tritonclient_photos_$round" "$python" scripts/bench/python/tritonclient_encode.py \
        --url "127.0.0.1:$grpc_port" --model "$IMAGE_ENSEMBLE" --input "$IMAGE_INPUT" \
        --output "$EMBEDDING_OUTPUT" --list "$work/photos.txt" --files "${common[@]}"
done
for size in "${directory_sizes[@]}"; do
    log "clip-client encode of a directory of $size photos"
    measure "clip-client_directory_$size" "$bin/clip-client" --server "$url" encode \
        "$work/dir_$size" -o "$work/dir.npy" "${common[@]}"
done

"$python" - "$results" "$sentences" "$images" "$batch_size" "$concurrency" "${directory_sizes[@]}" <<'PY'
import glob, json, os, sys, time
results, sentences, images, batch, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sizes = [int(s) for s in sys.argv[6:]]
runs = []
for path in sorted(glob.glob(os.path.join(results, "*.json"))):
    name = os.path.basename(path)[:-5]
    client, workload, tag = name.rsplit("_", 2)
    items = {"sentences": sentences, "photos": images}.get(workload) or int(tag)
    runs.append({"client": client, "workload": workload, "tag": tag, "items": items, **json.load(open(path))})
summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "batch_size": batch, "concurrency": concurrency, "sentences": sentences, "photos": images,
           "directory_sizes": sizes, "runs": runs}
json.dump(summary, open(os.path.join(results, "runs.json"), "w"), indent=1)
PY
log "done: $results/runs.json"
