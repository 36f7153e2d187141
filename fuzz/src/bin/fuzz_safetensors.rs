//! AFL++ entry point of the `safetensors` target (see `clip_fuzz::safetensors`); built by
//! `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let target = clip_fuzz::target("safetensors").expect("a known target");
    (target.prepare)();
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
