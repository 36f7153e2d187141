#!/usr/bin/env bash
# Two builds of libtriton_clip.so, side by side in one run: the image
# preprocessing model of the last `scripts/bench.sh` run (its photos, data and
# repository under .cache/bench/MODE), served by two servers, one per library,
# measured by perf_analyzer in alternation (A B A B ...), so both see the same
# machine. For checking a change to the backend's hot path against its parent.
#
#   scripts/bench/ab-backend.sh --baseline OLD.so [--candidate NEW.so] [--mode full|smoke] [--rounds N]
#
# Prints a Markdown table of images/s (the median over the rounds) per photo
# size and batch size. Never asserts a time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$root/scripts/lib/target.sh"
baseline="" candidate="$(cargo_target_dir)/release/libtriton_clip.so" mode=full rounds=3
concurrency=2 instances=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --baseline) baseline=$2; shift 2 ;;
        --candidate) candidate=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "ab-backend: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
log() { echo "ab-backend: $*" >&2; }
[[ -f $baseline && -f $candidate ]] || { log "--baseline and --candidate must be built libraries"; exit 2; }
work=$root/.cache/bench/$mode
[[ -f $work/data/models.env ]] || { log "no prepared data in $work: run scripts/bench.sh${mode/full/} first"; exit 1; }
source "$work/data/models.env"
model=$(bench_variant clip image "$instances")
perf_analyzer=$(bash "$root/scripts/bench/install-perf-analyzer.sh" | tail -1)
out=$(mktemp -d)

source "$root/scripts/lib/serve.sh"
ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
declare -A grpc
for side in baseline candidate; do
    http=$(free_port) grpc[$side]=$(free_port) metrics=$(free_port)
    lib=$baseline
    [[ $side == candidate ]] && lib=$candidate
    # Only the measured model: the repository's other models are not loaded.
    bash "$root/scripts/launch-triton.sh" --mode local --model-repository "$work/repo" \
        --backend-lib "$lib" --http-port "$http" --grpc-port "${grpc[$side]}" \
        --metrics-port "$metrics" -- --model-control-mode=explicit --load-model="$model" \
        >"$out/$side.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 300); do
        ready "http://127.0.0.1:$http/v2/models/$model/ready" && break
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 1
    done
    ready "http://127.0.0.1:$http/v2/models/$model/ready" || { tail "$out/$side.log" >&2; exit 1; }
done

# measure SIDE INPUT BATCH: one perf_analyzer measurement; prints images/s.
measure() {
    local csv=$out/$1_$2_b$3.csv window=2000
    [[ $2 == image_12mp ]] && window=6000
    "$perf_analyzer" -m "$model" -u "127.0.0.1:${grpc[$1]}" -i grpc --input-data "$work/data/$2.json" \
        -b "$3" --concurrency-range "$concurrency:$concurrency" -p "$window" -s 100 -r 3 -f "$csv" \
        >"$csv.log" 2>&1 || { log "perf_analyzer failed: $(tail -1 "$csv.log")"; echo nan; return; }
    # Inferences/Second counts batch elements (images), as in docs/benchmarks.md.
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "Inferences/Second") c = i }
             NR == 2 { printf "%.1f\n", $c }' "$csv"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

inputs=()
for json in "$work"/data/image_*.json; do inputs+=("$(basename "$json" .json)"); done
echo "| photos | batch | baseline img/s | candidate img/s | ratio |"
echo "| --- | --- | --- | --- | --- |"
for input in "${inputs[@]}"; do
    for batch in 1 16; do
        : >"$out/a" && : >"$out/b"
        for round in $(seq 1 "$rounds"); do
            log "$input batch $batch round $round"
            measure baseline "$input" "$batch" >>"$out/a"
            measure candidate "$input" "$batch" >>"$out/b"
        done
        a=$(median <"$out/a") b=$(median <"$out/b")
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (a > 0) ? b / a : 0 }')
        echo "| ${input#image_} | $batch | $a | $b | $ratio |"
    done
done
log "each: $model ($instances instances), concurrency $concurrency, median of $rounds alternating rounds; logs in $out"
