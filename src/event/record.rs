// SPDX-License-Identifier: Apache-2.0
//! The records of the stream: events (what the kernel saw) and the
//! fields they share with the control lines.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

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

/// Which way a packet crossed (or, dropped, was crossing) a pod's host-side
/// interface, from the pod's point of view: `egress` out of the pod,
/// `ingress` into it.
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

/// Where the kernel freed a dropped packet: inside the traced pod's own
/// network namespace, or in the node's (routing, forwarding, the bridge).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DropSite {
    Pod,
    Node,
}

impl DropSite {
    /// The wire name (serde's too).
    pub fn as_str(self) -> &'static str {
        match self {
            DropSite::Pod => "pod",
            DropSite::Node => "node",
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

/// Which end of a connection reported an event: the socket of the side
/// that opened it (`client`) or of the side that accepted it (`server`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Client,
    Server,
}

impl End {
    /// The wire name (serde's too).
    pub fn as_str(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Server => "server",
        }
    }

    /// The far end.
    pub fn other(self) -> End {
        match self {
            End::Client => End::Server,
            End::Server => End::Client,
        }
    }
}

/// Length of the Ethernet header that packet bytes ([`Payload`]) start
/// with and that a packet's `len` does not count.
pub const ETH_HLEN: u32 = 14;

/// Bytes captured from a packet; base64 (standard alphabet, padded) on the
/// wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    /// Appends the wire form (base64, no quotes) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        use base64::Engine as _;
        let start = out.len();
        out.resize(
            start + base64::encoded_len(self.0.len(), true).unwrap_or(0),
            0,
        );
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(&self.0, &mut out[start..])
            .expect("sized by encoded_len");
        out.truncate(start + n);
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Payload)
            .map_err(|e| serde::de::Error::custom(format!("data is not base64: {e}")))
    }
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
        /// Bytes from `src` to `dst` (client to server), whichever end
        /// reported the close.
        bytes_sent: u64,
        /// Bytes from `dst` to `src` (server to client).
        bytes_received: u64,
    },
    /// An open that never got established.
    Failed {
        /// errno name of what the caller got, e.g. `ECONNREFUSED`,
        /// `ETIMEDOUT`; absent when the kernel recorded no error (the
        /// socket was closed before any answer, e.g. the caller gave up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
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
        /// kernel's BTF, e.g. `NETFILTER_DROP`, `NO_SOCKET`; absent on
        /// kernels whose drops carry no reason (before 5.17).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Host-side interface of the traced pod the packet was going to
        /// or coming from, where known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iface: Option<String>,
        /// From that pod's point of view, as for packets: `ingress` on
        /// its way into the pod, `egress` on its way out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<Direction>,
        /// Where the kernel freed it: in that pod's namespace or on the node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DropSite>,
        /// The first bytes of the packet as a frame, when the runner was
        /// asked for them (`--snaplen`): an Ethernet header with zero
        /// addresses (the packet may have had none where it died), then
        /// the IP packet as far as the kernel held it in one piece.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Payload>,
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
        /// The first bytes of the frame as the interface carried it,
        /// Ethernet header on (the whole frame was `len` + [`ETH_HLEN`]
        /// bytes), when the runner was asked for them (`--snaplen`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Payload>,
    },
    /// An ICMP or ICMPv6 error about a flow, where it crossed a pod's
    /// host-side interface. The event's `proto`, `src` and `dst` are those
    /// of the packet the error quotes (as for packets: that packet's own
    /// direction), so it lines up with the flow's other lines.
    Icmp {
        /// What went wrong, in words: `port unreachable`, `host
        /// unreachable`, `frag needed`, `packet too big`, `time exceeded`…
        error: String,
        /// The MTU a `frag needed` or `packet too big` announces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        /// Who sent the error: the quoted packet's destination, or a node
        /// or router on the way.
        from: IpAddr,
        /// ICMP type and code (ICMPv6's when `from` is IPv6).
        icmp_type: u8,
        icmp_code: u8,
        iface: String,
        /// From that pod's point of view, as for packets.
        direction: Direction,
    },
    /// A DNS query of a traced pod and its answer, or that none came.
    Dns(Box<super::Dns>),
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
            EventKind::Icmp { .. } => "icmp",
            EventKind::Dns(_) => "dns",
        }
    }

    /// Connection events orient `src`/`dst` as opener → acceptor; packets,
    /// drops and ICMP errors carry the packet's own direction.
    pub fn is_connection_event(&self) -> bool {
        !matches!(
            self,
            EventKind::Drop { .. }
                | EventKind::Packet { .. }
                | EventKind::Icmp { .. }
                | EventKind::Dns(_)
        )
    }
}

/// A Service between the two ends of a flow: the client addressed
/// `service_addr` (a ClusterIP and port of `service`), NAT took it to the
/// event's `dst`. Flat in the event's line.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceHop {
    /// `ns/name` of the Service.
    pub service: String,
    /// The ClusterIP and port the client addressed.
    pub service_addr: SocketAddr,
}

/// One thing the kernel saw.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Event {
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub node: String,
    pub proto: Proto,
    /// For connection events the opener; for packets and drops the packet's
    /// source; for ICMP errors the quoted packet's.
    pub src: SocketAddr,
    /// For connection events the acceptor; for packets and drops the
    /// packet's destination; for ICMP errors the quoted packet's.
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
    /// The Service the client addressed, when `dst` was reached through its
    /// ClusterIP: added by the plugin, never by the runner.
    #[serde(flatten, default)]
    pub via: Option<ServiceHop>,
    /// Connection events: the end whose socket reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
    #[serde(flatten)]
    pub kind: EventKind,
}
