// SPDX-License-Identifier: Apache-2.0
//! Command line of `podtrace-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::loadgen;
use crate::wrk::Workload;

/// Measures what tracing a pod costs: podtrace-runner side by side with
/// bpftrace and tcpdump, on network-namespace pods with nginx and wrk.
/// Needs root. Writes the results table to docs/benchmarks.md.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "EXAMPLES:\n  sudo scripts/bench.sh                      # build, then the full run (≈10 min)\n  \
                  sudo scripts/bench.sh --quick              # seconds-long smoke run\n  \
                  podtrace-bench --rounds 9 --seconds 10     # more, longer rounds\n  \
                  podtrace-bench --only overhead --workload new-conn --no-baselines\n  \
                  \x20                                          # one question, answered quickly\n  \
                  podtrace-bench --runner ./podtrace-runner  # a runner built elsewhere\n  \
                  podtrace-bench --before-runner OLD --only overhead --no-baselines\n  \
                  \x20                                          # a change's before/after, same rounds"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fixed-rate HTTP load generator (the suite runs it inside the client pod).
    #[command(hide = true)]
    Loadgen(loadgen::Spec),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Smoke run of a few seconds: one short round, few starts, one rate
    /// step. Proves the machinery works; its figures mean little.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of the overhead comparison (default 7; 1 with --quick).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Seconds of load per arm and workload (default 5; 2 with --quick).
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Starts per tracer for the ready-time median (default 15; 3 with --quick).
    #[arg(long)]
    pub starts: Option<u32>,
    /// The podtrace-runner binary [default: podtrace-runner next to this binary].
    #[arg(long)]
    pub runner: Option<PathBuf>,
    /// Another podtrace-runner (e.g. built from an earlier commit), measured
    /// with its default event set beside this one: a before/after of a
    /// change in the same rounds.
    #[arg(long, value_name = "PATH")]
    pub before_runner: Option<PathBuf>,
    /// The kubectl-podtrace binary [default: kubectl-podtrace next to this binary].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Where to write the results page [default: docs/benchmarks.md of this
    /// repository for a full run; nowhere for --quick].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Leave out bpftrace and tcpdump (only untraced and the runner).
    #[arg(long)]
    pub no_baselines: bool,
    /// Only these workloads in the overhead and profile parts (repeatable;
    /// default: both).
    #[arg(long, value_enum)]
    pub workload: Vec<Workload>,
    /// Only these parts of the suite (repeatable; default: all). A partial
    /// run prints its page instead of replacing docs/benchmarks.md.
    #[arg(long, value_enum)]
    pub only: Vec<Part>,
}

/// The parts of the suite, in the order they run.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// What each tracer costs the traced pod (req/s, latency, memory).
    Overhead,
    /// Spawn to ready line, many starts.
    Ready,
    /// Highest event rate with nothing lost.
    Loss,
    /// Kernel time per BPF program next to the runner's CPU.
    Profile,
    /// The plugin's start-up time and the binary sizes.
    Cli,
}

impl Settings {
    pub fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Settings after defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub rounds: u32,
    pub seconds: u32,
    pub starts: u32,
    pub runner: PathBuf,
    pub before_runner: Option<PathBuf>,
    pub plugin: PathBuf,
    pub output: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub baselines: bool,
    pub workloads: Vec<Workload>,
    pub parts: Vec<Part>,
    /// New-connection rates to step through, per second.
    pub conn_rates: Vec<u32>,
    /// Keep-alive request rates for the `--packets` step, per second.
    pub request_rates: Vec<u32>,
    /// Seconds per rate step.
    pub step_seconds: f64,
}

impl RunArgs {
    pub fn settings(&self) -> Settings {
        let sibling = |name: &str| {
            std::env::current_exe()
                .ok()
                .and_then(|p| Some(p.parent()?.join(name)))
                .unwrap_or_else(|| PathBuf::from(name))
        };
        let q = self.quick;
        let partial = !self.only.is_empty() || !self.workload.is_empty();
        Settings {
            quick: q,
            rounds: self.rounds.unwrap_or(if q { 1 } else { 7 }).max(1),
            seconds: self.seconds.unwrap_or(if q { 2 } else { 5 }).max(1),
            starts: self.starts.unwrap_or(if q { 3 } else { 15 }).max(1),
            runner: self
                .runner
                .clone()
                .unwrap_or_else(|| sibling("podtrace-runner")),
            before_runner: self.before_runner.clone(),
            plugin: self
                .plugin
                .clone()
                .unwrap_or_else(|| sibling("kubectl-podtrace")),
            output: self.output.clone().or_else(|| {
                (!q && !partial).then(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md")
                })
            }),
            json: self.json.clone(),
            baselines: !self.no_baselines,
            workloads: if self.workload.is_empty() {
                Workload::ALL.to_vec()
            } else {
                Workload::ALL
                    .into_iter()
                    .filter(|w| self.workload.contains(w))
                    .collect()
            },
            parts: if self.only.is_empty() {
                Part::value_variants().to_vec()
            } else {
                self.only.clone()
            },
            conn_rates: if q {
                vec![1000]
            } else {
                vec![2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000]
            },
            request_rates: if q {
                vec![2000]
            } else {
                vec![5_000, 10_000, 20_000, 30_000, 40_000]
            },
            step_seconds: if q { 1.0 } else { 3.0 },
        }
    }
}
