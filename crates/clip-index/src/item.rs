//! The values the API trades in: item ids, kinds, the items appended, the
//! entries read back and the search hits. Plain data, free of LMDB, so every
//! other module can use them.

use std::fmt;
use std::str::FromStr;

/// The identifier of an item: ids are given in order, from 0, by
/// [`Index::append`](crate::Index::append).
pub type ItemId = u32;

/// Whether an item's source is a sentence or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// The source is the sentence itself.
    Text,
    /// The source is the image's path or URI.
    Image,
}

impl ItemKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            ItemKind::Text => b't',
            ItemKind::Image => b'i',
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<ItemKind> {
        match tag {
            b't' => Some(ItemKind::Text),
            b'i' => Some(ItemKind::Image),
            _ => None,
        }
    }

    /// `"text"` or `"image"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Text => "text",
            ItemKind::Image => "image",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(ItemKind::Text),
            "image" => Ok(ItemKind::Image),
            other => Err(format!(
                "unknown item kind {other:?}: expected text or image"
            )),
        }
    }
}

/// One item to append: an embedding and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The sentence, or the image's path or URI.
    pub source: &'a str,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The embedding, `spec().dim` finite values, not all zero. It need not be
    /// normalised: the index compares directions only.
    pub embedding: &'a [f32],
}

/// A stored item, as [`Index::get`](crate::Index::get) returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The item's id.
    pub id: ItemId,
    /// The sentence, or the image's path or URI.
    pub source: String,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The embedding as it was appended.
    pub embedding: Vec<f32>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The item's id.
    pub id: ItemId,
    /// The sentence, or the image's path or URI.
    pub source: String,
    /// Whether `source` is a sentence or an image.
    pub kind: ItemKind,
    /// The cosine similarity between the query and the item's embedding, in [-1, 1].
    pub score: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_kind_names_round_trip() {
        for kind in [ItemKind::Text, ItemKind::Image] {
            assert_eq!(kind.to_string().parse::<ItemKind>(), Ok(kind));
            assert_eq!(ItemKind::from_tag(kind.tag()), Some(kind));
        }
        assert!("video".parse::<ItemKind>().is_err());
    }
}
