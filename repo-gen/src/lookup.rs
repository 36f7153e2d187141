//! Finding a model by a name typed by a person: case does not matter, `-`
//! and `_` are the same character, and an unknown name gets the closest
//! known ones as suggestions.

use crate::registry::ModelSpec;

/// Why a name names no model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{}", unknown_message(.name, .suggestions))]
    Unknown {
        name: String,
        /// Closest known names, best first.
        suggestions: Vec<&'static str>,
    },
    #[error(
        "model name {name:?} has no pretrained tag; write ARCH::PRETRAINED{}",
        match_list(" (known for this architecture: ", .candidates, ")")
    )]
    MissingPretrained {
        name: String,
        /// Every known name with this architecture.
        candidates: Vec<&'static str>,
    },
    #[error(
        "model name {name:?} is ambiguous: it matches {}; spell it exactly",
        .candidates.join(", ")
    )]
    Ambiguous {
        name: String,
        candidates: Vec<&'static str>,
    },
}

fn unknown_message(name: &str, suggestions: &[&'static str]) -> String {
    let mut message = format!("unknown model {name:?}");
    if suggestions.is_empty() {
        message.push_str("; run `repo-gen models` for the full list");
    } else {
        message.push_str(&match_list("; did you mean ", suggestions, "?"));
        message.push_str(" (`repo-gen models` lists all)");
    }
    message
}

fn match_list(before: &str, names: &[&'static str], after: &str) -> String {
    if names.is_empty() {
        return String::new();
    }
    format!("{before}{}{after}", names.join(", "))
}

/// The model called `name` in `models` (see [`crate::registry::lookup`]).
pub fn lookup_in<'a>(models: &'a [ModelSpec], name: &str) -> Result<&'a ModelSpec, LookupError> {
    let name = name.trim();
    if let Some(exact) = models.iter().find(|m| m.name == name) {
        return Ok(exact);
    }
    let wanted = normalize(name);
    let matches: Vec<&ModelSpec> = models
        .iter()
        .filter(|m| normalize(m.name) == wanted)
        .collect();
    match matches.as_slice() {
        [one] => return Ok(one),
        [] => {}
        many => {
            return Err(LookupError::Ambiguous {
                name: name.to_owned(),
                candidates: many.iter().map(|m| m.name).collect(),
            })
        }
    }
    if !name.contains("::") {
        let candidates: Vec<&'static str> = models
            .iter()
            .filter(|m| normalize(m.arch) == wanted)
            .map(|m| m.name)
            .collect();
        if !candidates.is_empty() {
            return Err(LookupError::MissingPretrained {
                name: name.to_owned(),
                candidates,
            });
        }
    }
    Err(LookupError::Unknown {
        name: name.to_owned(),
        suggestions: closest(models, &wanted),
    })
}

/// Names compare in lower case with `_` read as `-`.
fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Up to five names, closest first: those within a third of the query's
/// length in edit distance, and those the query is the start of
/// (`ViT-H-14::laion2b`).
fn closest(models: &[ModelSpec], wanted: &str) -> Vec<&'static str> {
    let budget = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'static str)> = models
        .iter()
        .filter_map(|m| {
            let known = normalize(m.name);
            let distance = levenshtein(&known, wanted);
            let completes = wanted.contains("::") && known.starts_with(wanted);
            (distance <= budget || completes).then_some((distance, m.name))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, name)| name).collect()
}

/// Edits (insert, delete, substitute one char) that turn `a` into `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("openai", "openai2"), 1);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
    }

    #[test]
    fn normalize_folds_case_and_underscores() {
        assert_eq!(
            normalize("ViT-B-16::laion400m_e31"),
            "vit-b-16::laion400m-e31"
        );
        assert_eq!(
            normalize("VIT_B_16::LAION400M-E31"),
            "vit-b-16::laion400m-e31"
        );
    }
}
