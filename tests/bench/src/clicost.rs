// SPDX-License-Identifier: Apache-2.0
//! What the plugin costs the person typing it: `--version` and `--help` wall
//! time next to `/bin/true` (hyperfine), and the binaries' sizes.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

#[derive(Serialize, Debug, Clone)]
pub struct Timing {
    pub command: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct CliCost {
    pub timings: Vec<Timing>,
    pub plugin_bytes: Option<u64>,
    pub runner_bytes: Option<u64>,
    /// Why a figure is missing.
    pub notes: Vec<String>,
}

pub fn measure(plugin: &Path, runner: &Path, runs: u32) -> CliCost {
    let mut c = CliCost {
        plugin_bytes: size(plugin),
        runner_bytes: size(runner),
        ..CliCost::default()
    };
    if c.runner_bytes.is_none() {
        c.notes
            .push(format!("runner not built ({} missing)", runner.display()));
    }
    if c.plugin_bytes.is_none() {
        c.notes.push(format!(
            "plugin not built ({} missing): no --version/--help timing",
            plugin.display()
        ));
        return c;
    }
    // A plugin that cannot answer --version yet is reported, not timed.
    for arg in ["--version", "--help"] {
        match Command::new(plugin).arg(arg).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => c.notes.push(format!(
                "`kubectl-podtrace {arg}` exits with {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => c.notes.push(format!("cannot run the plugin: {e}")),
        }
    }
    if !c.notes.is_empty() {
        return c;
    }
    let p = plugin.display().to_string();
    match hyperfine(
        &[
            "/bin/true".to_owned(),
            format!("{p} --version"),
            format!("{p} --help"),
        ],
        runs,
    ) {
        Ok(t) => c.timings = t,
        Err(e) => c.notes.push(format!("hyperfine: {e:#}")),
    }
    c
}

fn size(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Runs hyperfine without a shell (`-N`), so the figures are the programs'
/// own start-up, not sh's.
fn hyperfine(commands: &[String], runs: u32) -> Result<Vec<Timing>> {
    let json = tempfile::NamedTempFile::new()?;
    let out = Command::new("hyperfine")
        .args([
            "-N",
            "--warmup",
            "3",
            "--runs",
            &runs.to_string(),
            "--export-json",
        ])
        .arg(json.path())
        .args(commands)
        .output()
        .context("run hyperfine (Debian package hyperfine)")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path())?)?;
    let ms = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN) * 1e3;
    Ok(v["results"]
        .as_array()
        .context("no results in hyperfine's JSON")?
        .iter()
        .map(|r| Timing {
            command: r["command"].as_str().unwrap_or_default().to_owned(),
            median_ms: ms(r, "median"),
            min_ms: ms(r, "min"),
            max_ms: ms(r, "max"),
        })
        .collect())
}
