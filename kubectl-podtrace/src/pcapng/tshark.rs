// SPDX-License-Identifier: Apache-2.0
//! Test support: reads a capture with the real `tshark` (Debian's
//! package, installed by scripts/install-deps.sh). Shared by the writer's
//! unit tests and the plugin's sandbox test.

use std::path::Path;
use std::process::Command;

/// The `fields` of every packet in the capture at `path`, one row per
/// packet, read by tshark with `options` (e.g. `-N n`). Panics when
/// tshark fails or says anything on stderr (a warning about the file).
pub fn fields(path: &Path, options: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(options).args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("run tshark (scripts/install-deps.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    // Tests run as root, which tshark always remarks on: about the
    // machine, not the file.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Running as user \"root\""))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(warnings.is_empty(), "tshark warned: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}
