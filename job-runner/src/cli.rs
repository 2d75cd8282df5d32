// SPDX-License-Identifier: Apache-2.0
//! Command line.

use std::net::IpAddr;

use clap::{Parser, ValueEnum};

const EXAMPLES: &str = "\
EXAMPLES:
  # Trace one pod until Ctrl-C
  podtrace-runner --pod-ip 10.244.1.5

  # Only its traffic with one peer on port 80, every packet, for 30 s
  podtrace-runner --pod-ip 10.244.1.5 --peer-ip 10.244.2.7 --port 80 --packets --duration 30

  # Readable output on a node's shell
  sudo podtrace-runner --pod-ip 10.244.1.5 --format text";

/// Traces what the kernel sees of pods on this node (connects, handshakes,
/// resets, retransmits, drops with reasons, packets at their host-side
/// interfaces) and writes one JSON object per line on stdout.
#[derive(Parser, Debug, Clone)]
#[command(name = "podtrace-runner", version, after_help = EXAMPLES)]
pub struct Cli {
    /// IP of a pod on this node to trace (repeatable).
    #[arg(long = "pod-ip", value_name = "IP", required = true)]
    pub pod_ips: Vec<IpAddr>,

    /// Only trace traffic between the pods and these peers (repeatable).
    #[arg(long = "peer-ip", value_name = "IP")]
    pub peer_ips: Vec<IpAddr>,

    /// Only trace traffic from or to these ports (repeatable).
    #[arg(long = "port", value_name = "N")]
    pub ports: Vec<u16>,

    /// Write an event for every packet (headers only), not just SYN, FIN and RST.
    #[arg(long)]
    pub packets: bool,

    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Output format: JSON lines for the plugin, or text for humans.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Node name written in every line (default: the host name).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

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

    /// Test hook: fail after attaching this many hooks, to prove cleanup.
    #[arg(long, hide = true, value_name = "N")]
    pub fail_after_hooks: Option<usize>,
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
pub enum Format {
    Json,
    Text,
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
        assert_eq!(c.pod_ips.len(), 2);
        assert_eq!(c.ports, vec![80]);
        assert_eq!(c.format, Format::Text);
        assert!(Cli::try_parse_from(["podtrace-runner"]).is_err());
    }
}
