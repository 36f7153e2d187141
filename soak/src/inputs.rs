//! What the clients send: good sentences and photos, each with the
//! embedding it must come back as, bad elements, each with the refusal it
//! must get, and the random mix of requests made of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clip_client::Modality;
use clip_contract::param;
use serde::Serialize;

use crate::rng::Rng;

/// What is wrong with a bad element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadKind {
    CorruptMarker,
    CorruptSof,
    CorruptDqt,
    Truncated,
    UnknownFormat,
    Url,
    Oversize,
    OverlongText,
    InvalidUtf8,
}

impl BadKind {
    pub const ALL: [BadKind; 9] = [
        BadKind::CorruptMarker,
        BadKind::CorruptSof,
        BadKind::CorruptDqt,
        BadKind::Truncated,
        BadKind::UnknownFormat,
        BadKind::Url,
        BadKind::Oversize,
        BadKind::OverlongText,
        BadKind::InvalidUtf8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BadKind::CorruptMarker => "corrupt-marker",
            BadKind::CorruptSof => "corrupt-sof",
            BadKind::CorruptDqt => "corrupt-dqt",
            BadKind::Truncated => "truncated",
            BadKind::UnknownFormat => "unknown-format",
            BadKind::Url => "url",
            BadKind::Oversize => "oversize",
            BadKind::OverlongText => "overlong-text",
            BadKind::InvalidUtf8 => "invalid-utf8",
        }
    }

    pub fn from_name(name: &str) -> Option<BadKind> {
        BadKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What the element is, and the refusal it must get, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            BadKind::CorruptMarker => {
                "photo whose APP0 segment length is 1: `corrupt JPEG data`"
            }
            BadKind::CorruptSof => {
                "photo whose frame header (SOF) says height 0: `unsupported JPEG image: Empty JPEG image`"
            }
            BadKind::CorruptDqt => {
                "photo whose first quantization table (DQT) is renamed to a comment: `corrupt JPEG data: Quantization table 0x00 was not defined`"
            }
            BadKind::Truncated => "photo cut at 30-70% of its bytes: `truncated JPEG data`",
            BadKind::UnknownFormat => {
                "random bytes: `unknown image format (first bytes: ...)`, its own first bytes"
            }
            BadKind::Url => {
                "an https:// URL as the image bytes: `unknown image format`, never fetched"
            }
            BadKind::Oversize => {
                "photo padded with zeros past max_image_bytes: `is N bytes, over this model's limit`, its own N"
            }
            BadKind::OverlongText => {
                "ASCII sentence longer than max_text_bytes: `is N bytes, over this model's limit`, its own N"
            }
            BadKind::InvalidUtf8 => "sentence with bytes that are not UTF-8: `is not valid UTF-8`",
        }
    }

    pub fn modality(self) -> Modality {
        match self {
            BadKind::OverlongText | BadKind::InvalidUtf8 => Modality::Text,
            _ => Modality::Image,
        }
    }

    /// Refused by the size check, which looks at every element of a request
    /// before any is decoded or tokenized: it is named even when another
    /// bad element comes before it.
    pub fn size_check(self) -> bool {
        matches!(self, BadKind::Oversize | BadKind::OverlongText)
    }
}

/// A good element and the embedding it must come back as.
pub struct Good {
    pub modality: Modality,
    /// "sentence", or the photo's size class (its folder: 0.3mp, 2mp, 12mp).
    pub class: String,
    /// What reports show for it.
    pub label: String,
    pub bytes: Arc<Vec<u8>>,
    /// From a request of this element alone, on the idle server, at startup.
    pub expected: Vec<f32>,
}

/// A bad element and the refusal it must get.
pub struct Bad {
    pub kind: BadKind,
    pub bytes: Arc<Vec<u8>>,
    /// What follows "<TENSOR> element <i>" in the server's message.
    pub fragment: String,
}

/// Photos of one size class.
#[derive(Serialize)]
pub struct ImageClass {
    pub name: String,
    /// Share of good image elements drawn from this class.
    pub weight: f64,
    /// At most one photo of a heavy class (12 MP) per request.
    pub heavy: bool,
    pub goods: Vec<usize>,
}

/// The request mix; the Python clients draw from the same one.
#[derive(Clone, Debug, Serialize)]
pub struct Mix {
    /// Share of requests that go to clip_text.
    pub text_share: f64,
    /// Elements per request, drawn uniformly from these.
    pub text_sizes: Vec<usize>,
    pub image_sizes: Vec<usize>,
    /// Chance that an element is bad.
    pub text_bad: f64,
    pub image_bad: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            text_share: 0.45,
            text_sizes: vec![1, 1, 1, 2, 3, 4, 6, 8],
            image_sizes: vec![1, 1, 1, 2, 2, 3, 4],
            text_bad: 0.15,
            image_bad: 0.2,
        }
    }
}

/// The models' size limits, as the server's configs hold them.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limits {
    pub max_image_bytes: usize,
    pub max_text_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    Good(usize),
    Bad(usize),
}

/// One request: its ensemble and its elements, in order.
#[derive(Clone, Debug)]
pub struct Plan {
    pub modality: Modality,
    pub elements: Vec<Element>,
}

pub struct Inputs {
    pub goods: Vec<Good>,
    pub bads: Vec<Bad>,
    pub text_goods: Vec<usize>,
    pub image_classes: Vec<ImageClass>,
    /// The bad kinds in use, with their elements; text and image kinds.
    pub bad_kinds: Vec<(BadKind, Vec<usize>)>,
    pub limits: Limits,
}

/// Share of good image elements per class, by the class names
/// scripts/soak.sh gives photos.py; any other class gets an equal share.
fn class_weight(name: &str, classes: usize) -> (f64, bool) {
    match name {
        "0.3mp" => (0.65, false),
        "2mp" => (0.25, false),
        "12mp" => (0.10, true),
        _ => (1.0 / classes as f64, false),
    }
}

/// Distinct sentences: every one carries its own number, a tenth are not
/// ASCII, and one is exactly `max_text_bytes` long (the limit is inclusive).
pub fn sentences(count: usize, max_text_bytes: usize) -> Vec<String> {
    const OPENINGS: [&str; 8] = [
        "a photo of",
        "a close-up photo of",
        "a blurry picture of",
        "an old photograph of",
        "a painting of",
        "a drawing of",
        "a cropped photo of",
        "a bright photo of",
    ];
    const THINGS: [&str; 12] = [
        "a red bicycle",
        "two cats",
        "a rocket on the launch pad",
        "a cup of coffee",
        "an astronaut",
        "a motorcycle",
        "the night sky",
        "a retina scan",
        "a wooden table",
        "three dogs",
        "a mountain lake",
        "a city street",
    ];
    const PLACES: [&str; 6] = [
        "at dawn",
        "in the snow",
        "on a beach",
        "in a museum",
        "under a bridge",
        "at night",
    ];
    const OTHERS: [&str; 6] = [
        "café au lait",
        "東京の夜景",
        "🚀 launch",
        "naïve résumé",
        "Ünïcödé &amp; HTML",
        "ｆｕｌｌ－ｗｉｄｔｈ",
    ];
    let mut out: Vec<String> = (0..count.saturating_sub(1))
        .map(|i| {
            if i % 10 == 9 {
                format!("{} number {i}", OTHERS[(i / 10) % OTHERS.len()])
            } else {
                format!(
                    "{} {} {}, number {i}",
                    OPENINGS[i % OPENINGS.len()],
                    THINGS[(i / 3) % THINGS.len()],
                    PLACES[(i / 7) % PLACES.len()]
                )
            }
        })
        .collect();
    let mut at_limit = "a sentence exactly at the limit: ".to_owned();
    while at_limit.len() < max_text_bytes {
        at_limit.push_str("a photo of a cat ");
    }
    at_limit.truncate(max_text_bytes);
    out.push(at_limit);
    out
}

/// Every `*.jpg` under `dir`, with its size class (the folder it is in).
pub fn photos(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "jpg") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    if paths.is_empty() {
        bail!("no *.jpg photos under {}", dir.display());
    }
    Ok(paths
        .into_iter()
        .map(|p| {
            let class = p
                .parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (class, p)
        })
        .collect())
}

/// Position of the first `FF <marker>` of `markers` in a JPEG's header.
fn find_marker(jpeg: &[u8], markers: &[u8]) -> Option<usize> {
    jpeg.windows(2)
        .position(|w| w[0] == 0xFF && markers.contains(&w[1]))
}

fn hex8(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The "over this model's limit" fragment the size check writes.
fn over_limit(len: usize, limit: usize, parameter: &str) -> String {
    format!(" is {len} bytes, over this model's limit of {limit} (parameter '{parameter}')")
}

/// `count` bad elements of `kind`, made from the `photos` (baseline JPEGs
/// as photos.py writes them) with `rng`.
pub fn bad_elements(
    kind: BadKind,
    count: usize,
    photos: &[Arc<Vec<u8>>],
    limits: Limits,
    rng: &mut Rng,
) -> Result<Vec<Bad>> {
    let mut out = Vec::new();
    for i in 0..count {
        let photo = photos[i % photos.len()].as_slice();
        let (bytes, fragment) = match kind {
            BadKind::CorruptMarker => {
                if photo.get(2..4) != Some(&[0xFF, 0xE0]) {
                    bail!(
                        "{}: the photos must start with a JFIF APP0 segment",
                        kind.name()
                    );
                }
                let mut b = photo.to_vec();
                b[4..6].copy_from_slice(&[0, 1]);
                (b, ": corrupt JPEG data".to_owned())
            }
            BadKind::CorruptSof => {
                let sof = find_marker(photo, &[0xC0, 0xC1, 0xC2])
                    .context("corrupt-sof: a photo without a frame header")?;
                let mut b = photo.to_vec();
                // FF Cx, length (2), precision (1), height (2), width (2).
                b[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
                (b, ": unsupported JPEG image: Empty JPEG image".to_owned())
            }
            BadKind::CorruptDqt => {
                let dqt = find_marker(photo, &[0xDB])
                    .context("corrupt-dqt: a photo without a quantization table")?;
                if photo[dqt + 4] & 0x0F != 0 {
                    bail!("corrupt-dqt: the first quantization table of a photo is not table 0");
                }
                let mut b = photo.to_vec();
                b[dqt + 1] = 0xFE; // a comment (COM) segment of the same length
                (
                    b,
                    ": corrupt JPEG data: Quantization table 0x00 was not defined".to_owned(),
                )
            }
            BadKind::Truncated => {
                let cut = photo.len() * (30 + rng.below(41)) / 100;
                (photo[..cut].to_vec(), ": truncated JPEG data".to_owned())
            }
            BadKind::UnknownFormat => {
                // 'Z' starts no accepted format's signature.
                let mut b = vec![b'Z'];
                let len = 99 + rng.below(4000);
                b.extend(rng.bytes(len));
                let fragment = format!(": unknown image format (first bytes: {})", hex8(&b));
                (b, fragment)
            }
            BadKind::Url => {
                let b =
                    format!("https://example.com/photos/{:016x}.jpg", rng.next_u64()).into_bytes();
                let fragment = format!(": unknown image format (first bytes: {})", hex8(&b));
                (b, fragment)
            }
            BadKind::Oversize => {
                let len = limits.max_image_bytes + 1 + rng.below(64 << 10);
                let mut b = photo.to_vec();
                b.resize(len, 0);
                let fragment = over_limit(len, limits.max_image_bytes, param::MAX_IMAGE_BYTES);
                (b, fragment)
            }
            BadKind::OverlongText => {
                let len = limits.max_text_bytes + 1 + rng.below(2048);
                let mut text = format!("an overlong sentence, number {i}:");
                while text.len() < len {
                    text.push_str(" a photo of a cat");
                }
                text.truncate(len);
                let fragment = over_limit(len, limits.max_text_bytes, param::MAX_TEXT_BYTES);
                (text.into_bytes(), fragment)
            }
            BadKind::InvalidUtf8 => {
                let b = match i % 4 {
                    0 => [
                        b"caf\xe9 au lait, number ".as_slice(),
                        i.to_string().as_bytes(),
                    ]
                    .concat(),
                    1 => [
                        b"\xff\xfe a photo, number ".as_slice(),
                        i.to_string().as_bytes(),
                    ]
                    .concat(),
                    // A multi-byte sequence cut short, then an encoded surrogate.
                    2 => [
                        b"a photo of a cat \xc3 number ".as_slice(),
                        i.to_string().as_bytes(),
                    ]
                    .concat(),
                    _ => [
                        i.to_string().as_bytes(),
                        b" \xed\xa0\x80 surrogate".as_slice(),
                    ]
                    .concat(),
                };
                (b, " is not valid UTF-8".to_owned())
            }
        };
        out.push(Bad {
            kind,
            bytes: Arc::new(bytes),
            fragment,
        });
    }
    Ok(out)
}

impl Inputs {
    /// Good sentences and photos (their `expected` still empty) and bad
    /// elements of `kinds`.
    pub fn new(
        sentences: Vec<String>,
        photos: Vec<(String, PathBuf)>,
        kinds: &[BadKind],
        limits: Limits,
        seed: u64,
    ) -> Result<Inputs> {
        let mut goods = Vec::new();
        let mut text_goods = Vec::new();
        for sentence in sentences {
            if sentence.len() > limits.max_text_bytes {
                bail!("a good sentence is over max_text_bytes: {sentence:?}");
            }
            text_goods.push(goods.len());
            goods.push(Good {
                modality: Modality::Text,
                class: "sentence".into(),
                label: sentence.chars().take(48).collect(),
                bytes: Arc::new(sentence.into_bytes()),
                expected: Vec::new(),
            });
        }
        let mut image_classes: Vec<ImageClass> = Vec::new();
        for (class, path) in photos {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if bytes.len() > limits.max_image_bytes {
                bail!(
                    "{} is {} bytes, over max_image_bytes {}",
                    path.display(),
                    bytes.len(),
                    limits.max_image_bytes
                );
            }
            let index = match image_classes.iter().position(|c| c.name == class) {
                Some(index) => index,
                None => {
                    image_classes.push(ImageClass {
                        name: class.clone(),
                        weight: 0.0,
                        heavy: false,
                        goods: Vec::new(),
                    });
                    image_classes.len() - 1
                }
            };
            image_classes[index].goods.push(goods.len());
            goods.push(Good {
                modality: Modality::Image,
                class,
                label: path
                    .iter()
                    .rev()
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<PathBuf>()
                    .display()
                    .to_string(),
                bytes: Arc::new(bytes),
                expected: Vec::new(),
            });
        }
        let count = image_classes.len();
        for class in &mut image_classes {
            (class.weight, class.heavy) = class_weight(&class.name, count);
        }
        let total: f64 = image_classes.iter().map(|c| c.weight).sum();
        image_classes.iter_mut().for_each(|c| c.weight /= total);
        // Light classes first: a heavy photo drawn twice for one request is
        // replaced by a photo of the first class.
        image_classes.sort_by_key(|c| c.heavy);

        // Bad elements are made from the lightest photos.
        let light: Vec<Arc<Vec<u8>>> = image_classes[0]
            .goods
            .iter()
            .map(|&g| Arc::clone(&goods[g].bytes))
            .collect();
        let mut rng = Rng::new(seed);
        let mut bads = Vec::new();
        let mut bad_kinds = Vec::new();
        for &kind in kinds {
            // Oversized photos are megabytes each: a few suffice.
            let count = if kind == BadKind::Oversize { 4 } else { 24 };
            let made = bad_elements(kind, count, &light, limits, &mut rng)?;
            let ids = (bads.len()..bads.len() + made.len()).collect();
            bads.extend(made);
            bad_kinds.push((kind, ids));
        }
        Ok(Inputs {
            goods,
            bads,
            text_goods,
            image_classes,
            bad_kinds,
            limits,
        })
    }

    /// The bad kinds in use for `modality`.
    pub fn kinds_of(&self, modality: Modality) -> Vec<&(BadKind, Vec<usize>)> {
        self.bad_kinds
            .iter()
            .filter(|(kind, _)| kind.modality() == modality)
            .collect()
    }

    /// A random good element of `modality`; `heavy_used` keeps a request to
    /// one heavy photo.
    pub fn random_good(&self, modality: Modality, rng: &mut Rng, heavy_used: &mut bool) -> usize {
        match modality {
            Modality::Text => *rng.pick(&self.text_goods),
            Modality::Image => {
                let mut roll = rng.unit();
                let mut class = &self.image_classes[self.image_classes.len() - 1];
                for c in &self.image_classes {
                    if roll < c.weight {
                        class = c;
                        break;
                    }
                    roll -= c.weight;
                }
                if class.heavy {
                    if *heavy_used {
                        class = &self.image_classes[0];
                    }
                    *heavy_used = true;
                }
                *rng.pick(&class.goods)
            }
        }
    }

    /// A random bad element of `modality`, if any kind of it is in use.
    pub fn random_bad(&self, modality: Modality, rng: &mut Rng) -> Option<usize> {
        let kinds = self.kinds_of(modality);
        if kinds.is_empty() {
            return None;
        }
        let (_, ids) = rng.pick(&kinds);
        Some(*rng.pick(ids))
    }

    /// A random request of the mix.
    pub fn plan(&self, rng: &mut Rng, mix: &Mix) -> Plan {
        let (modality, sizes, bad) = if rng.chance(mix.text_share) {
            (Modality::Text, &mix.text_sizes, mix.text_bad)
        } else {
            (Modality::Image, &mix.image_sizes, mix.image_bad)
        };
        let n = *rng.pick(sizes);
        let mut heavy_used = false;
        let elements = (0..n)
            .map(|_| {
                if rng.chance(bad) {
                    if let Some(id) = self.random_bad(modality, rng) {
                        return Element::Bad(id);
                    }
                }
                Element::Good(self.random_good(modality, rng, &mut heavy_used))
            })
            .collect();
        Plan { modality, elements }
    }

    pub fn bytes(&self, element: Element) -> &[u8] {
        match element {
            Element::Good(g) => &self.goods[g].bytes,
            Element::Bad(b) => &self.bads[b].bytes,
        }
    }

    /// The element a request's refusal must name, and that element: the
    /// first one over a size limit (checked before anything is decoded),
    /// else the first bad one. `None`: every element is good.
    pub fn expected_refusal(&self, elements: &[Element]) -> Option<(usize, &Bad)> {
        let bad = |e: &Element| match e {
            Element::Bad(b) => Some(&self.bads[*b]),
            Element::Good(_) => None,
        };
        elements
            .iter()
            .enumerate()
            .find_map(|(i, e)| bad(e).filter(|b| b.kind.size_check()).map(|b| (i, b)))
            .or_else(|| {
                elements
                    .iter()
                    .enumerate()
                    .find_map(|(i, e)| bad(e).map(|b| (i, b)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_distinct_and_one_is_exactly_at_the_limit() {
        let s = sentences(50, 300);
        let unique: std::collections::HashSet<_> = s.iter().collect();
        assert_eq!(unique.len(), 50);
        assert_eq!(s.last().unwrap().len(), 300);
        assert!(s.iter().all(|t| t.len() <= 300));
    }

    #[test]
    fn the_refusal_names_the_first_oversized_element_else_the_first_bad_one() {
        let bad = |kind| Bad {
            kind,
            bytes: Arc::new(Vec::new()),
            fragment: String::new(),
        };
        let inputs = Inputs {
            goods: Vec::new(),
            bads: vec![bad(BadKind::Truncated), bad(BadKind::Oversize)],
            text_goods: Vec::new(),
            image_classes: Vec::new(),
            bad_kinds: Vec::new(),
            limits: Limits {
                max_image_bytes: 1,
                max_text_bytes: 1,
            },
        };
        use Element::{Bad as B, Good as G};
        let named = |e: &[Element]| inputs.expected_refusal(e).map(|(i, b)| (i, b.kind));
        assert_eq!(named(&[G(0), G(1)]), None);
        assert_eq!(named(&[G(0), B(0), G(1)]), Some((1, BadKind::Truncated)));
        assert_eq!(named(&[B(0), G(0), B(1)]), Some((2, BadKind::Oversize)));
    }

    #[test]
    fn bad_elements_carry_their_own_sizes_and_first_bytes() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        jpeg.extend([0u8; 14]);
        jpeg.extend([0xFF, 0xDB, 0, 67, 0]);
        jpeg.extend([1u8; 64]);
        jpeg.extend([0xFF, 0xC0, 0, 17, 8, 0, 10, 0, 20, 3]);
        jpeg.extend([0u8; 9]);
        jpeg.extend([0xFF, 0xD9]);
        let photos = vec![Arc::new(jpeg.clone())];
        let limits = Limits {
            max_image_bytes: 1000,
            max_text_bytes: 100,
        };
        let mut rng = Rng::new(1);
        let one = |kind, rng: &mut Rng| {
            bad_elements(kind, 1, &photos, limits, rng)
                .unwrap()
                .remove(0)
        };
        let oversize = one(BadKind::Oversize, &mut rng);
        assert!(oversize.bytes.len() > 1000);
        assert!(oversize
            .fragment
            .contains(&format!(" is {} bytes", oversize.bytes.len())));
        let text = one(BadKind::OverlongText, &mut rng);
        assert!(text.bytes.len() > 100 && std::str::from_utf8(&text.bytes).is_ok());
        let url = one(BadKind::Url, &mut rng);
        assert!(url
            .fragment
            .ends_with("(first bytes: 68 74 74 70 73 3a 2f 2f)"));
        let sof = one(BadKind::CorruptSof, &mut rng);
        let at = find_marker(&sof.bytes, &[0xC0]).unwrap();
        assert_eq!(&sof.bytes[at + 5..at + 9], &[0, 0, 0, 20]);
        let dqt = one(BadKind::CorruptDqt, &mut rng);
        assert!(find_marker(&dqt.bytes, &[0xDB]).is_none());
        for i in 0..4 {
            let utf8 = bad_elements(BadKind::InvalidUtf8, 4, &photos, limits, &mut rng).unwrap();
            assert!(std::str::from_utf8(&utf8[i].bytes).is_err());
        }
    }
}
