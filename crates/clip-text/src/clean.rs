//! The text clean-up open_clip's `SimpleTokenizer` applies before BPE:
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
//! `html.unescape(html.unescape(ftfy.fix_text(text))).strip()`.
//!
//! Everything here follows the Python originals (ftfy 6.3.1, CPython's `html` module, `str.split`,
//! `str.lower`) so that the text reaching BPE is the same string, character for character.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// The text fix-up OpenAI's / open_clip's tokenizer applies before BPE, then lowercasing:
///
/// 1. `ftfy.fix_text` with its default settings ([`fix_text`]), **except** mojibake repair
///    (`fix_encoding`, with `restore_byte_a0`, `replace_lossy_sequences` and `decode_inconsistent_utf8`),
///    which needs ftfy's large statistical heuristics and is left out: text like `"sÃ³"` stays as it is,
///    where open_clip would turn it into `"só"`.
/// 2. `html.unescape` twice, with Python's rules ([`html_unescape`]).
/// 3. Strip, collapse runs of whitespace to one space (Python's `str.split()` notion of whitespace).
/// 4. Lowercase (full Unicode lowercasing, final sigma included, as Python's `str.lower`).
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let mut collapsed = String::with_capacity(unescaped.len());
    for word in unescaped.split(py_isspace).filter(|w| !w.is_empty()) {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    collapsed.to_lowercase()
}

/// Python's `str.isspace`: Unicode White_Space plus the four information separators U+001C..U+001F
/// (bidi class B/S), which `str.split()` also splits on.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// ftfy 6.3.1 `fix_text` with the default configuration, minus `fix_encoding` (mojibake repair) and
/// `fix_surrogates` (a Rust `str` cannot hold surrogates).
///
/// Like ftfy, the text is fixed in segments that end after each `'\n'` (or every 1,000,000 characters);
/// HTML entities are unescaped only until the first segment that contains a `'<'` (ftfy's
/// `unescape_html="auto"`), and each segment is fixed repeatedly until nothing changes.
pub fn fix_text(text: &str) -> String {
    const MAX_DECODE_LENGTH: usize = 1_000_000;
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        // End after the next '\n', or after MAX_DECODE_LENGTH characters, whichever comes first.
        let mut end = rest.len();
        for (n, (i, c)) in rest.char_indices().enumerate() {
            if n == MAX_DECODE_LENGTH {
                end = i;
                break;
            }
            if c == '\n' {
                end = i + 1;
                break;
            }
        }
        let (segment, tail) = rest.split_at(end);
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        rest = tail;
    }
    out
}

fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

fn map_chars(text: &str, f: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        f(c, &mut out);
    }
    out
}

/// Windows-1252 for bytes 0x80..=0x9F; the five bytes it leaves undefined map to the same code point
/// (as ftfy's "sloppy-windows-1252" and Python's `html._invalid_charrefs` do).
fn cp1252_c1(c: char) -> char {
    const TABLE: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match c as u32 {
        n @ 0x80..=0x9f => TABLE[(n - 0x80) as usize],
        _ => c,
    }
}

/// ftfy `fix_c1_controls`: C1 control characters read as their Windows-1252 meaning.
pub(crate) fn fix_c1_controls(text: &str) -> String {
    map_chars(text, |c, out| out.push(cp1252_c1(c)))
}

/// ftfy `fix_latin_ligatures`: Latin typographic ligatures and the Dutch/Serbo-Croatian digraph letters.
pub(crate) fn fix_latin_ligatures(text: &str) -> String {
    map_chars(text, |c, out| {
        let rep = match c {
            '\u{132}' => "IJ",
            '\u{133}' => "ij",
            '\u{149}' => "\u{2bc}n",
            '\u{1f1}' => "DZ",
            '\u{1f2}' => "Dz",
            '\u{1f3}' => "dz",
            '\u{1c4}' => "D\u{17d}",
            '\u{1c5}' => "D\u{17e}",
            '\u{1c6}' => "d\u{17e}",
            '\u{1c7}' => "LJ",
            '\u{1c8}' => "Lj",
            '\u{1c9}' => "lj",
            '\u{1ca}' => "NJ",
            '\u{1cb}' => "Nj",
            '\u{1cc}' => "nj",
            '\u{fb00}' => "ff",
            '\u{fb01}' => "fi",
            '\u{fb02}' => "fl",
            '\u{fb03}' => "ffi",
            '\u{fb04}' => "ffl",
            '\u{fb05}' => "\u{17f}t",
            '\u{fb06}' => "st",
            _ => {
                out.push(c);
                return;
            }
        };
        out.push_str(rep);
    })
}

/// ftfy `fix_character_width`: U+3000 to a space, and every character of U+FF01..U+FFEF
/// (halfwidth and fullwidth forms) whose NFKC form differs to that NFKC form.
pub(crate) fn fix_character_width(text: &str) -> String {
    map_chars(text, |c, out| match c as u32 {
        0x3000 => out.push(' '),
        0xff01..=0xffef => out.extend(c.to_string().nfkc()),
        _ => out.push(c),
    })
}

/// ftfy `uncurl_quotes`: U+2018..U+201B and U+02BC to `'`, U+201C..U+201F to `"`.
pub(crate) fn uncurl_quotes(text: &str) -> String {
    map_chars(text, |c, out| match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
        '\u{201c}'..='\u{201f}' => out.push('"'),
        _ => out.push(c),
    })
}

/// ftfy `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
pub(crate) fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy `remove_terminal_escapes`: `ESC [ (digits|;)* letter`, where a digit is any Unicode decimal
/// digit (Python's `\d`).
pub(crate) fn remove_terminal_escapes(text: &str) -> String {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    let re = ANSI.get_or_init(|| Regex::new(r"\x1b\[[\d;]*[a-zA-Z]").expect("valid regex"));
    re.replace_all(text, "").into_owned()
}

/// The characters ftfy's `remove_control_chars` deletes: C0 controls except `\t \n \x0c \r`, DEL,
/// the deprecated Arabic format controls U+206A..U+206F, the BOM U+FEFF and U+FFF9..U+FFFC.
pub(crate) fn is_ftfy_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc)
}

/// ftfy `remove_control_chars`.
pub(crate) fn remove_control_chars(text: &str) -> String {
    text.chars().filter(|&c| !is_ftfy_control(c)).collect()
}

/// `&name;` in Python's `html.entities.html5` (names with a semicolon only), looked up in htmlize's
/// copy of the same WHATWG table.
fn html5_entity(name_with_amp: &str) -> Option<&'static str> {
    htmlize::ENTITIES
        .get(name_with_amp.as_bytes())
        .map(|v| std::str::from_utf8(v).expect("entity table is UTF-8"))
}

/// ftfy's `HTML_ENTITIES`: every HTML5 entity that ends in `;`, plus the all-caps spelling of each
/// all-lowercase one (`&EACUTE;` -> `É`, the value uppercased) where Python's `html.unescape` leaves
/// that spelling alone.
fn ftfy_entities() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        for (name, value) in htmlize::ENTITIES.entries() {
            let name = std::str::from_utf8(name).expect("entity table is UTF-8");
            let value = std::str::from_utf8(value).expect("entity table is UTF-8");
            if !name.ends_with(';') {
                continue;
            }
            map.insert(name.to_owned(), value.to_owned());
            if name == name.to_lowercase() {
                let upper = name.to_uppercase();
                if html_unescape(&upper) == upper {
                    map.insert(upper, value.to_uppercase());
                }
            }
        }
        map
    })
}

/// ftfy `unescape_html`: replaces matches of `&#?[0-9A-Za-z]{1,24};` that are known entity names
/// (see [`ftfy_entities`]) or numeric references that decode to text without a `;`.
pub(crate) fn ftfy_unescape_html(text: &str) -> String {
    static ENTITY: OnceLock<Regex> = OnceLock::new();
    let re = ENTITY.get_or_init(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid regex"));
    re.replace_all(text, |caps: &regex::Captures<'_>| {
        let m = &caps[0];
        if let Some(v) = ftfy_entities().get(m) {
            v.clone()
        } else if m.starts_with("&#") {
            let u = html_unescape(m);
            if u.contains(';') {
                m.to_owned()
            } else {
                u
            }
        } else {
            m.to_owned()
        }
    })
    .into_owned()
}

/// Python's `html.unescape` (CPython 3.11): all HTML5 named references, including the legacy ones
/// without `;` and the longest-prefix rule (`&notit;` -> `¬it;`), and numeric references with
/// Python's replacements for invalid code points.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match charref(after) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Matches Python's `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` right after a `&`;
/// returns the bytes consumed after the `&` and the replacement text.
fn charref(s: &str) -> Option<(usize, String)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (hex, start) = match bytes.get(1) {
            Some(b'x' | b'X') => (true, 2),
            _ => (false, 1),
        };
        let digits = bytes[start..]
            .iter()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let mut end = start + digits;
        if bytes.get(end) == Some(&b';') {
            end += 1;
        }
        let radix = if hex { 16 } else { 10 };
        // Saturate: anything past U+10FFFF becomes U+FFFD, however large.
        let num = bytes[start..start + digits].iter().fold(0u64, |acc, &b| {
            let d = (b as char).to_digit(radix).expect("checked digit") as u64;
            acc.saturating_mul(radix as u64)
                .saturating_add(d)
                .min(0x7fff_ffff)
        });
        return Some((end, numeric_charref(num)));
    }
    // Named: up to 32 characters not in "\t\n\x0c <&#;", then an optional ';'.
    let mut end = 0;
    for (n, c) in s.chars().enumerate() {
        if n == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end += c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    if bytes.get(end) == Some(&b';') {
        end += 1;
    }
    let name = &s[..end];
    if let Some(v) = html5_entity(&format!("&{name}")) {
        return Some((end, v.to_owned()));
    }
    // Longest prefix (of at least two characters, shorter than the whole) that is an entity.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).collect();
    for x in (2..bounds.len()).rev() {
        let (prefix, tail) = name.split_at(bounds[x]);
        if let Some(v) = html5_entity(&format!("&{prefix}")) {
            return Some((end, format!("{v}{tail}")));
        }
    }
    Some((end, format!("&{name}")))
}

/// Python's `html._replace_charref` for a numeric reference.
fn numeric_charref(num: u64) -> String {
    match num {
        0x00 => "\u{fffd}".into(),
        0x0d => "\r".into(),
        0x80..=0x9f => cp1252_c1(char::from_u32(num as u32).expect("C1")).to_string(),
        0xd800..=0xdfff => "\u{fffd}".into(),
        n if n > 0x10ffff => "\u{fffd}".into(),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef => String::new(),
        n if n & 0xfffe == 0xfffe => String::new(),
        n => char::from_u32(n as u32).expect("valid scalar").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(serde::Deserialize)]
    struct Case {
        step: String,
        text: String,
        ftfy: String,
        ftfy_default: String,
        clean: String,
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text")
    }

    fn cases(step: &str) -> Vec<Case> {
        let text = std::fs::read_to_string(fixtures().join("clean.jsonl")).expect("clean.jsonl");
        let all: Vec<Case> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("clean.jsonl line"))
            .collect();
        let picked: Vec<Case> = all.into_iter().filter(|c| c.step == step).collect();
        assert!(!picked.is_empty(), "no clean.jsonl cases for step {step}");
        picked
    }

    /// fix_text == ftfy.fix_text(fix_encoding=False) and clean_text == open_clip's clean, for every
    /// case of one step; also that the step alone changes each of its cases (so the case tests it).
    fn check_step(step: &str, alone: Option<fn(&str) -> String>) {
        for case in cases(step) {
            assert_eq!(
                fix_text(&case.text),
                case.ftfy,
                "fix_text({:?}) [{step}]",
                case.text
            );
            if case.ftfy == case.ftfy_default {
                assert_eq!(
                    clean_text(&case.text),
                    case.clean,
                    "clean_text({:?}) [{step}]",
                    case.text
                );
            }
            if let Some(f) = alone {
                assert_ne!(
                    f(&case.text),
                    case.text,
                    "{step} leaves {:?} alone",
                    case.text
                );
            }
        }
    }

    #[test]
    fn step_unescape_html() {
        check_step("unescape_html", None);
    }
    #[test]
    fn step_remove_terminal_escapes() {
        check_step("remove_terminal_escapes", None);
    }
    #[test]
    fn step_fix_c1_controls() {
        check_step("fix_c1_controls", Some(fix_c1_controls));
    }
    #[test]
    fn step_fix_latin_ligatures() {
        check_step("fix_latin_ligatures", None);
    }
    #[test]
    fn step_fix_character_width() {
        check_step("fix_character_width", Some(fix_character_width));
    }
    #[test]
    fn step_uncurl_quotes() {
        check_step("uncurl_quotes", None);
    }
    #[test]
    fn step_fix_line_breaks() {
        check_step("fix_line_breaks", Some(fix_line_breaks));
    }
    #[test]
    fn step_remove_control_chars() {
        check_step("remove_control_chars", None);
    }
    #[test]
    fn step_normalize_nfc() {
        check_step("normalize_nfc", None);
    }
    #[test]
    fn step_html_unescape() {
        check_step("html_unescape", None);
    }
    #[test]
    fn step_whitespace_lower() {
        check_step("whitespace_lower", None);
    }
    #[test]
    fn step_fixed_point() {
        check_step("fixed_point", None);
    }

    /// htmlize's entity table is the same as Python's `html.entities.html5`.
    #[test]
    fn entity_table_matches_python() {
        let text = std::fs::read_to_string(fixtures().join("html5_entities.json")).unwrap();
        let py: HashMap<String, String> = serde_json::from_str(&text).unwrap();
        assert_eq!(py.len(), htmlize::ENTITIES.len(), "entity count");
        for (name, value) in &py {
            assert_eq!(
                html5_entity(&format!("&{name}")),
                Some(value.as_str()),
                "&{name}"
            );
        }
    }

    #[test]
    fn python_whitespace() {
        for c in [
            '\u{1c}', '\u{1f}', '\u{85}', '\u{a0}', '\u{3000}', '\u{2028}', ' ', '\t',
        ] {
            assert!(py_isspace(c), "{c:?}");
        }
        for c in ['\u{200b}', '\u{180e}', '\u{feff}', 'a'] {
            assert!(!py_isspace(c), "{c:?}");
        }
    }
}
