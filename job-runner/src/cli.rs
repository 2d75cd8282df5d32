// SPDX-License-Identifier: Apache-2.0
//! Command line.

use clap::{Parser, ValueEnum};
pub use podtrace::runner_args::Format;
use podtrace::runner_args::RunnerArgs;

const EXAMPLES: &str = "\
EXAMPLES:
  # Trace one pod until Ctrl-C
  podtrace-runner --pod-ip 10.244.1.5

  # Only its traffic with one peer on port 80, every packet, for 30 s
  podtrace-runner --pod-ip 10.244.1.5 --peer-ip 10.244.2.7 --port 80 --packets --duration 30s

  # Readable output on a node's shell
  sudo podtrace-runner --pod-ip 10.244.1.5 --format text

EXIT STATUS:
  0  stopped cleanly: SIGINT, SIGTERM, SIGHUP, --duration, or stdout closed
  1  any error, a bad flag or value included (one line on stderr)";

/// Traces what the kernel sees of pods on this node (connects, handshakes,
/// resets, retransmits, drops with reasons, packets at their host-side
/// interfaces) and writes one JSON object per line on stdout.
#[derive(Parser, Debug, Clone)]
#[command(name = "podtrace-runner", version, after_help = EXAMPLES)]
pub struct Cli {
    /// What the plugin asks for: the contract shared with `kubectl-podtrace`.
    #[command(flatten)]
    pub trace: RunnerArgs,

    /// How to attach to pod interfaces: tcx links (Linux 6.6+), legacy
    /// clsact filters, or whichever the kernel supports.
    #[arg(long, value_enum, default_value_t = TcMode::Auto)]
    pub tc_mode: TcMode,

    /// Kernel ring buffer size in MiB (power of two). Bigger absorbs longer
    /// bursts without `lost` events; it costs twice as much memory.
    #[arg(long, value_name = "MIB", default_value_t = 2, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,

    /// Print libbpf's log (and the verifier's, if it rejects a program) to stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Test hook: attach at most this many hooks (tracepoints first), then
    /// fail, to prove cleanup. (How many tracepoints attach depends on the
    /// kernel, so the failure does not wait for the count to be reached.)
    #[arg(long, hide = true, value_name = "N")]
    pub fail_after_hooks: Option<usize>,
}

/// The command line, or exit: 0 for `--help`/`--version`, 1 for a usage error.
pub fn parse() -> Cli {
    podtrace::runner_args::parse_or_exit()
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n.is_power_of_two() && n <= 1024 {
        Ok(n)
    } else {
        Err("must be a power of two from 1 to 1024".into())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    Auto,
    Tcx,
    Clsact,
}

impl From<TcMode> for podtrace::tracer::TcMode {
    fn from(m: TcMode) -> Self {
        match m {
            TcMode::Auto => podtrace::tracer::TcMode::Auto,
            TcMode::Tcx => podtrace::tracer::TcMode::Tcx,
            TcMode::Clsact => podtrace::tracer::TcMode::Clsact,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn repeatable_filters_parse() {
        let c = Cli::try_parse_from([
            "podtrace-runner",
            "--pod-ip",
            "10.0.0.1",
            "--pod-ip",
            "10.0.0.2",
            "--port",
            "80",
            "--format",
            "text",
        ])
        .unwrap();
        assert_eq!(c.trace.pod_ips.len(), 2);
        assert_eq!(c.trace.ports, vec![80]);
        assert_eq!(c.trace.format, Format::Text);
        assert!(Cli::try_parse_from(["podtrace-runner"]).is_err());
    }

    /// What the plugin writes into the Job is what this parser reads.
    #[test]
    fn the_plugins_args_parse_back_to_the_same_contract() {
        let sent = RunnerArgs {
            pod_ips: vec!["10.244.1.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            peer_ips: vec!["10.244.2.3".parse().unwrap()],
            ports: vec![80, 443],
            packets: true,
            snaplen: Some(0),
            duration: Some(std::time::Duration::from_millis(1500)),
            format: Format::Json,
            node_name: Some("-node-with-a-dash".into()),
        };
        let argv = std::iter::once("podtrace-runner".to_string()).chain(sent.to_args());
        let cli = Cli::try_parse_from(argv).unwrap();
        assert_eq!(cli.trace, sent);
        assert_eq!(cli.tc_mode, TcMode::Auto);
        assert_eq!(cli.ring_buffer_mib, 2);
    }

    #[test]
    fn bad_values_are_named() {
        let err = |args: &[&str]| {
            let argv = ["podtrace-runner", "--pod-ip", "10.0.0.1"]
                .iter()
                .chain(args);
            Cli::try_parse_from(argv).unwrap_err().to_string()
        };
        for (args, says) in [
            (
                &["--duration", "inf"][..],
                "invalid value 'inf' for '--duration <D>'",
            ),
            (&["--duration", "1e30"], "unknown unit \"e\""),
            (&["--duration", "-5s"], "durations cannot be negative"),
            (&["--port", "0"], "port 0 matches no traffic"),
        ] {
            let e = err(args);
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
