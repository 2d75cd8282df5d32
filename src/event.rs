// SPDX-License-Identifier: Apache-2.0
//! The wire schema between `podtrace-runner` and `kubectl-podtrace`.
//!
//! The runner writes one JSON object per line on stdout; the plugin reads them
//! from the pod log. This module is the only definition of those lines: both
//! sides serialize and parse through these types. The full field reference is
//! `docs/schema.md`; the version is [`SCHEMA`] and is bumped on any change
//! that an older reader would misread.
//!
//! Every line has a `type`. Control lines are `hello`, `ready`, `lost`,
//! `warning` and `summary`; everything else is an [`Event`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Version of this schema, carried in the `hello` line.
pub const SCHEMA: u32 = 1;

/// Transport protocol of a flow.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Which way a packet crossed a pod's host-side interface, from the pod's
/// point of view: `egress` left the pod, `ingress` entered it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// Whether a reset was sent or received by the traced pod's socket.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ResetDirection {
    Sent,
    Received,
}

/// First line of a runner's output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Hello {
    /// The runner's crate version.
    pub version: String,
    /// [`SCHEMA`] of the runner that wrote this stream.
    pub schema: u32,
    pub node: String,
    /// `uname -r` of the node.
    pub kernel: String,
    pub time: String,
}

/// One hook the runner attached.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Hook {
    /// e.g. `tracepoint/sock/inet_sock_set_state`, `tcx/ingress`, `tc/egress`.
    pub kind: String,
    /// Interface name for tc/tcx hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
}

/// A pod's host-side interface as the runner found it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    /// The pod IP that routes to it.
    pub pod_ip: IpAddr,
    /// `veth` (routed CNI) or `bridge-port` (bridged CNI).
    pub kind: String,
}

/// Written once every hook is attached: events start after this line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Ready {
    pub node: String,
    pub time: String,
    pub hooks: Vec<Hook>,
    pub interfaces: Vec<Interface>,
    /// Pod IPs local to this node that are traced.
    pub pod_ips: Vec<IpAddr>,
    /// Peers the trace is limited to (empty: any peer).
    #[serde(default)]
    pub peer_ips: Vec<IpAddr>,
    /// Ports the trace is limited to (empty: any port).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Milliseconds from process start to this line.
    #[serde(default)]
    pub startup_ms: f64,
}

/// Events the kernel could not hand over since the last `lost` line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Lost {
    pub node: String,
    pub time: String,
    /// Events lost since the previous `lost` line.
    pub count: u64,
    /// Events lost since start.
    #[serde(default)]
    pub total: u64,
}

/// A diagnostic worth showing to the user next to the events (the runner's
/// stderr holds the rest).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Warning {
    pub node: String,
    pub time: String,
    pub message: String,
}

/// Round-trip time statistics over a flow's connections, in microseconds.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Rtt {
    pub min_us: u64,
    pub avg_us: u64,
    pub max_us: u64,
    /// Number of samples.
    pub count: u64,
}

impl Rtt {
    /// Adds one sample.
    pub fn add(&mut self, us: u64) {
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.avg_us = (self.avg_us * self.count + us) / (self.count + 1);
        self.count += 1;
    }

    /// Folds another set of samples into this one.
    pub fn merge(&mut self, other: &Rtt) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        let n = self.count + other.count;
        self.avg_us = (self.avg_us * self.count + other.avg_us * other.count) / n;
        self.count = n;
    }
}

/// Totals for one flow: all connections from a client IP to a server
/// `IP:PORT` (TCP), or all datagrams between two endpoints (UDP).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct FlowSummary {
    pub proto: Option<Proto>,
    /// The side that opened the flow (client IP; for UDP the first sender).
    pub src: Option<IpAddr>,
    /// The side that accepted it, with its port.
    pub dst: Option<SocketAddr>,
    /// Name (`ns/name`) of `src`, added by the plugin when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// Name (`ns/name`) of `dst`, added by the plugin when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    /// Connections opened (TCP) or 5-tuples seen (UDP).
    pub connections: u64,
    /// Opens that failed (refused, timed out).
    pub failed: u64,
    /// Packets and bytes from `src` to `dst`, counted at the pods' host-side
    /// interfaces.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets and bytes from `dst` back to `src`.
    pub packets_received: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    pub resets: u64,
    pub drops: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Rtt>,
}

/// Last line of a runner's output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    pub node: String,
    pub time: String,
    pub flows: Vec<FlowSummary>,
    /// Events lost over the whole run (also reported in `lost` lines).
    pub lost: u64,
    /// Events written over the whole run.
    pub events: u64,
    /// Seconds the trace ran.
    pub duration_s: f64,
}

/// What happened, with the fields particular to it. Serialized flat into the
/// [`Event`] line, under the `type` key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Active open: a process in a traced pod called `connect()`.
    Connect,
    /// Passive open: a traced pod's listener accepted a connection.
    Accept,
    /// Handshake completed.
    Established {
        /// Handshake round-trip time (SYN to SYN-ACK, or SYN-ACK to ACK on
        /// the accepting side).
        rtt_us: u64,
    },
    /// Connection closed.
    Close {
        duration_ms: f64,
        /// Bytes sent by the side the event was seen in.
        bytes_sent: u64,
        /// Bytes received by the side the event was seen in.
        bytes_received: u64,
    },
    /// An open that never got established.
    Failed {
        /// errno name, e.g. `ECONNREFUSED`, `ETIMEDOUT`.
        error: String,
    },
    /// A TCP reset.
    Reset { direction: ResetDirection },
    /// A TCP segment retransmitted.
    Retransmit {
        /// TCP state of the socket, e.g. `SYN_SENT`, `ESTABLISHED`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
    /// The kernel freed a packet as dropped.
    Drop {
        /// `enum skb_drop_reason` name without its prefix, from the running
        /// kernel's BTF, e.g. `NETFILTER_DROP`, `NO_SOCKET`.
        reason: String,
        /// Interface the packet was on, where known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iface: Option<String>,
    },
    /// A packet at a pod's host-side interface.
    Packet {
        iface: String,
        direction: Direction,
        /// TCP flags, e.g. `SYN`, `SYN|ACK`, `FIN|ACK`; empty for UDP.
        flags: String,
        /// Length on the wire (IP header included).
        len: u32,
        /// First packet of a flow the kernel had not seen before (UDP flows
        /// are reported this way without `--packets`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        first: bool,
    },
}

impl EventKind {
    /// The `type` string of this kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Accept => "accept",
            EventKind::Established { .. } => "established",
            EventKind::Close { .. } => "close",
            EventKind::Failed { .. } => "failed",
            EventKind::Reset { .. } => "reset",
            EventKind::Retransmit { .. } => "retransmit",
            EventKind::Drop { .. } => "drop",
            EventKind::Packet { .. } => "packet",
        }
    }

    /// Connection events orient `src`/`dst` as opener → acceptor; packets and
    /// drops carry the packet's own direction.
    pub fn is_connection_event(&self) -> bool {
        !matches!(self, EventKind::Drop { .. } | EventKind::Packet { .. })
    }
}

/// One thing the kernel saw.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Event {
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub node: String,
    pub proto: Proto,
    /// For connection events the opener; for packets and drops the packet's
    /// source.
    pub src: SocketAddr,
    /// For connection events the acceptor; for packets and drops the
    /// packet's destination.
    pub dst: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// `ns/name` of `src`, added by the plugin when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// `ns/name` of `dst`, added by the plugin when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Any line of the stream.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Message {
    Hello(TypeTagged<Hello>),
    Ready(TypeTagged<Ready>),
    Lost(TypeTagged<Lost>),
    Warning(TypeTagged<Warning>),
    Summary(TypeTagged<Summary>),
    Event(Event),
}

/// A control record serialized with its `type` key first.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TypeTagged<T> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(flatten)]
    pub body: T,
}

/// Why a line could not be read as part of the stream.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("JSON object without a string \"type\" field")]
    NoType,
    #[error("bad {ty:?} line: {source}")]
    Invalid {
        ty: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Message {
    pub fn hello(body: Hello) -> Self {
        Message::Hello(TypeTagged { ty: "hello", body })
    }
    pub fn ready(body: Ready) -> Self {
        Message::Ready(TypeTagged { ty: "ready", body })
    }
    pub fn lost(body: Lost) -> Self {
        Message::Lost(TypeTagged { ty: "lost", body })
    }
    pub fn warning(body: Warning) -> Self {
        Message::Warning(TypeTagged {
            ty: "warning",
            body,
        })
    }
    pub fn summary(body: Summary) -> Self {
        Message::Summary(TypeTagged {
            ty: "summary",
            body,
        })
    }

    /// The `type` of this line.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Hello(t) => t.ty,
            Message::Ready(t) => t.ty,
            Message::Lost(t) => t.ty,
            Message::Warning(t) => t.ty,
            Message::Summary(t) => t.ty,
            Message::Event(e) => e.kind.name(),
        }
    }

    /// Parses one line of runner output.
    pub fn parse(line: &str) -> Result<Message, ParseError> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(ParseError::NotJson)?;
        Self::from_value(value)
    }

    /// Reads an already-parsed JSON object as a line of the stream.
    pub fn from_value(value: serde_json::Value) -> Result<Message, ParseError> {
        let ty = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or(ParseError::NoType)?
            .to_owned();
        let invalid = |source| ParseError::Invalid {
            ty: ty.clone(),
            source,
        };
        Ok(match ty.as_str() {
            "hello" => Message::hello(serde_json::from_value(value).map_err(invalid)?),
            "ready" => Message::ready(serde_json::from_value(value).map_err(invalid)?),
            "lost" => Message::lost(serde_json::from_value(value).map_err(invalid)?),
            "warning" => Message::warning(serde_json::from_value(value).map_err(invalid)?),
            "summary" => Message::summary(serde_json::from_value(value).map_err(invalid)?),
            _ => Message::Event(serde_json::from_value(value).map_err(invalid)?),
        })
    }

    /// Serializes as one JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys,
        // no custom serializers that error.
        serde_json::to_string(self).expect("wire types always serialize")
    }
}

/// Formats a wall-clock time given as nanoseconds since the Unix epoch as
/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-25T14:37:18.123456789Z`.
pub fn rfc3339_nanos(unix_ns: u128) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    let nanos = (unix_ns % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The current wall-clock time as [`rfc3339_nanos`].
pub fn now_rfc3339() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    rfc3339_nanos(ns)
}

// Howard Hinnant's days-to-civil algorithm: avoids a date crate in the core.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event(kind: EventKind) -> Event {
        Event {
            time: rfc3339_nanos(1_764_081_438_123_456_789),
            node: "node-1".into(),
            proto: Proto::Tcp,
            src: "10.244.1.2:43210".parse().unwrap(),
            dst: "10.244.2.3:80".parse().unwrap(),
            pid: Some(42),
            comm: Some("curl".into()),
            src_name: None,
            dst_name: None,
            kind,
        }
    }

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339_nanos(1_764_081_438_123_456_789),
            "2025-11-25T14:37:18.123456789Z"
        );
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn event_line_is_flat_with_type_and_addresses() {
        let line = Message::Event(sample_event(EventKind::Established { rtt_us: 57 })).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "established");
        assert_eq!(v["src"], "10.244.1.2:43210");
        assert_eq!(v["dst"], "10.244.2.3:80");
        assert_eq!(v["rtt_us"], 57);
        assert_eq!(v["proto"], "tcp");
        assert!(v.get("src_name").is_none());
    }

    #[test]
    fn every_line_round_trips() {
        let kinds = vec![
            EventKind::Connect,
            EventKind::Accept,
            EventKind::Established { rtt_us: 1 },
            EventKind::Close {
                duration_ms: 1.5,
                bytes_sent: 73,
                bytes_received: 853,
            },
            EventKind::Failed {
                error: "ECONNREFUSED".into(),
            },
            EventKind::Reset {
                direction: ResetDirection::Received,
            },
            EventKind::Retransmit {
                state: Some("SYN_SENT".into()),
            },
            EventKind::Drop {
                reason: "NETFILTER_DROP".into(),
                iface: None,
            },
            EventKind::Packet {
                iface: "cali1".into(),
                direction: Direction::Egress,
                flags: "SYN".into(),
                len: 60,
                first: true,
            },
        ];
        let mut msgs: Vec<Message> = kinds
            .into_iter()
            .map(|k| Message::Event(sample_event(k)))
            .collect();
        msgs.push(Message::hello(Hello {
            version: "0.1.0".into(),
            schema: SCHEMA,
            node: "n".into(),
            kernel: "6.18".into(),
            time: now_rfc3339(),
        }));
        msgs.push(Message::lost(Lost {
            node: "n".into(),
            time: now_rfc3339(),
            count: 3,
            total: 3,
        }));
        msgs.push(Message::summary(Summary {
            node: "n".into(),
            time: now_rfc3339(),
            flows: vec![FlowSummary {
                proto: Some(Proto::Udp),
                dst: Some("10.0.0.10:53".parse().unwrap()),
                rtt: Some(Rtt::default()),
                ..Default::default()
            }],
            lost: 3,
            events: 10,
            duration_s: 1.0,
        }));
        for m in msgs {
            let line = m.to_line();
            let back = Message::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, m, "{line}");
            assert_eq!(back.type_name(), m.type_name());
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(matches!(
            Message::parse("hello world"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(Message::parse("{}"), Err(ParseError::NoType)));
        let err = Message::parse(r#"{"type":"connect","src":"nope"}"#).unwrap_err();
        assert!(err.to_string().starts_with("bad \"connect\" line"), "{err}");
    }

    #[test]
    fn rtt_merges_samples() {
        let mut a = Rtt::default();
        a.add(10);
        a.add(30);
        let mut b = Rtt::default();
        b.add(5);
        a.merge(&b);
        assert_eq!((a.min_us, a.max_us, a.count), (5, 30, 3));
        assert_eq!(a.avg_us, 15);
    }
}
