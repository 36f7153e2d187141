//! Low size limits in a generated repository: `max_image_bytes` just above
//! the largest good photo and a small `max_text_bytes`, so the soak's
//! oversized elements are cheap to send.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clip_contract::{model, param};

/// Appends `key: value` to the parameters of `model_dir/config.pbtxt`
/// (protobuf text format takes repeated fields anywhere).
fn add_parameter(model_dir: &Path, key: &str, value: usize) -> Result<()> {
    let path = model_dir.join("config.pbtxt");
    let mut config =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if config.contains(&format!("key: \"{key}\"")) {
        bail!("{} already sets {key}", path.display());
    }
    config.push_str(&format!(
        "\n# Added by scripts/soak.sh: a low limit, so oversized elements are cheap to send.\n\
         parameters {{\n  key: \"{key}\"\n  value: {{ string_value: \"{value}\" }}\n}}\n"
    ));
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))
}

/// The image limit for photos of at most `largest` bytes: the next MiB
/// above it, at least 1 MiB.
pub fn image_limit(largest: usize) -> usize {
    (largest / (1 << 20) + 1) << 20
}

pub fn set(repo: &Path, prefix: &str, max_image_bytes: usize, max_text_bytes: usize) -> Result<()> {
    add_parameter(
        &repo.join(format!("{prefix}{}", model::IMAGE_PREPROCESS)),
        param::MAX_IMAGE_BYTES,
        max_image_bytes,
    )?;
    add_parameter(
        &repo.join(format!("{prefix}{}", model::TEXT_PREPROCESS)),
        param::MAX_TEXT_BYTES,
        max_text_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_limit_is_the_next_mebibyte() {
        assert_eq!(image_limit(0), 1 << 20);
        assert_eq!(image_limit(4_972_488), 5 << 20);
        assert_eq!(image_limit(5 << 20), 6 << 20);
    }

    #[test]
    fn a_parameter_is_appended_once() {
        let dir = std::env::temp_dir().join(format!("clip-soak-limits-{}", std::process::id()));
        let model = dir.join(model::TEXT_PREPROCESS);
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.pbtxt"), "name: \"x\"\n").unwrap();
        add_parameter(&model, param::MAX_TEXT_BYTES, 1024).unwrap();
        let text = std::fs::read_to_string(model.join("config.pbtxt")).unwrap();
        assert!(text.contains("key: \"max_text_bytes\"\n  value: { string_value: \"1024\" }"));
        assert!(add_parameter(&model, param::MAX_TEXT_BYTES, 1024).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
