# Where cargo puts build outputs, as cargo itself resolves it: CARGO_TARGET_DIR,
# build.target-dir in a cargo config, else the workspace's target/. Source it.

# cargo_target_dir: prints the folder (falls back to ./target without cargo).
cargo_target_dir() {
    local root dir=""
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if command -v cargo >/dev/null; then
        dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
            sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    fi
    echo "${dir:-${CARGO_TARGET_DIR:-$root/target}}"
}
