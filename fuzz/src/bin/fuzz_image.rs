//! AFL++ entry point of the `image` target (see `clip_fuzz::image`); built by
//! `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let target = clip_fuzz::target("image").expect("a known target");
    (target.prepare)();
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
