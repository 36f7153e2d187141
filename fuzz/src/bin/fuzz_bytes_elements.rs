//! AFL++ entry point of the `bytes_elements` target (see `clip_fuzz::bytes_elements`); built by
//! `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let target = clip_fuzz::target("bytes_elements").expect("a known target");
    (target.prepare)();
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
