//! AFL++ entry point of the `text` target (see `clip_fuzz::text`); built by
//! `scripts/fuzz.sh` with `cargo afl build --features afl`.

fn main() {
    let target = clip_fuzz::target("text").expect("a known target");
    (target.prepare)();
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
