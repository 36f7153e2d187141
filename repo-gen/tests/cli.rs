//! The `repo-gen` binary.

use std::process::{Command, Output};

fn repo_gen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repo-gen"))
        .args(args)
        .output()
        .expect("run repo-gen")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn models_prints_one_row_per_registry_entry() {
    let output = repo_gen(&["models"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + repo_gen::registry::all().len(), "{text}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "MODEL",
            "DIM",
            "IMAGE",
            "TEXT",
            "ACTIVATION",
            "WEIGHTS",
            "HUB",
            "REPO"
        ]
    );
    for (line, model) in lines[1..].iter().zip(repo_gen::registry::all()) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let (layout, repo) = match &model.multilingual {
            None => (model.layout.as_str().to_owned(), model.hub.repo.to_owned()),
            Some(text) => (
                format!("M-CLIP+{}", model.layout),
                format!("{}+{}", text.hub.repo, model.hub.repo),
            ),
        };
        assert_eq!(
            cells,
            [
                model.name,
                &model.architecture.embed_dim.to_string(),
                &model.architecture.vision.image_size.to_string(),
                model.text_tower(),
                model.architecture.activation.name(),
                &layout,
                &repo,
            ],
            "{line}"
        );
    }
    // Columns line up: every row starts its HUB REPO cell at the same place.
    let column = lines[0].find("HUB REPO").unwrap();
    for line in &lines[1..] {
        assert!(line[column..].contains('/'), "{line}");
        assert_ne!(line.as_bytes()[column], b' ', "{line}");
        assert_eq!(line.as_bytes()[column - 1], b' ', "{line}");
    }
}

#[test]
fn models_row_for_vit_l_14_336() {
    let text = stdout(&repo_gen(&["models"]));
    let row = text
        .lines()
        .find(|l| l.starts_with("ViT-L-14-336::openai "))
        .expect("row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "ViT-L-14-336::openai",
            "768",
            "336",
            "clip",
            "quick_gelu",
            "transformers",
            "openai/clip-vit-large-patch14-336"
        ]
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("M-CLIP/XLM-Roberta-Large-Vit-B-16Plus "))
        .expect("row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus",
            "640",
            "240",
            "xlm-roberta",
            "gelu",
            "M-CLIP+open_clip",
            "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus+timm/vit_base_patch16_plus_clip_240.laion400m_e31"
        ]
    );
}

#[test]
fn help_says_what_repo_gen_is() {
    let output = repo_gen(&["--help"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("Triton model repositories"), "{text}");
    assert!(text.contains("CLIP"), "{text}");
    assert!(text.contains("models"), "{text}");
    for flag in [
        "--weights",
        "--model",
        "--onnx-dir",
        "--out",
        "--runtime",
        "--dtype",
        "--name-prefix",
        "--max-batch-size",
        "--preferred-batch-size",
        "--max-queue-delay-us",
        "--instances",
        "--gpus",
        "--trt-accelerator",
        "--ort-library",
        "--force",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn no_subcommand_or_unknown_subcommand_fails_with_usage() {
    let output = repo_gen(&[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));

    let output = repo_gen(&["export"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand"));
}
