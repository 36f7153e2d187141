#!/usr/bin/env bash
# Where a preprocessing model spends its time: serves the repository of the
# last `scripts/bench.sh` run, drives one model with perf_analyzer and
# samples the server with `perf record` (apt-get install linux-perf), then
# prints the hottest shared objects and symbols.
#
#   scripts/bench/profile.sh MODEL DATA [BATCH] [CONCURRENCY] [SECONDS]
#   scripts/bench/profile.sh bench_clip_image_i1 image_2mp 1 2 10
# MODEL and DATA as in .cache/bench/full/{repo,data}; BENCH_MODE=smoke for the smoke run's.
# With a Python-backend model, its stub processes are sampled too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model=$1 input=$2 batch=${3:-1} concurrency=${4:-2} seconds=${5:-10}
work=$root/.cache/bench/${BENCH_MODE:-full}
# Cargo's target folder, as cargo resolves it (CARGO_TARGET_DIR, cargo config).
source "$root/scripts/lib/target.sh"
target=$(cargo_target_dir)
perf_analyzer=$(bash "$root/scripts/bench/install-perf-analyzer.sh" | tail -1)
command -v perf >/dev/null || { echo "profile: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
out=$(mktemp -d)
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(port) grpc=$(port) metrics=$(port)
bash "$root/scripts/launch-triton.sh" --mode local --model-repository "$work/repo" \
    --backend-lib "$target/release/libtriton_clip.so" --http-port "$http" --grpc-port "$grpc" \
    --metrics-port "$metrics" -- --model-control-mode=explicit --load-model="$model" >"$out/server.log" 2>&1 &
launcher=$!
trap 'kill "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 1 120); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$http/v2/models/$model/ready" 2>/dev/null && break
    sleep 1
done
"$perf_analyzer" -m "$model" -u "127.0.0.1:$grpc" -i grpc --input-data "$work/data/$input.json" \
    -b "$batch" --concurrency-range "$concurrency:$concurrency" -p $((seconds * 1000 + 4000)) \
    -s 100 -r 3 >"$out/pa.log" 2>&1 &
load=$!
sleep 3
pids=$(pgrep -d, -f "model-repository=$work/repo" || true)
stubs=$(pgrep -d, -f "$work/repo/$model/" || true)
perf record -F 499 -g -o "$out/perf.data" -p "${pids}${stubs:+,$stubs}" -- sleep "$seconds" 2>/dev/null
wait "$load" || true
grep -i "throughput" "$out/pa.log" | tail -1
echo "== shared objects"
perf report -i "$out/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v "^$" | sed "s/  */ /g" | head -12
echo "== symbols"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | sed "s/  */ /g" | cut -c1-110 | head -30
