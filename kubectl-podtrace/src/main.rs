// SPDX-License-Identifier: Apache-2.0
//! `kubectl podtrace`: see `kubectl podtrace --help`.

use std::process::ExitCode;

use anyhow::Context as _;
use kubectl_podtrace::cli::Cli;

fn main() -> ExitCode {
    // Usage errors exit 1, as kubectl's do (clap's own convention is 2).
    let cli: Cli = podtrace::runner_args::parse_or_exit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(kubectl_podtrace::run(cli))
                .map_err(anyhow::Error::from)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
