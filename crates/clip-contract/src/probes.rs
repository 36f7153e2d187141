//! The conformance probes: a few sentences and photos that repo-gen embeds
//! in ONNX Runtime when it writes a repository (stored in the ensembles'
//! config parameters) and that `clip-client verify` sends to a live server,
//! so a deployment that answers differently (other weights, other
//! normalisation, a lossy TensorRT build) is caught before it fills an
//! index. Both sides take them from here; [`fingerprint`] tells the stored
//! embeddings of one probe set from another's.

/// Sentences: plain, punctuated, and non-ASCII (cleaning and BPE at work).
pub const SENTENCES: [&str; 3] = [
    "a photo of a cat",
    "A cup of coffee, on a saucer -- close up!",
    "Ein Hund spielt im Schnee: café, naïve, 東京",
];

/// Photos (made by scripts/fixtures/probes.py): a camera-style JPEG and a PNG.
pub const IMAGES: [(&str, &[u8]); 2] = [
    ("cat.jpg", include_bytes!("../probes/cat.jpg")),
    ("coffee.png", include_bytes!("../probes/coffee.png")),
];

/// Identifies the probe inputs: FNV-1a (64-bit) over every sentence and
/// image, each preceded by its length, as 16 hex digits.
pub fn fingerprint() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let inputs = SENTENCES
        .iter()
        .map(|s| s.as_bytes())
        .chain(IMAGES.iter().map(|(_, bytes)| *bytes));
    for input in inputs {
        for byte in (input.len() as u64).to_le_bytes().iter().chain(input) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_stable_and_covers_every_input() {
        let fingerprint = fingerprint();
        assert_eq!(fingerprint.len(), 16);
        assert_eq!(fingerprint, super::fingerprint());
        assert!(IMAGES.iter().all(|(_, bytes)| bytes.len() > 1000));
        assert!(IMAGES[0].1.starts_with(&[0xFF, 0xD8]), "a JPEG");
        assert!(IMAGES[1].1.starts_with(b"\x89PNG"), "a PNG");
    }
}
