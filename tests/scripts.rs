//! The shell scripts find cargo's outputs where cargo puts them: a user with
//! CARGO_TARGET_DIR set globally (common among Rust users) must not get
//! "No such file or directory" from a hard-coded target/release.

use std::process::Command;

#[test]
fn launch_triton_looks_for_the_backend_under_cargo_target_dir() {
    let target = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(harness::workspace_root().join("scripts/launch-triton.sh"))
        .args(["--model-repository", "/", "--mode", "local"])
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .expect("run launch-triton.sh");
    assert!(!output.status.success(), "there is no library to serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = target.path().join("release/libtriton_clip.so");
    assert!(
        stderr.contains(&format!("no backend library at '{}'", expected.display())),
        "{stderr}"
    );
}

/// `target/release` as a literal folder, not the tail of `$target/release`.
fn hard_coded_target(code: &str) -> bool {
    code.match_indices("target/").any(|(at, _)| {
        let literal = !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c == '$' || c == '{' || c == '_' || c.is_alphanumeric());
        let rest = &code[at + "target/".len()..];
        literal && (rest.starts_with("release") || rest.starts_with("debug"))
    })
}

#[test]
fn no_script_hard_codes_the_target_folder() {
    assert!(hard_coded_target("ls target/release/x"));
    assert!(!hard_coded_target("bin=$target/release"));
    let root = harness::workspace_root();
    let mut offenders = Vec::new();
    for dir in ["scripts", "scripts/bench", ".ci"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                let code = line.split('#').next().unwrap_or("");
                if hard_coded_target(code) {
                    offenders.push(format!("{}:{}: {line}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
