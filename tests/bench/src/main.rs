// SPDX-License-Identifier: Apache-2.0
//! `podtrace-bench`: the benchmark suite's command line.

use anyhow::Result;
use clap::Parser as _;
use podtrace_bench::cli::{Cli, Command};
use podtrace_bench::{loadgen, suite};

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Loadgen(spec)) => {
            let outcome = loadgen::run(&spec)?;
            println!("{}", serde_json::to_string(&outcome)?);
        }
        None => {
            let results = suite::run(&cli.run.settings())?;
            let misses = podtrace_bench::report::checks(&results)
                .into_iter()
                .filter(|c| c.verdict == podtrace_bench::report::Verdict::Miss)
                .count();
            eprintln!(
                "bench: done in {:.0} s, {misses} target(s) missed",
                results.duration_s
            );
        }
    }
    Ok(())
}
