// SPDX-License-Identifier: Apache-2.0
//! `podtrace-sandbox`: see the library's docs.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = podtrace_sandbox::cli::run(podtrace_sandbox::cli::Cli::parse()).await?;
    std::process::exit(code);
}
