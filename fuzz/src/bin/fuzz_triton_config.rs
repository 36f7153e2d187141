//! AFL++ entry point of the `triton_config` target (see `clip_fuzz::triton_config`); built by
//! `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let target = clip_fuzz::target("triton_config").expect("a known target");
    (target.prepare)();
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
