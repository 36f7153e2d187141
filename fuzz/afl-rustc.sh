#!/usr/bin/env bash
# RUSTC_WRAPPER of scripts/fuzz.sh's quick build (FUZZ_BUILD=quick, what
# --smoke uses): the coverage instrumentation cargo-afl gives every crate
# goes to this repository's own crates only (sources under CLIP_FUZZ_ROOT),
# and AFL++'s runtime (CLIP_FUZZ_AFL_RT) is linked into their binaries.
# Every dependency compiles exactly as in a plain `cargo build`, so the
# workspace's own builds in the same target folder are reused, and the
# smoke costs minutes instead of a full instrumented build (fuzz/README.md).
set -euo pipefail
rustc=$1
shift

name="" source="" bin=0 previous=""
for arg in "$@"; do
    case $previous in
        --crate-name) name=$arg ;;
        --crate-type) [[ $arg == bin ]] && bin=1 ;;
    esac
    [[ -z $source && $arg == *.rs ]] && source=$arg
    previous=$arg
done

ours=0
if [[ -n $source && $name != build_script_* ]]; then
    dir=$(cd "$(dirname "$source")" 2>/dev/null && pwd -P || true)
    [[ $dir == "$CLIP_FUZZ_ROOT"/* ]] && ours=1
fi
if ((ours)); then
    set -- "$@" --cfg fuzzing -C passes=sancov-module \
        -C llvm-args=-sanitizer-coverage-level=3 \
        -C llvm-args=-sanitizer-coverage-trace-pc-guard \
        -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
        -C llvm-args=-sanitizer-coverage-trace-compares
    # Binaries: AFL++'s runtime, and no debug info (a quarter of the size;
    # symbol names stay for backtraces).
    ((bin)) && set -- "$@" -C "link-arg=$CLIP_FUZZ_AFL_RT" -C strip=debuginfo
fi
exec "$rustc" "$@"
