// SPDX-License-Identifier: Apache-2.0
//! `podtrace-runner`: the node half of kubectl-podtrace. Traces the given
//! pods with eBPF and writes JSON lines on stdout until stopped.

mod cli;
mod dns;
mod output;
mod run;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run::run(&cli, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podtrace-runner: {e:#}");
            ExitCode::FAILURE
        }
    }
}
