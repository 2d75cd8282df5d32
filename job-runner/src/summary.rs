// SPDX-License-Identifier: Apache-2.0
//! Per-flow totals for the summary line: connection counts, failures,
//! resets, retransmits and RTT from the events; packets, bytes and drops
//! from the kernel's counters. Pure, so it is tested without a kernel.

use std::net::{IpAddr, SocketAddr};

use podtrace::event::{Event, EventKind, FlowSummary, Proto, ResetDirection, Rtt};

type Key = (Proto, IpAddr, SocketAddr);

#[derive(Debug, Default)]
struct Acc {
    connects: u64,
    accepts: u64,
    failed: u64,
    retransmits: u64,
    resets_sent: u64,
    resets_received: u64,
    rtt: Rtt,
    packets_sent: u64,
    bytes_sent: u64,
    packets_received: u64,
    bytes_received: u64,
    drops: u64,
}

/// Kernel counters of one flow (client IP -> server IP:port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub drops: u64,
}

/// Flows seen so far.
#[derive(Debug, Default)]
pub struct Flows {
    flows: foldhash::HashMap<Key, Acc>,
}

impl Flows {
    /// Folds one connection event in (packets and drops come from
    /// [`Flows::add_counters`], which counts each packet exactly once).
    pub fn record(&mut self, e: &Event) {
        if !e.kind.is_connection_event() {
            return;
        }
        let acc = self.flows.entry((e.proto, e.src.ip(), e.dst)).or_default();
        match &e.kind {
            EventKind::Connect => acc.connects += 1,
            EventKind::Accept => acc.accepts += 1,
            EventKind::Established { rtt_us } => acc.rtt.add(*rtt_us),
            EventKind::Failed { .. } => acc.failed += 1,
            EventKind::Reset { direction } => match direction {
                ResetDirection::Sent => acc.resets_sent += 1,
                ResetDirection::Received => acc.resets_received += 1,
            },
            EventKind::Retransmit { .. } => acc.retransmits += 1,
            _ => {}
        }
    }

    /// Adds the kernel's counters of a flow.
    pub fn add_counters(&mut self, proto: Proto, client: IpAddr, server: SocketAddr, c: Counters) {
        let acc = self.flows.entry((proto, client, server)).or_default();
        acc.packets_sent += c.packets_sent;
        acc.bytes_sent += c.bytes_sent;
        acc.packets_received += c.packets_received;
        acc.bytes_received += c.bytes_received;
        acc.drops += c.drops;
    }

    /// The summary, busiest flows first.
    pub fn finish(self) -> Vec<FlowSummary> {
        let mut out: Vec<FlowSummary> = self
            .flows
            .into_iter()
            .map(|((proto, src, dst), a)| FlowSummary {
                proto: Some(proto),
                src: Some(src),
                dst: Some(dst),
                // Both ends of a connection between two traced pods report
                // it: a connection (or reset) is counted once.
                connections: match proto {
                    Proto::Tcp => a.connects.max(a.accepts),
                    Proto::Udp => 1,
                },
                failed: a.failed,
                packets_sent: a.packets_sent,
                bytes_sent: a.bytes_sent,
                packets_received: a.packets_received,
                bytes_received: a.bytes_received,
                retransmits: a.retransmits,
                resets: a.resets_sent.max(a.resets_received),
                drops: a.drops,
                rtt: (a.rtt.count > 0).then_some(a.rtt),
                ..FlowSummary::default()
            })
            .collect();
        out.sort_by(|a, b| {
            (b.packets_sent + b.packets_received, b.connections)
                .cmp(&(a.packets_sent + a.packets_received, a.connections))
                .then_with(|| (a.src, a.dst).cmp(&(b.src, b.dst)))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, src: &str, dst: &str) -> Event {
        Event {
            time: String::new(),
            node: "n".into(),
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            pid: None,
            comm: None,
            src_name: None,
            dst_name: None,
            kind,
        }
    }

    #[test]
    fn both_ends_of_one_connection_count_once() {
        let mut f = Flows::default();
        let (c, s) = ("10.0.0.1:40000", "10.0.0.2:80");
        f.record(&ev(EventKind::Connect, c, s));
        f.record(&ev(EventKind::Accept, c, s));
        f.record(&ev(EventKind::Established { rtt_us: 10 }, c, s));
        f.record(&ev(EventKind::Established { rtt_us: 30 }, c, s));
        f.record(&ev(EventKind::Retransmit { state: None }, c, s));
        f.add_counters(
            Proto::Tcp,
            "10.0.0.1".parse().unwrap(),
            s.parse().unwrap(),
            Counters {
                packets_sent: 6,
                bytes_sent: 400,
                packets_received: 5,
                bytes_received: 1200,
                drops: 1,
            },
        );
        let out = f.finish();
        assert_eq!(out.len(), 1);
        let flow = &out[0];
        assert_eq!(flow.connections, 1);
        assert_eq!(flow.retransmits, 1);
        assert_eq!(flow.rtt.unwrap().avg_us, 20);
        assert_eq!(
            (flow.packets_sent, flow.bytes_received, flow.drops),
            (6, 1200, 1)
        );
        assert_eq!(flow.src, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(flow.dst, Some(s.parse().unwrap()));
    }

    #[test]
    fn packets_do_not_make_flows() {
        let mut f = Flows::default();
        f.record(&ev(
            EventKind::Drop {
                reason: "X".into(),
                iface: None,
            },
            "10.0.0.1:1",
            "10.0.0.2:2",
        ));
        assert!(f.finish().is_empty());
    }
}
