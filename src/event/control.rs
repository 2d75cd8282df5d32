// SPDX-License-Identifier: Apache-2.0
//! The control lines: `hello`, `ready`, `lost`, `warning` and `summary`.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{DnsSummary, Proto};

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
    /// What the node's kernel offers that tracing uses (absent from
    /// runners that did not probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
}

/// Kernel features the runner probed at start. Each one that is off has a
/// fallback or leaves something out; [`Features::notes`] says what the
/// user sees differently (docs/kernels.md has the table by kernel).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `skb:kfree_skb` says why it dropped a packet (Linux 5.17).
    pub drop_reasons: bool,
    /// tcx links for the packet programs (Linux 6.6); else clsact filters.
    pub tcx: bool,
    /// `tcp:tcp_send_reset` also fires for resets sent without a socket,
    /// e.g. answering a SYN to a closed port (Linux 6.10).
    pub reset_without_socket: bool,
    /// The kernel counts the runs of a hook it skipped (`recursion_misses`,
    /// Linux 5.12), which `lost` reports.
    pub skipped_runs: bool,
    /// Skipped TCP state changes are made up for (a `bpf_link` iterator and
    /// `bpf_rdonly_cast`, Linux 6.2); else they count as lost.
    pub recursion_cover: bool,
    /// `sock:inet_sk_error_report` keeps an ICMP error that came during
    /// `connect()` (Linux 5.14); else `failed` reports only what the
    /// socket still holds at its close.
    #[serde(default)]
    pub error_report: bool,
}

impl Features {
    /// One line per feature that is off: what it needs and what this node
    /// shows instead.
    pub fn notes(&self) -> Vec<&'static str> {
        [
            (
                self.drop_reasons,
                "drop reasons need Linux >= 5.17; drops are shown without a reason on this node",
            ),
            (
                self.tcx,
                "tcx needs Linux >= 6.6; packets are captured with clsact filters on this node",
            ),
            (
                self.reset_without_socket,
                "resets sent for connections to closed ports are reported from Linux 6.10; \
                 on this node the client's `reset received` and the RST packet show them",
            ),
            (
                self.skipped_runs,
                "Linux < 5.12 does not count skipped hook runs; `lost` on this node counts \
                 only events the ring buffer could not take",
            ),
            (
                self.recursion_cover,
                "TCP state changes the kernel skips under load are made up for from \
                 Linux 6.2; on this node they are counted as lost",
            ),
            (
                self.error_report,
                "ICMP errors during connect() are caught from Linux 5.14; on this node a \
                 failed connection may show no error if its caller read it first",
            ),
        ]
        .into_iter()
        .filter(|(on, _)| !on)
        .map(|(_, note)| note)
        .collect()
    }
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
/// Kept as a sum and a count, so the average stays exact however many
/// samples come; `avg_us` is written for readers, and a line without
/// `sum_us` (schema 1) is read back from it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(from = "RttWire", into = "RttWire")]
pub struct Rtt {
    pub min_us: u64,
    pub max_us: u64,
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum_us: u64,
}

/// [`Rtt`] as written: with its average.
#[derive(Serialize, Deserialize)]
struct RttWire {
    min_us: u64,
    avg_us: u64,
    max_us: u64,
    count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum_us: Option<u64>,
}

impl From<Rtt> for RttWire {
    fn from(r: Rtt) -> Self {
        RttWire {
            min_us: r.min_us,
            avg_us: r.avg_us(),
            max_us: r.max_us,
            count: r.count,
            sum_us: Some(r.sum_us),
        }
    }
}

impl From<RttWire> for Rtt {
    fn from(w: RttWire) -> Self {
        Rtt {
            min_us: w.min_us,
            max_us: w.max_us,
            count: w.count,
            sum_us: w.sum_us.unwrap_or_else(|| w.avg_us.saturating_mul(w.count)),
        }
    }
}

impl Rtt {
    /// Adds one sample.
    pub fn add(&mut self, us: u64) {
        self.merge(&Rtt {
            min_us: us,
            max_us: us,
            count: 1,
            sum_us: us,
        });
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
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// The mean sample (0 without samples).
    pub fn avg_us(&self) -> u64 {
        self.sum_us.checked_div(self.count).unwrap_or(0)
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
    /// `ns/name` of the Service whose ClusterIP `dst` is, added by the
    /// plugin: the flow went through it to `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The ClusterIP and port the client addressed (`dst` of such a row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_addr: Option<SocketAddr>,
    /// The backends the Service's connections were matched to, with how
    /// many each got; their counters are folded into this row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Connections opened (TCP) or 5-tuples seen (UDP).
    pub connections: u64,
    /// Opens that failed (refused, timed out).
    pub failed: u64,
    /// Packets and bytes from `src` to `dst` (client to server), counted
    /// at the pods' host-side interfaces.
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets and bytes from `dst` back to `src`.
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Segments the client retransmitted (from `src` to `dst`).
    #[serde(default)]
    pub retransmits_sent: u64,
    /// Segments the server retransmitted (from `dst` to `src`).
    #[serde(default)]
    pub retransmits_received: u64,
    /// Resets from `src` to `dst` (sent by the client).
    #[serde(default)]
    pub resets_sent: u64,
    /// Resets from `dst` to `src` (sent by the server).
    #[serde(default)]
    pub resets_received: u64,
    pub drops: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Rtt>,
}

impl FlowSummary {
    /// Retransmits both ways.
    pub fn retransmits(&self) -> u64 {
        self.retransmits_sent + self.retransmits_received
    }

    /// Resets both ways.
    pub fn resets(&self) -> u64 {
        self.resets_sent + self.resets_received
    }
}

/// A backend a Service flow reached.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The backend pod's `IP:PORT`.
    pub addr: SocketAddr,
    /// Its `ns/name`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Connections to the Service that were matched to it.
    pub connections: u64,
}

/// Last line of a runner's output.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    pub node: String,
    pub time: String,
    pub flows: Vec<FlowSummary>,
    /// DNS per asking pod, from this runner's `dns` events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<DnsSummary>,
    /// Events lost over the whole run (also reported in `lost` lines).
    pub lost: u64,
    /// Events written over the whole run.
    pub events: u64,
    /// Seconds the trace ran.
    pub duration_s: f64,
}

/// The plugin's last line with `-o json`: the whole session's flows, each
/// merged over the nodes that saw it (see `flows`), as the text summary
/// shows them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub time: String,
    pub flows: Vec<FlowSummary>,
    /// DNS per asking pod, from all nodes' `dns` events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<DnsSummary>,
    /// Events lost over all nodes' runs.
    pub lost: u64,
    /// Nodes whose runner's `summary` was merged.
    pub nodes: Vec<String>,
    /// Nodes whose `summary` never came: their flows are counted from the
    /// events they streamed.
    #[serde(default)]
    pub counted_from_events: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_merges_samples() {
        let mut a = Rtt::default();
        a.add(10);
        a.add(30);
        let mut b = Rtt::default();
        b.add(5);
        a.merge(&b);
        assert_eq!((a.min_us, a.max_us, a.count), (5, 30, 3));
        assert_eq!(a.avg_us(), 15);
    }

    #[test]
    fn rtt_average_follows_every_sample() {
        // An integer running average stuck at 50: each 60 moved it by
        // (60 - 50) / n, which rounds to 0 after ten samples.
        let mut r = Rtt::default();
        for _ in 0..10_000 {
            r.add(50);
        }
        for _ in 0..10_000 {
            r.add(60);
        }
        assert_eq!(r.avg_us(), 55);
        assert_eq!((r.min_us, r.max_us, r.count), (50, 60, 20_000));
    }

    #[test]
    fn rtt_reads_schema_1_lines_and_writes_its_average() {
        let old: Rtt =
            serde_json::from_str(r#"{"min_us":10,"avg_us":20,"max_us":30,"count":3}"#).unwrap();
        assert_eq!((old.sum_us, old.avg_us()), (60, 20));
        let mut r = Rtt::default();
        r.add(10);
        r.add(21);
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["avg_us"], 15);
        assert_eq!(v["sum_us"], 31);
        assert_eq!(serde_json::from_value::<Rtt>(v).unwrap(), r);
    }

    /// Each feature that is off has its note, and only those; a runner
    /// that did not probe (`features` absent) reads back as `None`.
    #[test]
    fn features_say_what_is_off() {
        assert!(Features {
            drop_reasons: true,
            tcx: true,
            reset_without_socket: true,
            skipped_runs: true,
            recursion_cover: true,
            error_report: true,
        }
        .notes()
        .is_empty());
        let old = Features::default().notes();
        assert_eq!(old.len(), 6);
        assert!(
            old[0].starts_with("drop reasons need Linux >= 5.17"),
            "{old:?}"
        );
        let ready: Ready = serde_json::from_str(
            r#"{"node":"n","time":"t","hooks":[],"interfaces":[],"pod_ips":[]}"#,
        )
        .unwrap();
        assert_eq!(ready.features, None);
    }
}
