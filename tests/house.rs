// SPDX-License-Identifier: Apache-2.0
//! Facts about the repository that must stay true together: one minimum
//! Rust version, scenario names rather than their origin, and docs that read
//! the same on any machine.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every file git tracks.
fn tracked() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root().join(String::from_utf8_lossy(p).as_ref()))
        .collect()
}

#[test]
fn one_minimum_rust_version() {
    let cargo = read("Cargo.toml");
    let min = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the workspace's rust-version");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("Rust ≥ {min}")),
        "README.md must state the minimum Rust as `Rust ≥ {min}`"
    );
    // install-deps reads the number from Cargo.toml instead of stating its own.
    let deps = read("scripts/install-deps.sh");
    assert!(deps.contains("rust-version") && !deps.contains("Rust >= 1."));
    for line in readme.lines().chain(deps.lines()) {
        if let Some(i) = line.find("Rust ≥ ") {
            assert!(line[i..].starts_with(&format!("Rust ≥ {min}")), "{line}");
        }
    }
}

#[test]
fn nothing_is_named_after_the_brief() {
    let mut found = Vec::new();
    for path in tracked() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let lower = text.to_lowercase();
        // Spelled in pieces, so this file does not find itself.
        let word = ["br", "ief"].concat();
        if [
            format!("the {word}"),
            format!("{word}'s"),
            format!("{word}_"),
        ]
        .iter()
        .any(|w| lower.contains(w.as_str()))
        {
            found.push(path.display().to_string());
        }
    }
    assert!(found.is_empty(), "name the scenario instead: {found:?}");
}

#[test]
fn docs_name_no_machine_specific_paths() {
    for path in tracked() {
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for bad in ["/work/", "/root/", "/home/"] {
            assert!(
                !text.contains(bad),
                "{} names a path of one machine ({bad})",
                path.display()
            );
        }
    }
}
