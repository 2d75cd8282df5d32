// SPDX-License-Identifier: Apache-2.0
//! The runner's command line: the one contract between the plugin, which
//! writes it into the trace Job ([`RunnerArgs::to_args`]), and
//! `podtrace-runner`, which parses it (clap, through `#[command(flatten)]`).
//! Also the value parsers both binaries share, so a duration or a port means
//! the same on the laptop and on the node.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// What the plugin tells one node's runner: which pods, which traffic, for
/// how long, in which format. Node-local knobs (attach mode, ring size,
/// test hooks) are the runner's own flags, not part of this contract.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RunnerArgs {
    /// IP of a pod on this node to trace (repeatable).
    #[arg(long = "pod-ip", value_name = "IP", required = true)]
    pub pod_ips: Vec<IpAddr>,

    /// Only trace traffic between the pods and these peers (repeatable).
    #[arg(long = "peer-ip", value_name = "IP")]
    pub peer_ips: Vec<IpAddr>,

    /// Only trace traffic from or to these ports (repeatable).
    #[arg(long = "port", value_name = "N", value_parser = parse_port)]
    pub ports: Vec<u16>,

    /// Write an event for every packet (headers only), not just SYN, FIN and RST.
    #[arg(long)]
    pub packets: bool,

    /// Copy the first N bytes of each reported and each dropped packet,
    /// from its Ethernet header on, into its event (`data`); 0: whole
    /// packets, up to 16384 bytes (default: no bytes; the kernel copies
    /// only port 53's, for the runner's `dns` events).
    #[arg(long, value_name = "N", value_parser = parse_snaplen)]
    pub snaplen: Option<u32>,

    /// Stop after this long, e.g. 30, 30s, 1m30s, 500ms (default: until
    /// SIGINT/SIGTERM).
    // Hyphen values reach the parser, so `-5s` is told it is negative
    // instead of being taken for an unknown flag.
    #[arg(long, value_name = "D", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// Output format: JSON lines for the plugin, or text for humans.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Node name written in every line (default: the host name).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

/// The runner's output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

impl RunnerArgs {
    /// The command line that [`RunnerArgs::from_args`] (and the runner)
    /// read back as `self`. Values are joined with `=` so that none is ever
    /// taken for a flag.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: String| args.push(format!("--{flag}={value}"));
        for ip in &self.pod_ips {
            push("pod-ip", ip.to_string());
        }
        for ip in &self.peer_ips {
            push("peer-ip", ip.to_string());
        }
        for port in &self.ports {
            push("port", port.to_string());
        }
        if let Some(d) = self.duration {
            push("duration", format_duration(d));
        }
        if let Some(value) = self.format.to_possible_value() {
            push("format", value.get_name().to_string());
        }
        if let Some(node) = &self.node_name {
            push("node-name", node.clone());
        }
        if let Some(n) = self.snaplen {
            push("snaplen", n.to_string());
        }
        if self.packets {
            args.push("--packets".into());
        }
        args
    }

    /// Reads the contract's flags alone (what a stand-in runner needs).
    pub fn from_args<I, T>(args: I) -> Result<RunnerArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        #[command(name = "podtrace-runner")]
        struct Only {
            #[command(flatten)]
            args: RunnerArgs,
        }
        let argv = std::iter::once(std::ffi::OsString::from("podtrace-runner"))
            .chain(args.into_iter().map(Into::into));
        Only::try_parse_from(argv).map(|o| o.args)
    }
}

/// The most bytes of a packet its event can carry: `PT_MAX_SNAPLEN` in
/// bpf/podtrace.h (the loader checks at compile time that they agree);
/// `--snaplen 0` means this many.
pub const MAX_SNAPLEN: u32 = 16384;

/// The plugin's `--snaplen` default (`--write` without it): Ethernet (14) + the largest IPv4 header (60) + the
/// largest TCP header (60) + DNS over TCP's length prefix (2) + a DNS
/// message at its classic 512-byte limit: every header of any packet, and
/// whole DNS messages, at a fraction of a full 1514-byte frame.
pub const DEFAULT_SNAPLEN: u32 = 14 + 60 + 60 + 2 + 512;

/// The bytes a `--snaplen` value keeps of each packet (0: the most).
pub fn snap_bytes(snaplen: u32) -> u32 {
    if snaplen == 0 {
        MAX_SNAPLEN
    } else {
        snaplen.min(MAX_SNAPLEN)
    }
}

/// Parses a snap length: bytes from 0 (whole packets, up to
/// [`MAX_SNAPLEN`]) to [`MAX_SNAPLEN`].
pub fn parse_snaplen(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= MAX_SNAPLEN => Ok(n),
        _ => Err(format!(
            "{s:?} is not a snap length: use a number of bytes from 1 to {MAX_SNAPLEN}, \
             or 0 for whole packets (up to {MAX_SNAPLEN} bytes)"
        )),
    }
}

/// Parses the command line like kubectl treats its own: help and version
/// exit 0, any usage error prints clap's message and exits 1.
pub fn parse_or_exit<P: Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| {
        // Printing can only fail on a closed stream; the exit code still tells.
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 })
    })
}

/// The longest duration accepted: what a signed 64-bit count of nanoseconds
/// holds (Go's, hence kubectl's, limit too), about 292 years. Deadlines
/// computed from it fit every clock and `activeDeadlineSeconds`.
pub const MAX_DURATION: Duration = Duration::new(
    i64::MAX as u64 / 1_000_000_000,
    (i64::MAX as u64 % 1_000_000_000) as u32,
);

const DURATION_HINT: &str = "expected e.g. 30s, 5m, 1h30m, 500ms";

/// Parses a positive duration: a number of seconds (`90`, `1.5`), or numbers
/// with units `ns`, `us`, `ms`, `s`, `m`, `h`, as in Go and kubectl
/// (`1h30m`, `2.5s`, `500ms`). Rejects zero, negatives and anything longer
/// than [`MAX_DURATION`], each with a one-line reason.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // clap names the flag and the value; the error says what is wrong with it.
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("it is empty ({DURATION_HINT})"));
    }
    if text.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let too_long = || "too long: the most is 2562047h (about 292 years)".to_string();
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            // A bare number is seconds, alone only: `1h30` is a typo.
            "" if number_len == text.len() => 1_000_000_000,
            "" => return Err(format!("a number lacks its unit ({DURATION_HINT})")),
            _ if number.is_empty() => return Err(DURATION_HINT.into()),
            _ => return Err(format!("unknown unit {unit:?} (use ns, us, ms, s, m or h)")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(format!("{number:?} is not a number ({DURATION_HINT})"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        // Digits past the 18th are below a nanosecond even in hours.
        let digits = &fraction[..fraction.len().min(18)];
        let fraction_ns = if digits.is_empty() {
            0
        } else {
            let value: u128 = digits.parse().map_err(|_| DURATION_HINT.to_string())?;
            value * unit_ns / 10u128.pow(digits.len() as u32)
        };
        total = whole
            .checked_mul(unit_ns)
            .and_then(|ns| ns.checked_add(fraction_ns))
            .and_then(|ns| ns.checked_add(total))
            .filter(|ns| *ns <= MAX_DURATION.as_nanos())
            .ok_or_else(too_long)?;
        rest = after;
    }
    if total == 0 {
        return Err("must be more than zero".into());
    }
    // At most MAX_DURATION's nanoseconds, which fit in a u64.
    Ok(Duration::from_nanos(total as u64))
}

/// Writes a duration the way [`parse_duration`] reads it back exactly,
/// in the coarsest unit that loses nothing: `30s`, `1500ms`, `7ns`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Parses a port to filter on: 1 to 65535 (port 0 matches no traffic).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) => Err("port 0 matches no traffic: use a port from 1 to 65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("{s:?} is not a port: use a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_in_every_unit() {
        let ok = |s| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("90"), Duration::from_secs(90));
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("3us"), Duration::from_micros(3));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok(" 2m "), Duration::from_secs(120));
        assert_eq!(ok(&format_duration(MAX_DURATION)), MAX_DURATION);
    }

    #[test]
    fn durations_it_cannot_represent_are_one_line_errors() {
        let err = |s: &str| parse_duration(s).expect_err(s);
        assert_eq!(
            err("99999999999999999h"),
            "too long: the most is 2562047h (about 292 years)"
        );
        assert!(err("18446744073709551615s1s").contains("too long"));
        assert!(err("9223372037s").contains("too long"));
        assert!(err("1e30").contains("unknown unit \"e\""));
        assert!(err("inf").contains(DURATION_HINT));
        assert!(err("NaN").contains(DURATION_HINT));
        assert!(err("-5s").ends_with("durations cannot be negative"));
        assert!(err("0s").ends_with("must be more than zero"));
        assert!(err("").contains("it is empty"));
        assert!(err("1h30").contains("lacks its unit"));
        assert!(err("1..5s").contains("is not a number"));
        assert!(err(".s").contains("is not a number"));
        assert!(err("3d").contains("unknown unit \"d\""));
        for s in ["1e30", "-5s", "99999999999999999h", ""] {
            assert!(!err(s).contains('\n'), "{s}");
        }
    }

    #[test]
    fn ports_exclude_zero() {
        assert_eq!(parse_port("80"), Ok(80));
        assert!(parse_port("0")
            .unwrap_err()
            .contains("port 0 matches no traffic"));
        assert!(parse_port("70000").unwrap_err().contains("not a port"));
    }

    #[test]
    fn flags_reach_the_parsers_with_clear_errors() {
        let err = |args: &[&str]| RunnerArgs::from_args(args).unwrap_err().to_string();
        let e = err(&["--pod-ip", "10.0.0.1", "--duration", "-5s"]);
        assert!(e.contains("durations cannot be negative"), "{e}");
        let e = err(&["--pod-ip", "10.0.0.1", "--port", "0"]);
        assert!(e.contains("port 0 matches no traffic"), "{e}");
        let e = err(&["--pod-ip", "10.0.0.1", "--snaplen", "16385"]);
        assert!(e.contains("from 1 to 16384, or 0 for whole packets"), "{e}");
        let e = err(&["--pod-ip", "10.0.0.1", "--snaplen=-1"]);
        assert!(e.contains("is not a snap length"), "{e}");
    }

    fn contract() -> impl Strategy<Value = RunnerArgs> {
        let ip = prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(IpAddr::from),
            any::<std::net::Ipv6Addr>().prop_map(IpAddr::from),
        ];
        (
            prop::collection::vec(ip.clone(), 1..4),
            prop::collection::vec(ip, 0..3),
            prop::collection::vec(1..=u16::MAX, 0..3),
            (any::<bool>(), prop::option::of(0..=MAX_SNAPLEN)),
            prop::option::of((1..=MAX_DURATION.as_nanos() as u64).prop_map(Duration::from_nanos)),
            prop_oneof![Just(Format::Json), Just(Format::Text)],
            // Any text, even one starting with `-`: `=` keeps it a value.
            "[^\u{0}]{0,20}",
        )
            .prop_map(
                |(pod_ips, peer_ips, ports, (packets, snaplen), duration, format, node)| {
                    RunnerArgs {
                        pod_ips,
                        peer_ips,
                        ports,
                        packets,
                        snaplen,
                        duration,
                        format,
                        node_name: Some(node),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_contract_round_trips(args in contract()) {
            prop_assert_eq!(RunnerArgs::from_args(args.to_args()).unwrap(), args);
        }

        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn duration_parser_never_panics_on_duration_like_text(s in "[-+0-9.]{0,25}(ns|us|ms|s|m|h|e|)[0-9.]{0,25}[a-z]{0,2}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(nanos in 1..=MAX_DURATION.as_nanos() as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
