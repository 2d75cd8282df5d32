// SPDX-License-Identifier: Apache-2.0
//! `podtrace-sandbox`: see the library's docs.

use clap::Parser as _;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match podtrace_sandbox::cli::run(podtrace_sandbox::cli::Cli::parse()).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One line: each cause once (library errors already name theirs).
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg = format!("{msg}: {c}");
                }
            }
            eprintln!("podtrace-sandbox: {msg}");
            std::process::exit(1);
        }
    }
}
