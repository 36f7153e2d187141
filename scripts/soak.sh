#!/usr/bin/env bash
# Soak and load: the real tritonserver under many concurrent clients for
# MINUTES, every response checked element by element, the server's memory,
# threads and file descriptors watched. Writes a Markdown report; exits
# non-zero on any wrong result (or a dead server).
#
#   scripts/soak.sh 30                                  # 30 minutes, tiny model; report under the target dir
#   scripts/soak.sh --smoke                             # CI: one minute, fewer photos, 15 s windows
#   scripts/soak.sh 30 --report docs/reliability-soak.md --note "shared with other builds"
#   scripts/soak.sh 10 --weights DIR                    # a real checkpoint (repo-gen --weights DIR), on the CPU
#
# Options: --report FILE, --weights DIR, --rust-clients N (raw gRPC, default 6),
# --library-clients N (clip_client encode, default 2), --python-clients N
# (tritonclient processes, default 2), --skip-bad KIND,... and --skip-reason
# TEXT (bad kinds to leave out, and why, for the report; kinds in
# clip-soak run --help), --tolerance X (default 1e-5, max |a - b| / |expected|
# of a row), --note TEXT (about the machine, for the report), --jobs N (cargo).
#
# What runs: repo-gen writes the repository (the tiny CLIP fixture unless
# --weights) with low max_image_bytes / max_text_bytes (clip-soak limits);
# the local tritonserver serves it (scripts/launch-triton.sh); clip-soak run
# learns each good input's embedding from a request of it alone, then runs
# the Rust clients and starts the Python ones (scripts/soak/tritonclient_soak.py,
# NVIDIA's tritonclient from scripts/install-tritonclient.sh). Photos of about
# 0.3, 2 and 12 megapixels come from scripts/bench/photos.py once and are
# kept in .cache/soak/. Honours CARGO_TARGET_DIR; builds in release, like
# scripts/bench.sh, so the two share their build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command_line="scripts/soak.sh${*:+ $*}"

usage() { sed -n '2,27p' "$0"; }
minutes="" mode=full weights="" report="" note="" jobs=${SOAK_JOBS:-2}
rust_clients=6 library_clients=2 python_clients=2 skip_bad="" skip_reason="" tolerance=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --smoke) mode=smoke; shift ;;
        --weights) weights=$2; shift 2 ;;
        --report) report=$2; shift 2 ;;
        --note) note=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --rust-clients) rust_clients=$2; shift 2 ;;
        --library-clients) library_clients=$2; shift 2 ;;
        --python-clients) python_clients=$2; shift 2 ;;
        --skip-bad) skip_bad=$2; shift 2 ;;
        --skip-reason) skip_reason=$2; shift 2 ;;
        --tolerance) tolerance=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "soak: unknown option $1 (see --help)" >&2; exit 2 ;;
        *)
            [[ -z "$minutes" && $1 =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "soak: unexpected argument $1 (see --help)" >&2; exit 2; }
            minutes=$1; shift ;;
    esac
done
if [[ $mode == smoke ]]; then
    minutes=${minutes:-1} window=15 sample=2 sentences=60
    sizes_light="0.3mp=640x480,2mp=1632x1224" light_count=3 heavy_count=1
else
    [[ -n "$minutes" ]] || { usage >&2; exit 2; }
    window=60 sample=5 sentences=200
    sizes_light="0.3mp=640x480,2mp=1632x1224" light_count=6 heavy_count=2
fi
log() { echo "soak: $*" >&2; }

source "$root/scripts/lib/target.sh"
target=$(cargo_target_dir)
work=$target/soak/$mode
report=${report:-$work/report.md}
mkdir -p "$work"

log "building (release, -j $jobs, target $target)"
# scripts/bench.sh's packages and ours in one build: the same features for
# every shared dependency, so after the bench (as in CI) only clip-soak compiles.
cargo build --release -j "$jobs" -p clip-backend -p repo-gen -p clip-bench -p clip-client-cli -p clip-soak
bin=$target/release
bash scripts/install-triton.sh >/dev/null
ort=$(bash scripts/install-onnxruntime.sh | tail -1)
python=""
if [[ $python_clients -gt 0 ]]; then python=$(bash scripts/install-tritonclient.sh | tail -1); fi

# Photos: the bench's generator and its venv (numpy, Pillow), made once.
venv=$root/.cache/bench-venv
if ! cmp -s scripts/bench/requirements.txt "$venv/.requirements" 2>/dev/null; then
    log "creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r scripts/bench/requirements.txt
    cp scripts/bench/requirements.txt "$venv/.requirements"
fi
photos=$root/.cache/soak/photos-$mode
spec="$sizes_light x$light_count, 12mp=4000x3000 x$heavy_count"
if [[ "$(cat "$photos/.spec" 2>/dev/null)" != "$spec" ]]; then
    log "generating photos ($spec)"
    rm -rf "$photos"
    "$venv/bin/python" scripts/bench/photos.py "$photos/light" "$sizes_light" --count "$light_count" --seed 1
    "$venv/bin/python" scripts/bench/photos.py "$photos/heavy" "12mp=4000x3000" --count "$heavy_count" --seed 2
    echo "$spec" >"$photos/.spec"
fi

repo=$work/repo
rm -rf "$repo"
if [[ -n "$weights" ]]; then source_args=(--weights "$weights"); else source_args=(--weights tests/fixtures/tiny-clip/quick_gelu); fi
"$bin/repo-gen" "${source_args[@]}" --out "$repo" --runtime ort --gpus none --ort-library "$ort" >&2
"$bin/clip-soak" limits --repo "$repo" --photos "$photos" --max-text-bytes 1024 >&2

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port) grpc_port=$(free_port) metrics_port=$(free_port)
log "starting tritonserver (grpc $grpc_port)"
# launch-triton.sh execs the server: $! is tritonserver itself.
bash scripts/launch-triton.sh --mode local --model-repository "$repo" \
    --backend-lib "$bin/libtriton_clip.so" --http-port "$http_port" --grpc-port "$grpc_port" \
    --metrics-port "$metrics_port" >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

run_args=(--server "grpc://127.0.0.1:$grpc_port" --server-pid "$server_pid" --server-log "$work/server.log"
    --photos "$photos" --minutes "$minutes" --report "$report" --work "$work/clients"
    --rust-clients "$rust_clients" --library-clients "$library_clients" --python-clients "$python_clients"
    --window-seconds "$window" --sample-seconds "$sample" --sentences "$sentences"
    --command "$command_line")
[[ -n "$python" ]] && run_args+=(--python "$python" --python-script scripts/soak/tritonclient_soak.py)
[[ -n "$skip_bad" ]] && run_args+=(--skip-bad "$skip_bad")
[[ -n "$skip_reason" ]] && run_args+=(--skip-reason "$skip_reason")
[[ -n "$tolerance" ]] && run_args+=(--tolerance "$tolerance")
[[ -n "$note" ]] && run_args+=(--note "$note")
if revision=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || revision+=", built with uncommitted changes in the working tree"
    run_args+=(--revision "$revision")
fi
[[ $mode == smoke ]] && run_args+=(--warmup-seconds 15)
status=0
"$bin/clip-soak" run "${run_args[@]}" || status=$?
if [[ $status -eq 2 ]]; then
    log "the driver failed before its report; the server log's end:"
    tail -20 "$work/server.log" >&2
fi
log "report: $report"
exit "$status"
