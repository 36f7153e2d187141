#!/usr/bin/env bash
# clip-index at scale beside faiss's HNSW, on the same clustered 512-d vectors
# (see crates/clip-index/examples/bench.rs for what is measured):
#
#   scripts/bench/index.sh [ITEMS [BATCH [DIR]]]   # 1000000 1000 .cache/bench-index
#
# Installs faiss-cpu and numpy into .cache/bench-index-venv the first time.
# Needs about 3 x ITEMS x 2 KiB of disk in DIR and twice that of memory.
# Honors CARGO_TARGET_DIR. Never asserts a time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
items=${1:-1000000} batch=${2:-1000} dir=${3:-.cache/bench-index}
venv=.cache/bench-index-venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet faiss-cpu numpy
fi
cargo build --release -p clip-index --example bench
bench=${CARGO_TARGET_DIR:-target}/release/examples/bench
"$bench" data "$items" "$dir"
"$venv/bin/python" scripts/bench/index_faiss.py "$dir" 40
"$bench" index "$batch" "$dir"
