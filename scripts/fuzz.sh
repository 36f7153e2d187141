#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ on stable Rust (cargo-afl); the targets
# are in fuzz/ (its own workspace, see fuzz/Cargo.toml and fuzz/src/lib.rs).
#
#   scripts/fuzz.sh TARGET SECONDS   fuzz one target from fuzz/corpus/TARGET; prints executions,
#                                    coverage and crashes; exits 1 if it found a crash (the inputs
#                                    stay in $(cargo_target_dir)/fuzz/TARGET/default/crashes)
#   scripts/fuzz.sh --smoke [SECS]   CI: fmt + clippy of fuzz/, replay of every committed input
#                                    (cargo test, no AFL), then every target for SECS s (default 15)
#                                    on the quick build; exits 1 on any failure or crash
#   scripts/fuzz.sh --list           the targets
#   scripts/fuzz.sh --build [T...]   only build the AFL binaries
#   scripts/fuzz.sh --seeds          rewrite fuzz/corpus/ from tests/fixtures (make-seeds, then afl-cmin)
#   scripts/fuzz.sh --merge TARGET   fold the last run's queue into fuzz/corpus/TARGET (afl-cmin)
#
# Installs what it needs, once: cargo-afl (which builds AFL++ when installed;
# `cargo afl config --build` if that did not happen). FUZZ_BUILD=full|quick
# picks the build (see build() below; full by default, quick for --smoke).
# Runs go to $(cargo_target_dir)/fuzz/TARGET, replaced by the next run of
# that target. Honors CARGO_TARGET_DIR. FUZZ_JOBS sets cargo's -j (default 2).
# One fuzzer at a time: each takes a core.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source "$root/scripts/lib/target.sh"

afl_version=0.18.2 # the `afl` crate in fuzz/Cargo.toml is pinned to the same version
targets=(image text triton_config bytes_elements safetensors onnx model_config)
jobs=${FUZZ_JOBS:-2}
target_dir=$(cargo_target_dir)
manifest=$root/fuzz/Cargo.toml
log() { echo "fuzz: $*" >&2; }

is_target() {
    local t
    for t in "${targets[@]}"; do [[ $t == "$1" ]] && return 0; done
    return 1
}

ensure_afl() {
    local version
    version=$(cargo afl --version 2>/dev/null || true)
    if [[ $version != *"$afl_version"* ]]; then
        log "installing cargo-afl $afl_version (builds AFL++)"
        cargo install --locked --version "$afl_version" cargo-afl -j "$jobs"
        version=$(cargo afl --version)
    fi
    # Installing builds AFL++ for the toolchain at hand; another toolchain,
    # or a build that failed, needs `config --build`.
    if [[ $version != *"AFL++ version"* ]]; then
        log "building AFL++ (cargo afl config --build)"
        cargo afl config --build --force
    fi
}

# Two builds of the AFL binaries (fuzz_TARGET):
# - full (default): `cargo afl build --release`, every crate instrumented
#   (dependencies' decoders and parsers give coverage feedback too), in
#   $(cargo_target_dir)/afl. From nothing, tens of minutes on 2 cores.
# - quick (FUZZ_BUILD=quick; --smoke): only this repository's crates are
#   instrumented (fuzz/afl-rustc.sh as RUSTC_WRAPPER), dev profile, in
#   $(cargo_target_dir) itself, so that every dependency the workspace's
#   own build already compiled is reused. A per-package codegen-units setting
#   keeps the instrumented builds of our crates apart from the plain ones.
build_mode=${FUZZ_BUILD:-full}
bin_dir() {
    case $build_mode in
        full) echo "$target_dir/afl/release" ;;
        quick) echo "$target_dir/debug" ;;
    esac
}

afl_runtime() {
    local data=${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs version commit
    version=$(rustc -V | cut -d' ' -f2)
    commit=$(rustc -vV | sed -n 's/^commit-hash: \(.......\).*/\1/p')
    echo "$data/rustc-$version-$commit/afl.rs-$afl_version/afl-llvm/afl-compiler-rt.o"
}

build() {
    local args=() t
    for t in "$@"; do args+=(--bin "fuzz_$t"); done
    log "$build_mode build of ${*} with AFL instrumentation (-> $(bin_dir))"
    case $build_mode in
        full)
            CARGO_TARGET_DIR=$target_dir/afl cargo afl build --manifest-path "$manifest" \
                --release --features afl -j "$jobs" "${args[@]}"
            ;;
        quick)
            local runtime ours p
            runtime=$(afl_runtime)
            [[ -f $runtime ]] || { log "no AFL++ runtime at $runtime"; return 1; }
            # This repository's crates: the path dependencies of fuzz/.
            ours=$(cargo tree --manifest-path "$manifest" --features afl -e normal --prefix none |
                sed -n 's|^\([^ ]*\) v[^ ]* (/.*|\1|p' | sort -u)
            for p in $ours; do args+=(--config "profile.dev.package.$p.codegen-units=1"); done
            CLIP_FUZZ_ROOT=$(cd "$root" && pwd -P) CLIP_FUZZ_AFL_RT=$runtime \
                RUSTC_WRAPPER=$root/fuzz/afl-rustc.sh CARGO_TARGET_DIR=$target_dir \
                cargo build --manifest-path "$manifest" --features afl -j "$jobs" "${args[@]}"
            ;;
        *)
            log "FUZZ_BUILD is full or quick, not $build_mode"
            return 2
            ;;
    esac
}

# The settings every afl-fuzz / afl-cmin run gets: no terminal UI, no core
# pinning (the cores are shared), no complaint about the CPU governor or
# about a core_pattern that pipes crashes elsewhere (containers).
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# A seed that crashes or hangs is reported as such instead of stopping the run.
export AFL_IGNORE_SEED_PROBLEMS=1

# -x options for TARGET: fuzz/dict/TARGET.dict and the format dictionaries
# that come with AFL++'s source (afl-fuzz takes up to four).
dictionaries() {
    local afl_dicts=${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/AFLplusplus/dictionaries d
    local own=fuzz/dict/$1.dict theirs=()
    case $1 in
        image) theirs=(jpeg png gif webp) ;;
        text) theirs=(html_tags utf8) ;;
        onnx) theirs=(protobuf) ;;
        triton_config | model_config | safetensors) theirs=(json) ;;
    esac
    [[ -f $own ]] && echo "-x $own"
    for d in "${theirs[@]}"; do
        [[ -f $afl_dicts/$d.dict ]] && echo "-x $afl_dicts/$d.dict"
    done
    return 0
}

stat() { sed -n "s/^$1 *: *//p" "$2"; }

# fuzz TARGET SECONDS: one run from the committed corpus; prints the figures,
# returns 1 if a crash was found.
fuzz() {
    local t=$1 seconds=$2 out=$target_dir/fuzz/$1
    local stats crashes
    rm -rf "$out"
    mkdir -p "$out"
    log "$t: fuzzing for ${seconds}s (output in $out)"
    # -m: a 4 GB address-space cap, so that an allocation sized from the
    # input fails (a crash) instead of swapping; -t: a fixed 1 s per input
    # (a timeout calibrated on a loaded machine turns slow runs into hangs).
    if ! cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" $(dictionaries "$t") -m 4096 -t 1000 \
        -V "$seconds" -- "$(bin_dir)/fuzz_$t" >"$out/afl-fuzz.log" 2>&1; then
        tail -n 30 "$out/afl-fuzz.log" >&2
        log "$t: afl-fuzz failed (log: $out/afl-fuzz.log)"
        return 2
    fi
    stats=$out/default/fuzzer_stats
    crashes=$(stat saved_crashes "$stats")
    printf '%-15s %8ss %12s execs %9s/s  bitmap %7s  edges %6s/%s  corpus %5s  hangs %3s  crashes %s\n' \
        "$t" "$(stat run_time "$stats")" "$(stat execs_done "$stats")" \
        "$(stat execs_per_sec "$stats")" "$(stat bitmap_cvg "$stats")" \
        "$(stat edges_found "$stats")" "$(stat total_edges "$stats")" \
        "$(stat corpus_count "$stats")" "$(stat saved_hangs "$stats")" "$crashes"
    if [[ $crashes != 0 ]]; then
        log "$t: $crashes crash(es), inputs in $out/default/crashes/ (replay: add one to fuzz/regressions/$t/, cargo test --manifest-path fuzz/Cargo.toml)"
        return 1
    fi
}

replay() {
    log "replaying fuzz/corpus and fuzz/regressions (cargo test, no AFL)"
    CARGO_TARGET_DIR=$target_dir cargo test --manifest-path "$manifest" -j "$jobs"
}

# minimise TARGET DIR...: the inputs of DIR... that reach distinct coverage
# (afl-cmin), left in a folder whose path it prints.
minimise() {
    local t=$1 all=$target_dir/fuzz/cmin-$1 d
    shift
    rm -rf "$all" "$all.out"
    mkdir -p "$all"
    for d in "$@"; do find "$d" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$all/" \;; done
    cargo afl cmin -i "$all" -o "$all.out" -m 4096 -t 5000 -- "$(bin_dir)/fuzz_$t" >&2
    echo "$all.out"
}

# spread DIR SLOTS: "size path" of DIR's queue entries (id:*), smallest
# first; when there are more than SLOTS, every k-th of them so that about
# SLOTS remain.
spread() {
    local n step
    n=$(find "$1" -maxdepth 1 -name 'id:*' | wc -l)
    step=$(((n + $2 - 1) / ($2 > 0 ? $2 : 1)))
    find "$1" -maxdepth 1 -name 'id:*' -printf '%s %p\n' | sort -n |
        awk -v step="$((step > 0 ? step : 1))" '(NR - 1) % step == 0'
}

case ${1:-} in
    --list)
        printf '%s\n' "${targets[@]}"
        ;;
    --build)
        shift
        ensure_afl
        build "${@:-${targets[@]}}"
        ;;
    --smoke)
        seconds=${2:-15}
        build_mode=${FUZZ_BUILD:-quick}
        start=$SECONDS
        log "fuzz/: cargo fmt --check, cargo clippy -D warnings (its own workspace)"
        cargo fmt --manifest-path "$manifest" -- --check
        CARGO_TARGET_DIR=$target_dir cargo clippy --manifest-path "$manifest" -j "$jobs" \
            --all-targets --all-features -- -D warnings
        replay
        ensure_afl
        build "${targets[@]}"
        failed=0
        for t in "${targets[@]}"; do
            fuzz "$t" "$seconds" || failed=1
        done
        log "smoke: $((SECONDS - start))s in all"
        exit "$failed"
        ;;
    --seeds)
        ensure_afl
        seeds=$target_dir/fuzz/seeds
        rm -rf "$seeds"
        CARGO_TARGET_DIR=$target_dir cargo run --manifest-path "$manifest" -j "$jobs" \
            --bin make-seeds -- "$seeds"
        build "${targets[@]}"
        for t in "${targets[@]}"; do
            if [[ $t == image ]]; then
                # Kept whole: the JPEG variants (progressive, arithmetic,
                # CMYK, EXIF) differ inside libjpeg-turbo, C code that AFL
                # does not see, so afl-cmin would drop all but one.
                rm -rf fuzz/corpus/image
                cp -r "$seeds/image" fuzz/corpus/image
            else
                kept=$(minimise "$t" "$seeds/$t")
                rm -rf "fuzz/corpus/$t"
                cp -r "$kept" "fuzz/corpus/$t"
            fi
            log "$t: $(ls "fuzz/corpus/$t" | wc -l) of $(ls "$seeds/$t" | wc -l) seeds kept"
        done
        ;;
    --merge)
        t=${2:?usage: scripts/fuzz.sh --merge TARGET}
        is_target "$t" || { log "unknown target $t (scripts/fuzz.sh --list)"; exit 2; }
        [[ -d $target_dir/fuzz/$t/default/queue ]] || { log "no run of $t to merge"; exit 2; }
        ensure_afl
        build "$t"
        # Committed inputs stay; queue entries that add coverage join them,
        # named by content, while the folder stays under FUZZ_CORPUS_BUDGET
        # bytes (default 1 MiB) and FUZZ_CORPUS_FILES files (default 300).
        # Past the cap, entries are taken evenly over the range of sizes
        # (small ones fail early, large ones reach deep), smallest first.
        kept=$(minimise "$t" "fuzz/corpus/$t" "$target_dir/fuzz/$t/default/queue")
        known=$(sha1sum fuzz/corpus/"$t"/* | cut -c1-40)
        budget=${FUZZ_CORPUS_BUDGET:-1048576} max_files=${FUZZ_CORPUS_FILES:-300}
        total=$(cat fuzz/corpus/"$t"/* | wc -c) files=$(ls "fuzz/corpus/$t" | wc -l)
        added=0
        while read -r size f; do
            sum=$(sha1sum "$f" | cut -c1-40)
            grep -q "$sum" <<<"$known" && continue
            ((total + size <= budget && files < max_files)) || break
            cp "$f" "fuzz/corpus/$t/fuzz-${sum:0:16}"
            total=$((total + size)) files=$((files + 1)) added=$((added + 1))
        done < <(spread "$kept" $((max_files - files)))
        log "$t: $added input(s) added to fuzz/corpus/$t ($(du -sh "fuzz/corpus/$t" | cut -f1))"
        ;;
    -h | --help | "")
        sed -n '2,18p' "$0"
        [[ -n ${1:-} ]]
        ;;
    *)
        t=$1 seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
        is_target "$t" || { log "unknown target $t (scripts/fuzz.sh --list)"; exit 2; }
        ensure_afl
        build "$t"
        fuzz "$t" "$seconds"
        ;;
esac
