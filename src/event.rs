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

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

impl Direction {
    /// The wire name (serde's too).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Whether a reset was sent or received by the traced pod's socket.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ResetDirection {
    Sent,
    Received,
}

impl ResetDirection {
    /// The wire name (serde's too).
    pub fn as_str(self) -> &'static str {
        match self {
            ResetDirection::Sent => "sent",
            ResetDirection::Received => "received",
        }
    }
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
    /// Of `count`: runs of our kernel hooks the kernel skipped because the
    /// same hook was already running on that CPU (an interrupt inside it).
    /// Each may or may not have been an event, so `count` is an upper bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// Appends this line's JSON (no newline) to `out`. Events take the fast
    /// path ([`Event::write_json`]); control lines, a handful per run, go
    /// through serde.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Message::Event(e) => e.write_json(out),
            // Serializing these types cannot fail: no maps with non-string
            // keys, no custom serializers that error.
            m => serde_json::to_writer(out, m).expect("wire types always serialize"),
        }
    }
}

/// `,"key":` as one constant: a key costs one fixed-size copy.
macro_rules! key {
    ($k:literal) => {
        concat!(",\"", $k, "\":").as_bytes()
    };
}

impl Event {
    /// Appends the event's JSON object (no newline) to `out`: byte for byte
    /// what the derived `Serialize` writes (a test holds them together), at
    /// a fraction of the cost. The runner writes one per event, ~100,000 a
    /// second under load, on the traced pods' own CPUs; serde's `flatten`
    /// goes through a map serializer and `Display` for every address.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Room for a typical line up front: the pushes below then never
        // reallocate mid-line.
        out.reserve(512);
        let mut j = JsonObject { out };
        j.str(b"{\"time\":", &self.time);
        j.str(key!("node"), &self.node);
        j.raw_str(key!("proto"), self.proto.as_str());
        j.addr(key!("src"), &self.src);
        j.addr(key!("dst"), &self.dst);
        if let Some(pid) = self.pid {
            j.int(key!("pid"), pid);
        }
        if let Some(c) = &self.comm {
            j.str(key!("comm"), c);
        }
        if let Some(n) = &self.src_name {
            j.str(key!("src_name"), n);
        }
        if let Some(n) = &self.dst_name {
            j.str(key!("dst_name"), n);
        }
        j.raw_str(key!("type"), self.kind.name());
        match &self.kind {
            EventKind::Connect | EventKind::Accept => {}
            EventKind::Established { rtt_us } => j.int(key!("rtt_us"), *rtt_us),
            EventKind::Close {
                duration_ms,
                bytes_sent,
                bytes_received,
            } => {
                j.float(key!("duration_ms"), *duration_ms);
                j.int(key!("bytes_sent"), *bytes_sent);
                j.int(key!("bytes_received"), *bytes_received);
            }
            EventKind::Failed { error } => j.str(key!("error"), error),
            EventKind::Reset { direction } => j.raw_str(key!("direction"), direction.as_str()),
            EventKind::Retransmit { state } => {
                if let Some(st) = state {
                    j.str(key!("state"), st);
                }
            }
            EventKind::Drop { reason, iface } => {
                j.str(key!("reason"), reason);
                if let Some(i) = iface {
                    j.str(key!("iface"), i);
                }
            }
            EventKind::Packet {
                iface,
                direction,
                flags,
                len,
                first,
            } => {
                j.str(key!("iface"), iface);
                j.raw_str(key!("direction"), direction.as_str());
                j.str(key!("flags"), flags);
                j.int(key!("len"), *len);
                if *first {
                    j.out
                        .extend_from_slice(concat!(",\"first\":", "true").as_bytes());
                }
            }
        }
        j.out.push(b'}');
    }
}

/// Writes one flat JSON object, field by field. Each field starts with its
/// separator and key as one constant (see `key!`); the first is `{"time":`.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonObject<'_> {
    /// A string that may need escaping (names, comm, reasons).
    #[inline(always)]
    fn str(&mut self, k: &[u8], v: &str) {
        self.out.extend_from_slice(k);
        // No early exit: the compiler vectorizes this (all our strings
        // are short and clean; the check was a quarter of the writer).
        let plain = !v.bytes().fold(false, |bad, b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if plain {
            self.out.push(b'"');
            self.out.extend_from_slice(v.as_bytes());
            self.out.push(b'"');
        } else {
            serde_json::to_writer(&mut *self.out, v).expect("a str always serializes");
        }
    }

    /// One of our own constant strings: nothing to escape.
    #[inline(always)]
    fn raw_str(&mut self, k: &[u8], v: &str) {
        self.out.extend_from_slice(k);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    #[inline(always)]
    fn int(&mut self, k: &[u8], v: impl itoa::Integer) {
        self.out.extend_from_slice(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline(always)]
    fn float(&mut self, k: &[u8], v: f64) {
        self.out.extend_from_slice(k);
        // serde_json's own float formatting, so the two agree exactly.
        serde_json::to_writer(&mut *self.out, &v).expect("a float always serializes");
    }

    /// `"a.b.c.d:port"` or `"[v6]:port"`, as `SocketAddr`'s `Display`.
    /// IPv4 is assembled on the stack and appended in one copy.
    #[inline(always)]
    fn addr(&mut self, k: &[u8], a: &SocketAddr) {
        self.out.extend_from_slice(k);
        match a {
            SocketAddr::V4(v4) => {
                // `"255.255.255.255:65535"` is 23 bytes.
                let mut b = [0u8; 24];
                b[0] = b'"';
                let mut n = 1;
                for (i, &o) in v4.ip().octets().iter().enumerate() {
                    if i > 0 {
                        b[n] = b'.';
                        n += 1;
                    }
                    if o >= 100 {
                        b[n] = b'0' + o / 100;
                        n += 1;
                    }
                    if o >= 10 {
                        b[n] = b'0' + o / 10 % 10;
                        n += 1;
                    }
                    b[n] = b'0' + o % 10;
                    n += 1;
                }
                b[n] = b':';
                n += 1;
                let mut ib = itoa::Buffer::new();
                let port = ib.format(v4.port()).as_bytes();
                b[n..n + port.len()].copy_from_slice(port);
                n += port.len();
                b[n] = b'"';
                self.out.extend_from_slice(&b[..=n]);
            }
            SocketAddr::V6(_) => {
                use std::io::Write as _;
                let _ = write!(self.out, "\"{a}\"");
            }
        }
    }
}

/// Formats a wall-clock time given as nanoseconds since the Unix epoch as
/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-25T14:37:18.123456789Z`.
pub fn rfc3339_nanos(unix_ns: u128) -> String {
    Rfc3339::default().format(unix_ns)
}

/// [`rfc3339_nanos`] for a stream of timestamps: the date and time of day
/// are formatted once per second, only the nanoseconds per call (the
/// runner formats one per event).
#[derive(Debug, Default)]
pub struct Rfc3339 {
    /// The second `prefix` shows, and `YYYY-MM-DDTHH:MM:SS.` for it.
    second: Option<i64>,
    prefix: [u8; 20],
}

impl Rfc3339 {
    pub fn format(&mut self, unix_ns: u128) -> String {
        let mut out = String::with_capacity(30);
        self.format_into(unix_ns, &mut out);
        out
    }

    /// Overwrites `out` with the time (reusing its buffer).
    pub fn format_into(&mut self, unix_ns: u128, out: &mut String) {
        let secs = (unix_ns / 1_000_000_000) as i64;
        let nanos = (unix_ns % 1_000_000_000) as u32;
        out.clear();
        if self.second != Some(secs) {
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400) as u32;
            let (y, m, d) = civil_from_days(days);
            if !(0..=9999).contains(&y) {
                use std::fmt::Write as _;
                let _ = write!(
                    out,
                    "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                    rem / 3600,
                    (rem % 3600) / 60,
                    rem % 60
                );
                return;
            }
            let mut p = *b"0000-00-00T00:00:00.";
            put_digits(&mut p[0..4], y as u32);
            put_digits(&mut p[5..7], m);
            put_digits(&mut p[8..10], d);
            put_digits(&mut p[11..13], rem / 3600);
            put_digits(&mut p[14..16], (rem % 3600) / 60);
            put_digits(&mut p[17..19], rem % 60);
            self.prefix = p;
            self.second = Some(secs);
        }
        // Digit by digit into a fixed buffer: `format!` with padding costs
        // several times as much.
        let mut b = [0u8; 30];
        b[..20].copy_from_slice(&self.prefix);
        put_digits(&mut b[20..29], nanos);
        b[29] = b'Z';
        out.push_str(std::str::from_utf8(&b).expect("ASCII digits"));
    }
}

/// `v` in decimal, zero-padded to fill `out`.
fn put_digits(out: &mut [u8], mut v: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
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
            skipped: 1,
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
    fn fast_event_json_is_what_serde_writes() {
        let mut events = Vec::new();
        let kinds = [
            EventKind::Connect,
            EventKind::Accept,
            EventKind::Established { rtt_us: 0 },
            EventKind::Close {
                duration_ms: 0.000001,
                bytes_sent: u64::MAX,
                bytes_received: 0,
            },
            EventKind::Close {
                duration_ms: 12345.5,
                bytes_sent: 1,
                bytes_received: 854,
            },
            EventKind::Failed {
                error: "ECONNREFUSED".into(),
            },
            EventKind::Reset {
                direction: ResetDirection::Sent,
            },
            EventKind::Reset {
                direction: ResetDirection::Received,
            },
            EventKind::Retransmit { state: None },
            EventKind::Retransmit {
                state: Some("SYN_SENT".into()),
            },
            EventKind::Drop {
                reason: "NO_SOCKET".into(),
                iface: Some("eth0".into()),
            },
            EventKind::Drop {
                reason: "X".into(),
                iface: None,
            },
            EventKind::Packet {
                iface: "cali\"1".into(),
                direction: Direction::Ingress,
                flags: String::new(),
                len: 0,
                first: false,
            },
            EventKind::Packet {
                iface: "veth".into(),
                direction: Direction::Egress,
                flags: "SYN|ACK".into(),
                len: 65535,
                first: true,
            },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let mut e = sample_event(kind);
            // Vary everything optional, escaping and both address families.
            if i % 2 == 0 {
                e.pid = None;
                e.comm = None;
                e.src = "[fd00::1:2]:443".parse().unwrap();
                e.dst = "[::ffff:10.0.0.1]:0".parse().unwrap();
            } else {
                e.comm = Some("we\"ird\\co\u{1}mm\u{e9}".into());
                e.src_name = Some("default/curl-demo".into());
                e.dst_name = Some("ns/n\tginx".into());
                e.src = "255.255.255.255:65535".parse().unwrap();
                e.dst = "0.0.0.0:0".parse().unwrap();
            }
            if i % 4 == 3 {
                // Octets of one, two and three digits.
                e.src = "10.88.0.3:51706".parse().unwrap();
                e.dst = "1.22.100.9:80".parse().unwrap();
            }
            events.push(e);
        }
        for e in events {
            let serde = serde_json::to_string(&e).unwrap();
            let mut fast = Vec::new();
            e.write_json(&mut fast);
            assert_eq!(String::from_utf8(fast).unwrap(), serde);
            assert_eq!(Message::Event(e.clone()).to_line(), serde);
        }
    }

    #[test]
    fn time_formatting_matches_the_general_form() {
        for ns in [
            0u128,
            1,
            999_999_999,
            86_399_999_999_999,
            1_764_081_438_123_456_789,
            4_102_444_800_000_000_000,   // 2100-01-01
            253_402_300_799_999_999_999, // 9999-12-31T23:59:59
        ] {
            let secs = (ns / 1_000_000_000) as i64;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let rem = secs.rem_euclid(86_400);
            let general = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                ns % 1_000_000_000
            );
            assert_eq!(rfc3339_nanos(ns), general);
        }
    }

    #[test]
    fn a_reused_formatter_agrees_within_and_across_seconds() {
        let mut clock = Rfc3339::default();
        let base = 1_764_081_438_000_000_000u128;
        // Same second twice, the next second, back, a day later, the start.
        for ns in [
            base + 5,
            base + 999_999_999,
            base + 1_000_000_000,
            base + 7,
            base + 86_400_000_000_000,
            0,
        ] {
            // rfc3339_nanos formats with a fresh one.
            assert_eq!(clock.format(ns), rfc3339_nanos(ns), "at {ns}");
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
