//! `--progress`: a bar on stderr, moved by the results as the library
//! reports them.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar when the number of inputs is known, a counter otherwise; hidden
/// when not asked for.
pub fn bar(show: bool, len: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{bar:40} {pos}/{len} items  {per_sec}  eta {eta}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} {pos} items  {per_sec}  {elapsed}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("progress template is valid"));
    bar
}

/// Prints a line to stderr without tearing the bar.
pub fn report(bar: &ProgressBar, line: impl std::fmt::Display) {
    bar.suspend(|| eprintln!("{line}"));
}
