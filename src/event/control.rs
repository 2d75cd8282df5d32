// SPDX-License-Identifier: Apache-2.0
//! The control lines: `hello`, `ready`, `lost`, `warning` and `summary`.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::Proto;

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
        assert_eq!(a.avg_us, 15);
    }
}
