#!/usr/bin/env bash
# Fault scenarios against the real server, each with its expected outcome
# asserted. Prints PASS or FAIL per scenario and exits 1 if any failed.
#
#   scripts/faults.sh                    # full run: more inputs, cycles and cases (~5 min on 2 cores)
#   scripts/faults.sh --short            # CI: the same scenarios, smaller (~2 min)
#   scripts/faults.sh --report docs/reliability-faults.md   # also write what was observed
#   scripts/faults.sh --only 1,5         # some scenarios
#
# 1. The server killed with SIGKILL mid-job: `clip-client encode` gives every
#    input its row (embedding, or the job-stopped error), in order, in JSON
#    lines and .npy; `clip-client index` keeps all it reported as added.
# 2. Models unloaded and reloaded under load (explicit model control):
#    clients end by themselves, with rows or a clear error; afterwards
#    requests succeed with the same embeddings.
# 3. ONNX Runtime missing or wrong (no path, not a file, not a library, a
#    dependency missing, no ORT API, too old): the encoders fail to load with
#    a message naming the problem; the server exits (--exit-on-error default)
#    or, tolerant, serves the other models.
# 4. The model repository read-only (it loads and serves), or files missing
#    or broken: each model fails alone, naming the file.
# 5. Disk full while repo-gen writes (tmpfs as root, else RLIMIT_FSIZE): it
#    fails naming the file, the old repository stays byte-identical, no
#    temporary folder is left.
# 6. The index's items.log truncated (a clear error, the file untouched), two
#    writers on one index (both land), a writer killed mid-job (the next one
#    goes on).
#
# Uses the workspace's debug build (each package built alone, as the tests
# build them, so CI's test build is reused) and the tiny CLIP fixture; works
# in .cache/faults/. Root is used for tmpfs and bind mounts (with fallbacks),
# cc for stand-in ONNX Runtime libraries, python3 for checks. Honors
# CARGO_TARGET_DIR.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command_line="scripts/faults.sh${*:+ $*}"

mode=full report="" only=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --short) mode=short; shift ;;
        --report) report=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "faults: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -z "$report" || "$report" == /* ]] || report=$root/$report

log() { echo "faults: $*" >&2; }
die() { log "$*"; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

source scripts/lib/target.sh
target=$(cargo_target_dir)
bin=$target/debug
work=$root/.cache/faults/$mode
rows_py=$root/scripts/faults/rows.py

if [[ $mode == short ]]; then
    s1_inputs=4000 s2_cycles=3 s2_sentences=600 s6_items=120 s6_writer_items=2500 s6_kills=1
else
    s1_inputs=20000 s2_cycles=6 s2_sentences=2000 s6_items=400 s6_writer_items=4000 s6_kills=3
fi

# ---------------------------------------------------------------- results
total_failed=0 scenario_failed=0
results=()   # "VERDICT|N|title|seconds" per scenario
lines=()     # report lines of the current scenario
pass() { echo "  ok    $1"; lines+=("- ✓ ${1//$root\//}"); }
bad() {
    echo "  FAIL  $1${2:+: $2}"
    lines+=("- ✗ **$1**${2:+: \`$(clip "$2")\`}")
    scenario_failed=1
}
# expect DESCRIPTION COMMAND...: passes when the command succeeds.
expect() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else bad "$what"; fi
}
note() { echo "  ..    ${1//$root\//}"; lines+=("  - ${1//$root\//}"); }
# clip TEXT: a message on one line, paths inside the checkout relative, shortened.
clip() { tr '\n`' ' '"'" <<<"${1//$root\//}" | cut -c1-420; }
# quote TEXT: a message, quoted, as an observation.
quote() { note "\`$(clip "$1")\`"; }
contains() { grep -qE -- "$2" <<<"$1"; }

# ---------------------------------------------------------------- processes
servers=() jobs_started=() mounts=()
cleanup() {
    local pid
    # Clients run under timeout, which passes SIGTERM on; servers get SIGKILL.
    for pid in "${jobs_started[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${servers[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for pid in "${jobs_started[@]}" "${servers[@]}"; do wait "$pid" 2>/dev/null; done
    for mount in "${mounts[@]}"; do umount "$mount" 2>/dev/null; done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# http METHOD PATH: prints "CODE BODY" (CODE 000 when the server does not answer).
http() {
    python3 - "$1" "http://127.0.0.1:$http_port$2" <<'PY'
import sys, urllib.error, urllib.request
method, url = sys.argv[1:3]
request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
try:
    with urllib.request.urlopen(request, timeout=60) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except Exception as e:
    print("000", e)
PY
}
# model_state NAME: "STATE reason" from the repository index ("ABSENT" if not listed).
model_state() {
    http POST /v2/repository/index | python3 -c '
import json, sys
code, _, body = sys.stdin.read().partition(" ")
name = sys.argv[1]
models = json.loads(body) if code == "200" else []
entry = next((m for m in models if m.get("name") == name), None)
print("ABSENT" if entry is None else "%s %s" % (entry.get("state") or "NONE", entry.get("reason", "")))' "$1"
}

# start_server REPO LOG [tritonserver flags]: in the background, with
# ${server_env[@]} in its environment; sets server_pid, http_port, url.
server_env=()
start_server() {
    local repo=$1 server_log=$2
    shift 2
    http_port=$(free_port)
    local grpc_port metrics_port
    grpc_port=$(free_port) metrics_port=$(free_port)
    env "${server_env[@]}" bash scripts/launch-triton.sh --mode local --model-repository "$repo" \
        --backend-lib "$bin/libtriton_clip.so" --http-port "$http_port" --grpc-port "$grpc_port" \
        --metrics-port "$metrics_port" -- "$@" >"$server_log" 2>&1 &
    server_pid=$!
    servers+=("$server_pid")
    url=grpc://127.0.0.1:$grpc_port
}
# wait_ready SECONDS: 0 once /v2/health/ready answers 200; 1 if the server exits or time runs out.
wait_ready() {
    local deadline=$(($(date +%s) + $1))
    while [[ $(date +%s) -lt $deadline ]]; do
        [[ $(http GET /v2/health/ready) == 200* ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
# serve REPO LOG [flags]: starts a server and waits until it is ready (one
# more try on other ports if a port was taken meanwhile).
serve() {
    local try
    for try in 1 2; do
        start_server "$@"
        wait_ready 180 && return 0
        stop_server
        grep -q "already in use" "$2" || return 1
    done
    return 1
}
# wait_exit SECONDS: 0 once the server has exited (status in server_rc).
wait_exit() {
    local deadline=$(($(date +%s) + $1))
    while kill -0 "$server_pid" 2>/dev/null; do
        [[ $(date +%s) -lt $deadline ]] || return 1
        sleep 0.2
    done
    wait "$server_pid"
    server_rc=$?
    return 0
}
stop_server() {
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
}
stop_servers() {
    local pid
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null; done
    servers=()
}
# client ARGS: clip-client against the current server, never longer than 3 minutes.
client() { timeout 180 "$bin/clip-client" --server "$url" "$@"; }
# index_count DIR: the items the index holds, as clip-client reports them.
index_count() {
    client index "$1" --from /dev/null 2>&1 | sed -n 's/.* now holds \([0-9]*\) items.*/\1/p'
}
# top_hit DIR QUERY: the source of the best hit and its cosine ("source cosine").
top_hit() {
    client search "$1" --text "$2" -n 1 2>&1 | awk 'NR == 2 { c = $2; $1 = $2 = $3 = ""; sub(/^ +/, ""); print $0 " " c }'
}
# rows KIND OUT INPUTS REFERENCE: scripts/faults/rows.py's verdict line.
rows() { python3 "$rows_py" "$@" 2>&1; }
sha_tree() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum); }

# ---------------------------------------------------------------- setup
log "building (debug, -j 2, target $target)"
for package in clip-backend repo-gen clip-client-cli; do
    cargo build -j 2 -p "$package" || die "cargo build -p $package failed"
done
bash scripts/install-triton.sh >/dev/null || die "scripts/install-triton.sh failed"
tritonserver=$(bash scripts/install-triton.sh | tail -1)
ort=$(bash scripts/install-onnxruntime.sh | tail -1) || die "scripts/install-onnxruntime.sh failed"
command -v python3 >/dev/null || die "python3 is needed for the checks"

rm -rf "$work"
mkdir -p "$work"
repo=$work/repo
"$bin/repo-gen" --weights tests/fixtures/tiny-clip/quick_gelu --out "$repo" --runtime ort \
    --gpus none --ort-library "$ort" >"$work/repo-gen.log" 2>&1 || die "repo-gen failed: $(tail -3 "$work/repo-gen.log")"
images=(tests/fixtures/images/inputs/{rocket.jpg,coffee_q90.jpg,astronaut.png,chelsea_444_q95.jpg,camera_grey.jpg})
# inputs N FILE: N inputs, one per line: sentences with an image every 97th.
inputs() {
    python3 - "$1" "${images[@]}" >"$2" <<'PY'
import sys
n, images = int(sys.argv[1]), sys.argv[2:]
for i in range(n):
    print(images[i // 97 % len(images)] if i % 97 == 96 else f"sentence number {i}")
PY
}

# ---------------------------------------------------------------- 1
scenario_1() {
    local dir=$work/s1
    mkdir -p "$dir"
    inputs "$s1_inputs" "$dir/inputs.txt"
    serve "$repo" "$dir/server.log" || { bad "the server starts" "$(tail -3 "$dir/server.log")"; return; }
    client encode --from "$dir/inputs.txt" >"$dir/reference.jsonl" 2>"$dir/reference.err" ||
        { bad "reference run" "$(tail -2 "$dir/reference.err")"; return; }

    local t0 pids=() names=(json npy index)
    t0=$(now)
    local cli=(timeout 180 "$bin/clip-client" --server "$url")
    "${cli[@]}" encode --from "$dir/inputs.txt" -b 4 -c 2 >"$dir/out.jsonl" 2>"$dir/json.err" &
    pids+=($!)
    "${cli[@]}" encode --from "$dir/inputs.txt" -b 4 -c 2 -o "$dir/out.npy" 2>"$dir/npy.err" &
    pids+=($!)
    "${cli[@]}" index "$dir/index" --from "$dir/inputs.txt" -b 8 -c 2 >"$dir/index.out" 2>"$dir/index.err" &
    pids+=($!)
    jobs_started+=("${pids[@]}")
    # Kill once a tenth of the rows are out and the index has had commits.
    local deadline=$(($(date +%s) + 120))
    while [[ $(date +%s) -lt $deadline ]]; do
        [[ $(wc -l <"$dir/out.jsonl") -ge $((s1_inputs / 10)) && $(stat -c %s "$dir/index/items.log" 2>/dev/null || echo 0) -ge 65536 ]] && break
        sleep 0.05
    done
    local at_kill
    at_kill=$(wc -l <"$dir/out.jsonl")
    kill -9 "$server_pid"
    local killed
    killed=$(now)
    wait "$server_pid" 2>/dev/null
    note "server killed with SIGKILL $(since "$t0") s into the jobs, with $at_kill JSON rows out"
    local i rc seconds
    for i in 0 1 2; do
        wait "${pids[$i]}"
        rc=$?
        seconds=$(since "$killed")
        expect "${names[$i]}: exits 1 on its own, ${seconds} s after the kill (not 124 = hung)" test "$rc" -eq 1
    done

    local err
    err=$(cat "$dir/json.err")
    expect "encode names the cause (connection refused, after retries)" contains "$err" "Unavailable.*after 3 retries"
    expect "encode says where the job stopped" contains "$err" "the job stopped at input #[0-9]+"
    quote "$(grep -m1 'stopped at' <<<"$err")"
    quote "$(grep -m1 '^error:' <<<"$err")"
    local verdict
    verdict=$(rows jsonl "$dir/out.jsonl" "$dir/inputs.txt" "$dir/reference.jsonl")
    expect "JSON lines: a row per input in order, embeddings equal to the reference, then job-stopped errors ($verdict)" \
        contains "$verdict" "^rows=$s1_inputs embedded=[1-9][0-9]* stopped=[1-9]"
    local stopped_at
    stopped_at=$(sed -n 's/.*stopped at input #\([0-9]*\).*/\1/p' <<<"$err")
    expect "the first job-stopped row is the input stderr names (#$stopped_at)" \
        contains "$verdict" "embedded=$stopped_at "
    note "an unfinished row: \`$(sed -n "$((s1_inputs))p" "$dir/out.jsonl" | cut -c1-300)\`"
    verdict=$(rows npy "$dir/out.npy" "$dir/inputs.txt" "$dir/reference.jsonl")
    expect ".npy: a finished matrix with a row per input, NaN rows after the stop ($verdict)" \
        contains "$verdict" "^rows=$s1_inputs embedded=[1-9][0-9]* stopped=[1-9]"

    local index_err added
    index_err=$(cat "$dir/index.err")
    added=$(sed -n 's/^added \([0-9]*\) items.*before the job stopped.*/\1/p' <<<"$index_err")
    expect "index reports how many items it added before the job stopped" test -n "$added"
    quote "$(grep -m1 '^added' <<<"$index_err")"
    expect "index added some items before the kill ($added)" test "${added:-0}" -gt 0

    serve "$repo" "$dir/server2.log" || { bad "the server restarts" "$(tail -3 "$dir/server2.log")"; return; }
    local count
    count=$(index_count "$dir/index")
    expect "reopened, the index holds exactly the items reported ($count == $added)" test "$count" = "$added"
    local hit
    hit=$(top_hit "$dir/index" "sentence number 0")
    expect "search finds an indexed sentence first, cosine 1 ($hit)" test "$hit" = "sentence number 0 1.0000"
    client index "$dir/index" "one more after the kill" >/dev/null 2>&1
    count=$(index_count "$dir/index")
    expect "the index takes new items after the kill ($count)" test "$count" = "$((added + 1))"
}

# ---------------------------------------------------------------- 2
# job_loop NAME LIST DIR: encode jobs one after another until DIR/stop exists;
# one line per job in DIR/NAME.jobs: number, start, end, status.
job_loop() {
    local name=$1 list=$2 dir=$3 n=0 start rc
    while [[ ! -e $dir/stop ]]; do
        n=$((n + 1))
        start=$(now)
        timeout 120 "$bin/clip-client" --server "$url" --timeout 30 encode --from "$list" -b 4 -c 2 \
            >"$dir/$name.$n.jsonl" 2>"$dir/$name.$n.err"
        rc=$?
        echo "$n $start $(now) $rc" >>"$dir/$name.jobs"
        sleep 0.5
    done
}

scenario_2() {
    local dir=$work/s2
    mkdir -p "$dir"
    seq -f "sentence number %g" 0 $((s2_sentences - 1)) >"$dir/text.txt"
    for _ in $(seq 1 12); do printf '%s\n' "${images[@]}"; done >"$dir/images.txt"
    serve "$repo" "$dir/server.log" --model-control-mode=explicit '--load-model=*' ||
        { bad "the server starts with --model-control-mode=explicit --load-model=*" "$(tail -3 "$dir/server.log")"; return; }
    local model state all_ready=1
    local models=(clip_text_encoder clip_image_preprocess clip_text clip_image_encoder clip_text_preprocess clip_image)
    for model in "${models[@]}"; do
        [[ $(model_state "$model") == READY* ]] || all_ready=0
    done
    expect "explicit mode, all six models loaded" test "$all_ready" -eq 1
    client encode --from "$dir/text.txt" >"$dir/text.reference" 2>/dev/null
    client encode --from "$dir/images.txt" >"$dir/images.reference" 2>/dev/null

    local loops=()
    job_loop text "$dir/text.txt" "$dir" &
    loops+=($!)
    job_loop images "$dir/images.txt" "$dir" &
    loops+=($!)
    jobs_started+=("${loops[@]}")
    sleep 1
    local cycle answer code seconds t slowest=0 codes_ok=1 cycles_log=""
    for cycle in $(seq 1 "$s2_cycles"); do
        model=${models[$(((cycle - 1) % ${#models[@]}))]}
        for action in unload load; do
            t=$(now)
            answer=$(http POST "/v2/repository/models/$model/$action")
            seconds=$(since "$t")
            code=${answer%% *}
            [[ $code == 200 ]] || { codes_ok=0; quote "$action $model: $answer"; }
            awk -v s="$seconds" -v m="$slowest" 'BEGIN { exit !(s > m) }' && slowest=$seconds
            cycles_log+="$action $model $code ${seconds}s; "
            echo "$(now) $action $model" >>"$dir/actions"
            sleep 0.4
        done
        sleep 0.6
    done
    touch "$dir/stop"
    wait "${loops[@]}"
    expect "every unload and load answered 200 (slowest ${slowest} s)" test "$codes_ok" -eq 1
    note "cycles: ${cycles_log% }"

    # Every job ended by itself, with its rows, or a clear error.
    local name n start end rc jobs=0 ok=0 failed=0 hung=0 unclear=0 bad_rows=0 messages=""
    for name in text images; do
        while read -r n start end rc; do
            jobs=$((jobs + 1))
            case $rc in
                0) ok=$((ok + 1)) ;;
                1)
                    failed=$((failed + 1))
                    local message
                    message=$(grep -m1 '^error:' "$dir/$name.$n.err")
                    if contains "$message" "unknown model|UNAVAILABLE|LOADING|unloaded|no available versions|not ready|not found|NotFound"; then
                        messages+="$(sed -E 's/[0-9]+ s:/N s:/; s/#[0-9]+/#N/' <<<"${message:0:220}")"$'\n'
                    else
                        unclear=$((unclear + 1))
                        quote "unclear: $message"
                    fi
                    ;;
                124 | 137) hung=$((hung + 1)) ;;
                *) unclear=$((unclear + 1)); quote "status $rc: $(tail -1 "$dir/$name.$n.err")" ;;
            esac
            local verdict
            verdict=$(rows jsonl "$dir/$name.$n.jsonl" "$dir/$name.txt" "$dir/$name.reference")
            [[ $verdict == rows=* ]] || { bad_rows=$((bad_rows + 1)); quote "$name job $n: $verdict"; }
        done <"$dir/$name.jobs"
    done
    note "$jobs jobs: $ok succeeded, $failed stopped with an error"
    expect "no job hung (each bounded by 120 s, calls by 30 s)" test "$hung" -eq 0
    expect "every failed job names the unavailable model" test "$unclear" -eq 0
    expect "every job's rows are its inputs in order: embeddings equal to the reference, or the job-stopped error" \
        test "$bad_rows" -eq 0
    expect "the unloads hit running jobs ($failed failed)" test "$failed" -gt 0
    local message
    while read -r message; do [[ -n $message ]] && quote "$message"; done < <(grep -v "^$" <<<"$messages" | sort | uniq -c | sort -rn | head -4)

    all_ready=1
    for model in "${models[@]}"; do
        state=$(model_state "$model")
        [[ $state == READY* ]] || { all_ready=0; quote "$model: $state"; }
    done
    expect "after the cycles all six models are READY" test "$all_ready" -eq 1
    client encode --from "$dir/text.txt" >"$dir/text.after" 2>/dev/null
    client encode --from "$dir/images.txt" >"$dir/images.after" 2>/dev/null
    local text_after images_after
    text_after=$(rows jsonl "$dir/text.after" "$dir/text.txt" "$dir/text.reference")
    images_after=$(rows jsonl "$dir/images.after" "$dir/images.txt" "$dir/images.reference")
    expect "after reloading, text and images encode as before ($text_after; $images_after)" \
        contains "$text_after $images_after" "^rows=[0-9]+ embedded=[0-9]+ stopped=0 rows=[0-9]+ embedded=[0-9]+ stopped=0$"
}

# ---------------------------------------------------------------- 3
# set_ort_library VALUE CONFIG...: the encoders' ort_library parameter set
# to VALUE, or removed when VALUE is empty.
set_ort_library() {
    python3 - "$@" <<'PY'
import re, sys
value, configs = sys.argv[1], sys.argv[2:]
block = re.compile(r'parameters \{\n  key: "ort_library"\n  value: \{ string_value: "[^"]*" \}\n\}\n')
for config in configs:
    text = open(config).read()
    replacement = "" if not value else (
        'parameters {\n  key: "ort_library"\n  value: { string_value: "%s" }\n}\n' % value)
    new, n = block.subn(replacement, text)
    assert n == 1, config
    open(config, "w").write(new)
PY
}

scenario_3() {
    local dir=$work/s3
    mkdir -p "$dir/ort"
    # The encoders alone: with nothing else to load, a failed start ends fast.
    mkdir -p "$dir/encoders"
    cp -a "$repo/clip_text_encoder" "$repo/clip_image_encoder" "$dir/encoders/"

    # Stand-ins for broken installs.
    head -c 4096 /dev/urandom | base64 >"$dir/ort/garbage.so"
    local have_cc=0
    if command -v cc >/dev/null; then
        have_cc=1
        cat >"$dir/ort/old.c" <<'C'
/* An ONNX Runtime that reports an older version and has no API 31. */
#include <stddef.h>
typedef struct { const void *(*GetApi)(unsigned); const char *(*GetVersionString)(void); } OrtApiBase;
static const void *get_api(unsigned version) { (void)version; return NULL; }
static const char *version_string(void) { return "1.20.1"; }
static const OrtApiBase base = { get_api, version_string };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
C
        echo 'int clip_faults_dependency(void) { return 1; }' >"$dir/ort/dep.c"
        echo 'int clip_faults_dependency(void); int f(void) { return clip_faults_dependency(); }' >"$dir/ort/needs.c"
        echo 'int not_onnxruntime(void) { return 0; }' >"$dir/ort/noapi.c"
        (
            cd "$dir/ort" &&
                cc -shared -fPIC -o libonnxruntime.so.1.20.1 old.c &&
                cc -shared -fPIC -o libnoapi.so noapi.c &&
                cc -shared -fPIC -o libclip_faults_dependency.so dep.c &&
                cc -shared -fPIC -o libneeds_missing.so needs.c -L. -lclip_faults_dependency &&
                rm libclip_faults_dependency.so
        ) || have_cc=0
    fi

    # case|ort_library ("-" to remove it)|ORT_DYLIB_PATH ("-" unset)|expected message (regex)
    local cases=(
        "no library named|-|-|no ONNX Runtime library: give parameter 'ort_library' or set ORT_DYLIB_PATH"
        "ORT_DYLIB_PATH names nothing|-|$dir/ort/absent/libonnxruntime.so|ORT_DYLIB_PATH names $dir/ort/absent/libonnxruntime.so, which is not a file"
        "ort_library names nothing|$dir/ort/absent/libonnxruntime.so|-|parameter 'ort_library' names $dir/ort/absent/libonnxruntime.so, which is not a file"
        "not a shared library|$dir/ort/garbage.so|-|could not load ONNX Runtime from $dir/ort/garbage.so: .*dlopen failed: .*invalid ELF header"
    )
    if [[ $have_cc == 1 ]]; then
        cases+=(
            "a dependency missing|$dir/ort/libneeds_missing.so|-|dlopen failed: .*libclip_faults_dependency.so: cannot open shared object file"
            "no ONNX Runtime API|$dir/ort/libnoapi.so|-|libnoapi.so does not export .OrtGetApiBase."
            "ONNX Runtime 1.20 (stand-in)|$dir/ort/libonnxruntime.so.1.20.1|-|expected version >= '1.31.x', but got '1.20.1'"
        )
    else
        bad "cc builds the stand-in libraries" "no C compiler"
    fi
    if [[ $mode == full ]]; then
        # The real library of another release, from PyPI's wheel.
        local other
        if other=$(bash "$root/scripts/faults/onnxruntime-wheel.sh" 1.20.1 2>"$dir/wheel.log"); then
            cases+=("ONNX Runtime 1.20.1 (PyPI wheel)|$other|-|expected version >= '1.31.x', but got '1.20.1'")
        else
            note "ONNX Runtime 1.20.1 from PyPI: not downloaded ($(tail -1 "$dir/wheel.log")); its stand-in stands"
        fi
    fi

    # The cases that name a library go together: one server, one copy of the
    # text encoder per case (a failed load leaves nothing loaded, so each
    # copy tries its own library). The ORT_DYLIB_PATH cases need a server each.
    local entry name library env_value expected n=0 together=$dir/together
    local env_cases=() named=()
    mkdir -p "$together"
    for entry in "${cases[@]}"; do
        IFS='|' read -r name library env_value expected <<<"$entry"
        if [[ $library == - ]]; then
            env_cases+=("$entry")
            continue
        fi
        n=$((n + 1))
        cp -a "$repo/clip_text_encoder" "$together/encoder_$n"
        sed -i "s/^name: \"clip_text_encoder\"/name: \"encoder_$n\"/" "$together/encoder_$n/config.pbtxt"
        named+=("encoder_$n|$entry")
    done
    for entry in "${named[@]}"; do
        set_ort_library "$(cut -d'|' -f3 <<<"$entry")" "$together/${entry%%|*}/config.pbtxt"
    done
    # ort_failure LOG MODEL: the model's load failure as Triton logs it.
    ort_failure() { grep -m1 "failed to load '$2' version 1" "$1" | sed 's/.*model_lifecycle.cc:[0-9]*\] //'; }
    # exits REPO LOG WHAT: starts a server expected to exit; sets seconds and server_rc.
    exits() {
        local t
        t=$(now)
        start_server "$1" "$2"
        server_env=()
        if ! wait_exit 90; then
            bad "$3: the server exits" "still running after 90 s"
            stop_server
            return 1
        fi
        seconds=$(since "$t")
    }
    local seconds line
    for entry in "${env_cases[@]}"; do
        IFS='|' read -r name library env_value expected <<<"$entry"
        n=$((n + 1))
        cp -a "$dir/encoders" "$dir/case$n"
        set_ort_library "" "$dir/case$n"/*/config.pbtxt
        if [[ $env_value == - ]]; then server_env=(-u ORT_DYLIB_PATH); else server_env=("ORT_DYLIB_PATH=$env_value"); fi
        exits "$dir/case$n" "$dir/case$n.log" "$name" || continue
        local both=1 model
        for model in clip_text_encoder clip_image_encoder; do
            contains "$(ort_failure "$dir/case$n.log" "$model")" "$expected" || both=0
        done
        expect "$name: both encoders fail to load with the message; the server exits $server_rc after $seconds s" \
            test "$both" -eq 1 -a "$server_rc" -ne 0
        quote "$(ort_failure "$dir/case$n.log" clip_text_encoder)"
    done
    server_env=(-u ORT_DYLIB_PATH)
    if exits "$together" "$dir/together.log" "the named libraries"; then
        note "the cases below: ${#named[@]} encoders, each naming its library, in one server; it exited $server_rc after $seconds s"
        expect "the server exits non-zero, saying it failed to load all models" \
            test "$server_rc" -ne 0 -a -n "$(grep 'failed to load all models' "$dir/together.log")"
        quote "$(grep -m1 'error: creating server' "$dir/together.log")"
        for entry in "${named[@]}"; do
            local encoder=${entry%%|*}
            IFS='|' read -r name library env_value expected <<<"${entry#*|}"
            line=$(ort_failure "$dir/together.log" "$encoder")
            expect "$name: the encoder fails to load with the message" contains "$line" "$expected"
            quote "$line"
        done
    fi

    # Tolerant: the image encoder's library is missing; the rest serves.
    local tolerant=$dir/tolerant
    cp -a "$repo" "$tolerant"
    sed -i "s|string_value: \"$ort\"|string_value: \"$dir/ort/absent/libonnxruntime.so\"|" \
        "$tolerant/clip_image_encoder/config.pbtxt"
    serve "$tolerant" "$dir/tolerant.log" --exit-on-error=false --strict-readiness=false ||
        { bad "tolerant: the server starts" "$(tail -3 "$dir/tolerant.log")"; return; }
    local state
    state=$(model_state clip_image_encoder)
    expect "tolerant: clip_image_encoder is UNAVAILABLE, naming the library" \
        contains "$state" "^UNAVAILABLE .*names $dir/ort/absent/libonnxruntime.so, which is not a file"
    local up=1
    for model in clip_text clip_text_encoder clip_text_preprocess clip_image_preprocess; do
        [[ $(model_state "$model") == READY* ]] || up=0
    done
    expect "tolerant: the text models and the image preprocessing are READY" test "$up" -eq 1
    local out
    out=$(client encode "a photo of a cat" 2>&1)
    expect "tolerant: a sentence encodes" contains "$out" '"embedding":\['
    out=$(client encode "${images[0]}" 2>&1)
    expect "tolerant: an image fails, saying clip_image is not loaded" contains "$out" "clip_image cannot be used: the server lists it but has not loaded it"
    quote "$(grep -m1 '^error' <<<"$out")"
    expect "tolerant: the server is still live" contains "$(http GET /v2/health/live)" "^200"
}

# ---------------------------------------------------------------- 4
scenario_4() {
    local dir=$work/s4
    mkdir -p "$dir"
    printf '%s\n' "a photo of a cat" "${images[@]}" >"$dir/inputs.txt"

    # Read-only: a read-only bind mount as root (root writes through mode
    # bits), the mode bits otherwise.
    local ro=$dir/ro how=""
    cp -a "$repo" "$dir/ro-source"
    mkdir -p "$ro"
    if [[ $(id -u) -eq 0 ]] && mount --bind "$dir/ro-source" "$ro" 2>/dev/null; then
        mounts+=("$ro")
        if mount -o remount,bind,ro "$ro" 2>/dev/null; then how="a read-only bind mount"; fi
    elif [[ $(id -u) -ne 0 ]]; then
        rmdir "$ro"
        ro=$dir/ro-source
        chmod -R a-w "$ro" && how="chmod -R a-w"
    fi
    if [[ -z $how ]]; then
        bad "a read-only model repository can be made here" "no bind mount as root"
    else
        ! touch "$ro/probe" 2>/dev/null
        expect "the repository is read-only ($how): a write fails" test $? -eq 0
        local before
        before=$(sha_tree "$ro")
        if serve "$ro" "$dir/ro.log"; then
            pass "every model loads from the read-only repository"
            client encode --from "$dir/inputs.txt" >"$dir/ro.jsonl" 2>"$dir/ro.err"
            expect "a sentence and images encode" test "$(grep -c '"embedding"' "$dir/ro.jsonl")" -eq "$(wc -l <"$dir/inputs.txt")"
            stop_server
        else
            bad "every model loads from the read-only repository" "$(grep -m1 'failed to load' "$dir/ro.log")"
        fi
        expect "nothing in it changed" test "$before" = "$(sha_tree "$ro")"
        [[ $how == chmod* ]] && chmod -R u+w "$ro"
    fi
    if [[ ${#mounts[@]} -gt 0 && ${mounts[-1]} == "$ro" ]]; then umount "$ro" && unset 'mounts[-1]'; fi

    # Missing or broken files: each model fails alone, naming its file.
    # model|what is done|expected reason (regex)
    local cases=(
        "clip_text_encoder|rm 1/model.onnx|no ONNX model at $dir/missing/clip_text_encoder/1/model.onnx"
        "clip_text_preprocess|rm 1/tokenizer.json|cannot read tokenizer file $dir/missing/clip_text_preprocess/1/tokenizer.json: No such file"
        "clip_image_preprocess|rm warmup/photo|$dir/missing/clip_image_preprocess/warmup/photo: No such file"
    )
    broken_files missing "${cases[@]}"
    if [[ $mode == full ]]; then
        broken_files more \
            "clip_text_preprocess|rm warmup/sentence|$dir/more/clip_text_preprocess/warmup/sentence: No such file" \
            "clip_image_encoder|truncate 1/model.onnx|could not load $dir/more/clip_image_encoder/1/model.onnx: .*Protobuf parsing failed" \
            "clip_text_encoder|rm config.pbtxt|"
    fi
}

# broken_files SET ENTRY...: a copy of the repository at $dir/SET with each
# ENTRY's file removed or spoilt ("model|rm FILE|expected reason", also
# "truncate FILE" and "empty FILE"), served tolerantly: each such model is
# UNAVAILABLE naming its file, and the others are READY.
broken_files() {
    local set=$1 entry model action expected touched=()
    shift
    cp -a "$repo" "$dir/$set"
    for entry in "$@"; do
        IFS='|' read -r model action expected <<<"$entry"
        local file=$dir/$set/$model/${action#* }
        case ${action%% *} in
            rm) rm "$file" ;;
            truncate) truncate -s 1000 "$file" ;;
            empty) : >"$file" ;;
        esac
        touched+=("$model")
    done
    serve "$dir/$set" "$dir/$set.log" --exit-on-error=false --strict-readiness=false ||
        { bad "$set: the tolerant server starts" "$(tail -3 "$dir/$set.log")"; return; }
    for entry in "$@"; do
        IFS='|' read -r model action expected <<<"$entry"
        local state
        state=$(model_state "$model")
        if [[ -z $expected ]]; then
            # Without its config.pbtxt the folder is no model Triton can load.
            expect "$model with $action: not served" contains "$state" "^(ABSENT|UNAVAILABLE)"
            quote "$model: $state"
            continue
        fi
        expect "$model with $action: UNAVAILABLE, naming the file" contains "$state" "^UNAVAILABLE .*$expected"
        quote "$model: ${state#UNAVAILABLE }"
    done
    local untouched=1
    for model in clip_text_encoder clip_image_encoder clip_text_preprocess clip_image_preprocess; do
        [[ " ${touched[*]} " == *" $model "* ]] && continue
        [[ $(model_state "$model") == READY* ]] || untouched=0
    done
    expect "$set: the models left whole are READY, the server live" \
        test "$untouched" -eq 1 -a "$(http GET /v2/health/live | cut -c1-3)" = 200
    stop_server
}

# ---------------------------------------------------------------- 5
scenario_5() {
    local dir=$work/s5
    mkdir -p "$dir"
    local gen=("$bin/repo-gen" --weights tests/fixtures/tiny-clip/quick_gelu --runtime ort --gpus none --ort-library "$ort")
    local disk=$dir/disk how=""
    mkdir -p "$disk"
    if [[ $(id -u) -eq 0 ]] && mount -t tmpfs -o size=32m faults-disk "$disk" 2>/dev/null; then
        mounts+=("$disk")
        how="tmpfs"
    else
        how="ulimit"
    fi
    local out=$disk/repo
    "${gen[@]}" --out "$out" >"$dir/old.log" 2>&1 || { bad "the old repository is written" "$(tail -2 "$dir/old.log")"; return; }
    local old
    old=$(sha_tree "$out")
    local repo_bytes
    repo_bytes=$(du -sb "$out" | cut -f1)

    # attempt LABEL [limit]: repo-gen --force over the old repository; checks it fails cleanly.
    attempt() {
        local label=$1 t rc err
        t=$(now)
        if [[ $how == ulimit ]]; then
            ( trap '' XFSZ; ulimit -f "$2"; exec "${gen[@]}" --out "$out" --force ) >"$dir/run.log" 2>&1
        else
            "${gen[@]}" --out "$out" --force >"$dir/run.log" 2>&1
        fi
        rc=$?
        err=$(grep -m1 'error' "$dir/run.log")
        local seconds
        seconds=$(since "$t")
        local full_msg="No space left on device"
        [[ $how == ulimit ]] && full_msg="File too large"
        expect "$label: repo-gen exits $rc after $seconds s, naming the file it could not write" \
            test "$rc" -ne 0 -a -n "$(grep -E "$full_msg" <<<"$err" | grep -F "$(dirname "$out")/")"
        quote "$err"
        expect "$label: the old repository is byte-identical" test "$old" = "$(sha_tree "$out")"
        local left
        left=$(find "$(dirname "$out")" -maxdepth 1 -name '.repo-gen-*' | wc -l)
        expect "$label: no temporary folder left beside it" test "$left" -eq 0
    }
    if [[ $how == tmpfs ]]; then
        note "a 32 MiB tmpfs; the repository is $repo_bytes bytes; a file fills it to the free space given"
        local frees=(0 1048576 6000000)
        [[ $mode == full ]] && frees=(0 65536 1048576 4000000 6000000 8000000 10000000)
        local free avail
        for free in "${frees[@]}"; do
            rm -f "$disk/filler"
            avail=$(df -B1 --output=avail "$disk" | tail -1)
            fallocate -l $((avail - free)) "$disk/filler" 2>/dev/null ||
                head -c $((avail - free)) /dev/zero >"$disk/filler"
            attempt "$free bytes free"
        done
        rm -f "$disk/filler"
        "${gen[@]}" --out "$out" --force >"$dir/run.log" 2>&1
        expect "with room again, repo-gen --force succeeds" test $? -eq 0
        expect "  and writes the same repository" test "$old" = "$(sha_tree "$out")"
        expect "  and leaves no temporary folder" test "$(find "$disk" -maxdepth 1 -name '.repo-gen-*' | wc -l)" -eq 0
    else
        note "no tmpfs here (not root, or mount refused): RLIMIT_FSIZE (ulimit -f) with SIGXFSZ ignored"
        local limit
        for limit in 1 1024 4096; do attempt "ulimit -f $limit" "$limit"; done
    fi
    note "disk full simulated with: $how"
    if [[ $how == tmpfs ]]; then umount "$disk" && unset 'mounts[-1]'; fi
}

# ---------------------------------------------------------------- 6
scenario_6() {
    local dir=$work/s6
    mkdir -p "$dir"
    serve "$repo" "$dir/server.log" || { bad "the server starts" "$(tail -3 "$dir/server.log")"; return; }
    seq -f "sentence number %g" 0 $((s6_items - 1)) >"$dir/base.txt"
    client index "$dir/base" --from "$dir/base.txt" -b 16 >"$dir/base.out" 2>&1
    local count
    count=$(index_count "$dir/base")
    expect "an index of $s6_items items" test "$count" = "$s6_items"
    local size page=4096
    size=$(stat -c %s "$dir/base/items.log")

    # Truncated copies: a clear error, no crash, the file left as it was.
    local cut out rc before
    for cut in 0 $((2 * page)) $((size / 2)) $((size - page)); do
        local copy=$dir/cut-$cut
        cp -a "$dir/base" "$copy"
        truncate -s "$cut" "$copy/items.log"
        before=$(sha256sum <"$copy/items.log")
        out=$(client search "$copy" --text "sentence number 1" 2>&1)
        rc=$?
        expect "items.log cut to $cut of $size bytes: search exits $rc with a clear error (not a crash)" \
            test "$rc" -eq 1 -a -n "$(grep -E 'index is corrupt: .*items.log (is cut short|only holds)' <<<"$out")"
        quote "$out"
        out=$(client index "$copy" "one more" 2>&1)
        rc=$?
        expect "  index refuses it too (exit $rc)" \
            test "$rc" -eq 1 -a -n "$(grep -E 'index is corrupt' <<<"$out")"
        expect "  items.log is left as it was" test "$before" = "$(sha256sum <"$copy/items.log")"
    done
    count=$(index_count "$dir/base")
    local hit
    hit=$(top_hit "$dir/base" "sentence number 3")
    expect "the sound index is untouched: $count items, search finds its sentence ($hit)" \
        test "$count" = "$s6_items" -a "$hit" = "sentence number 3 1.0000"

    # Two writers on one index at once. clip-client appends in groups of up
    # to 1024 items (or a second's worth), so each writer has several groups
    # to append and the second starts while the first still has some left.
    cp -a "$dir/base" "$dir/shared"
    seq -f "alpha %g" 0 $((s6_writer_items - 1)) >"$dir/alpha.txt"
    seq -f "beta %g" 0 $((s6_writer_items - 1)) >"$dir/beta.txt"
    local a b a_start b_start a_end b_end a_rc b_rc
    a_start=$(now)
    (client index "$dir/shared" --from "$dir/alpha.txt" -b 4 >"$dir/alpha.out" 2>&1; echo $? >"$dir/alpha.rc"; now >"$dir/alpha.end") &
    a=$!
    # The second starts once the first has committed something.
    local initial
    initial=$(stat -c %s "$dir/shared/items.log")
    while [[ $(stat -c %s "$dir/shared/items.log") -le $initial ]] && kill -0 "$a" 2>/dev/null; do sleep 0.01; done
    b_start=$(now)
    (client index "$dir/shared" --from "$dir/beta.txt" -b 4 >"$dir/beta.out" 2>&1; echo $? >"$dir/beta.rc"; now >"$dir/beta.end") &
    b=$!
    jobs_started+=("$a" "$b")
    wait "$a" "$b"
    a_rc=$(cat "$dir/alpha.rc") b_rc=$(cat "$dir/beta.rc") a_end=$(cat "$dir/alpha.end") b_end=$(cat "$dir/beta.end")
    expect "two writers at once both succeed (exit $a_rc and $b_rc)" test "$a_rc" -eq 0 -a "$b_rc" -eq 0
    expect "  and did overlap (the second started before the first ended)" \
        awk -v s="$b_start" -v e="$a_end" 'BEGIN { exit !(s < e) }'
    note "writer 1: $(awk -v a="$a_start" -v b="$a_end" 'BEGIN { printf "%.1f", b - a }') s, writer 2: $(awk -v a="$b_start" -v b="$b_end" 'BEGIN { printf "%.1f", b - a }') s; $(cat "$dir/beta.out")"
    count=$(index_count "$dir/shared")
    expect "  the index holds both ($count == $s6_items + 2 x $s6_writer_items)" \
        test "$count" = "$((s6_items + 2 * s6_writer_items))"
    local hit_a hit_b
    hit_a=$(top_hit "$dir/shared" "alpha 7")
    hit_b=$(top_hit "$dir/shared" "beta 7")
    expect "  search finds each writer's items ($hit_a; $hit_b)" \
        test "$hit_a" = "alpha 7 1.0000" -a "$hit_b" = "beta 7 1.0000"

    # A writer killed with SIGKILL mid-job; the next writer must not wait on its lock.
    # More items than a writer appends before its kill, so each kill lands mid-job.
    seq -f "gamma %g" 0 19999 >"$dir/gamma.txt"
    cp -a "$dir/base" "$dir/killed"
    local kill_round mid_job=0
    for kill_round in $(seq 1 "$s6_kills"); do
        local grown=$(($(stat -c %s "$dir/killed/items.log") + 65536 * kill_round))
        "$bin/clip-client" --server "$url" index "$dir/killed" --from "$dir/gamma.txt" -b 8 >/dev/null 2>&1 &
        local writer=$!
        jobs_started+=("$writer")
        local deadline=$(($(date +%s) + 60))
        while [[ $(stat -c %s "$dir/killed/items.log") -lt $grown && $(date +%s) -lt $deadline ]]; do sleep 0.02; done
        sleep "0.0$((RANDOM % 10))"
        kill -0 "$writer" 2>/dev/null && mid_job=$((mid_job + 1))
        kill -9 "$writer" 2>/dev/null
        wait "$writer" 2>/dev/null
    done
    expect "each of the $s6_kills writer(s) was still appending when killed ($mid_job)" test "$mid_job" -eq "$s6_kills"
    count=$(index_count "$dir/killed")
    local t
    t=$(now)
    out=$(timeout 30 "$bin/clip-client" --server "$url" index "$dir/killed" "after the kill" 2>&1)
    rc=$?
    expect "after $s6_kills writer(s) killed mid-job, the next writer appends at once (exit $rc, $(since "$t") s)" test "$rc" -eq 0
    local after
    after=$(index_count "$dir/killed")
    expect "  the index holds what the killed writers committed plus the new item ($count + 1 = $after)" \
        test "$after" = "$((count + 1))"
    hit=$(top_hit "$dir/killed" "after the kill")
    expect "  and search finds it ($hit)" test "$hit" = "after the kill 1.0000"
}

# ---------------------------------------------------------------- run
run_scenario() {
    local n=$1 title=$2
    if [[ -n $only && ",$only," != *",$n,"* ]]; then return; fi
    echo "== scenario $n: $title"
    scenario_failed=0 lines=()
    local t
    t=$(now)
    "scenario_$n"
    stop_servers
    local seconds verdict=PASS
    seconds=$(since "$t")
    [[ $scenario_failed -eq 0 ]] || { verdict=FAIL; total_failed=$((total_failed + 1)); }
    echo "$verdict scenario $n: $title (${seconds} s)"
    results+=("$verdict|$n|$title|$seconds")
    printf '%s\n' "${lines[@]}" >"$work/scenario-$n.md"
}

started=$(now)
run_scenario 1 "server killed with SIGKILL mid-job"
run_scenario 2 "models unloaded and reloaded under load"
run_scenario 3 "ONNX Runtime missing or the wrong version"
run_scenario 4 "model folder read-only, or files missing"
run_scenario 5 "disk full while repo-gen writes"
run_scenario 6 "index file truncated, shared, or its writer killed"
total_seconds=$(since "$started")

echo "== summary ($mode, ${total_seconds} s)"
for result in "${results[@]}"; do
    IFS='|' read -r verdict n title seconds <<<"$result"
    echo "$verdict scenario $n: $title (${seconds} s)"
done

if [[ -n $report ]]; then
    {
        echo "# Fault scenarios: observed outcomes"
        echo
        echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M UTC'), at commit"
        echo "$(git rev-parse --short HEAD 2>/dev/null || echo "(not a git checkout)"):"
        echo "$(nproc)-core $(uname -m), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1),"
        echo "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory; tritonserver 2.51.0 on the CPU (${tritonserver#"$root"/}),"
        echo "ONNX Runtime $(basename "$(readlink -f "$ort")" | sed 's/libonnxruntime.so.//'), the tiny CLIP fixture (24-d), the debug build."
        echo "$mode mode: $total_seconds s in all. Each scenario's expectations are asserted by the"
        echo "script (✓ held, ✗ did not); indented lines are what was observed."
        echo
        echo "| scenario | outcome | seconds |"
        echo "| --- | --- | --- |"
        for result in "${results[@]}"; do
            IFS='|' read -r verdict n title seconds <<<"$result"
            echo "| $n. $title | $verdict | $seconds |"
        done
        for result in "${results[@]}"; do
            IFS='|' read -r verdict n title seconds <<<"$result"
            echo
            echo "## $n. $title: $verdict"
            echo
            cat "$work/scenario-$n.md"
        done
    } >"$report"
    log "wrote $report"
fi
[[ $total_failed -eq 0 ]] || { log "$total_failed scenario(s) failed"; exit 1; }
