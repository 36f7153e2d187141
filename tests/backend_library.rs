//! The built `libtriton_clip.so` itself: what it exports and which glibc it
//! needs. The NGC 24.x containers are Ubuntu 22.04 (glibc 2.35).

use std::process::Command;

use harness::server::backend_library;

const NEWEST_GLIBC: (u32, u32) = (2, 35);
const ENTRY_POINTS: [&str; 7] = [
    "TRITONBACKEND_Initialize",
    "TRITONBACKEND_Finalize",
    "TRITONBACKEND_ModelInitialize",
    "TRITONBACKEND_ModelFinalize",
    "TRITONBACKEND_ModelInstanceInitialize",
    "TRITONBACKEND_ModelInstanceFinalize",
    "TRITONBACKEND_ModelInstanceExecute",
];

fn dynamic_symbols() -> String {
    let output = Command::new("objdump")
        .arg("-T")
        .arg(backend_library())
        .output()
        .expect("run objdump -T");
    assert!(
        output.status.success(),
        "objdump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("objdump output")
}

fn glibc_version(token: &str) -> Option<(u32, u32)> {
    let version = token
        .trim_matches(|c| c == '(' || c == ')')
        .strip_prefix("GLIBC_")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[test]
fn needs_no_glibc_newer_than_2_35() {
    let symbols = dynamic_symbols();
    let mut newest = (0, 0);
    for line in symbols.lines() {
        for version in line.split_whitespace().filter_map(glibc_version) {
            assert!(
                version <= NEWEST_GLIBC,
                "needs GLIBC_{}.{}: {line}",
                version.0,
                version.1
            );
            newest = newest.max(version);
        }
    }
    assert!(
        newest > (2, 0),
        "found no glibc versions at all in:\n{symbols}"
    );
}

#[test]
fn exports_only_the_triton_backend_api() {
    let symbols = dynamic_symbols();
    let exported: Vec<&str> = symbols
        .lines()
        .filter(|line| line.contains(" g ") && !line.contains("*UND*"))
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    for name in &exported {
        assert!(name.starts_with("TRITONBACKEND_"), "exports {name}");
    }
    for entry in ENTRY_POINTS {
        assert!(
            exported.contains(&entry),
            "does not export {entry}: {exported:?}"
        );
    }
}

#[test]
fn glibc_versions_parse() {
    assert_eq!(glibc_version("(GLIBC_2.2.5)"), Some((2, 2)));
    assert_eq!(glibc_version("GLIBC_2.35"), Some((2, 35)));
    assert_eq!(glibc_version("GLIBCXX_3.4"), None);
}
