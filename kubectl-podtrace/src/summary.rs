// SPDX-License-Identifier: Apache-2.0
//! Per-flow totals over the whole session.
//!
//! Each runner reports the flows it saw. A flow between pods on two nodes is
//! seen by both runners, and they count the *same* packets (at the sender's
//! and at the receiver's host-side interface), so the merged flow takes the
//! larger of the two counts rather than their sum: the counts differ only by
//! what was lost on the way, and the larger one is what was sent. Drops are
//! the exception: a packet is freed as dropped by exactly one kernel, so the
//! drops each node saw add up. RTT comes from the opener's node (the
//! handshake as the client measured it), else from whichever node had one.
//!
//! When a runner's `summary` line never arrived (its pod was killed), its
//! flows are tallied from the events it streamed, so nothing the user saw is
//! missing from the table.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use podtrace::event::{Event, EventKind, FlowSummary, Proto, ResetDirection, Rtt};

type FlowKey = (Option<Proto>, Option<IpAddr>, Option<SocketAddr>);

fn key(f: &FlowSummary) -> FlowKey {
    (f.proto, f.src, f.dst)
}

/// Merges per-node flow lists into one. `is_local(node, ip)` says whether
/// `ip` is a pod on `node`.
pub fn merge(
    per_node: &[(String, Vec<FlowSummary>)],
    is_local: &dyn Fn(&str, IpAddr) -> bool,
) -> Vec<FlowSummary> {
    let mut merged: BTreeMap<FlowKey, (FlowSummary, bool)> = BTreeMap::new();
    for (node, flows) in per_node {
        for f in flows {
            let from_opener = f.src.is_some_and(|ip| is_local(node, ip));
            match merged.get_mut(&key(f)) {
                None => {
                    merged.insert(key(f), (f.clone(), from_opener));
                }
                Some((m, rtt_from_opener)) => {
                    m.connections = m.connections.max(f.connections);
                    m.failed = m.failed.max(f.failed);
                    m.packets_sent = m.packets_sent.max(f.packets_sent);
                    m.bytes_sent = m.bytes_sent.max(f.bytes_sent);
                    m.packets_received = m.packets_received.max(f.packets_received);
                    m.bytes_received = m.bytes_received.max(f.bytes_received);
                    m.retransmits = m.retransmits.max(f.retransmits);
                    m.resets = m.resets.max(f.resets);
                    m.drops += f.drops;
                    let has_rtt = |r: &Option<Rtt>| r.is_some_and(|r| r.count > 0);
                    if has_rtt(&f.rtt) && (!has_rtt(&m.rtt) || (from_opener && !*rtt_from_opener)) {
                        m.rtt = f.rtt;
                        *rtt_from_opener = from_opener;
                    }
                    if m.src_name.is_none() {
                        m.src_name.clone_from(&f.src_name);
                    }
                    if m.dst_name.is_none() {
                        m.dst_name.clone_from(&f.dst_name);
                    }
                }
            }
        }
    }
    merged.into_values().map(|(f, _)| f).collect()
}

/// Flow totals counted from one node's events, for a node whose `summary`
/// line never came.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Per flow: totals, and connects, accepts, resets sent, resets received.
    flows: BTreeMap<FlowKey, (FlowSummary, [u64; 4])>,
}

impl Tally {
    /// Counts one event.
    pub fn add(&mut self, e: &Event) {
        let k: FlowKey = match e.kind {
            // Packets and drops carry the packet's direction: fold them into
            // the connection they belong to if we know it.
            EventKind::Packet { .. } | EventKind::Drop { .. } => {
                let forward = (Some(e.proto), Some(e.src.ip()), Some(e.dst));
                let reverse = (Some(e.proto), Some(e.dst.ip()), Some(e.src));
                if self.flows.contains_key(&reverse) && !self.flows.contains_key(&forward) {
                    reverse
                } else if self.flows.contains_key(&forward) || e.dst.port() <= e.src.port() {
                    forward
                } else {
                    reverse
                }
            }
            _ => (Some(e.proto), Some(e.src.ip()), Some(e.dst)),
        };
        let forward = k.1 == Some(e.src.ip());
        let (f, [connects, accepts, resets_sent, resets_received]) =
            self.flows.entry(k).or_insert_with(|| {
                (
                    FlowSummary {
                        proto: k.0,
                        src: k.1,
                        dst: k.2,
                        ..Default::default()
                    },
                    [0; 4],
                )
            });
        match &e.kind {
            EventKind::Connect => *connects += 1,
            EventKind::Accept => *accepts += 1,
            EventKind::Established { rtt_us } => {
                f.rtt.get_or_insert_with(Rtt::default).add(*rtt_us);
            }
            EventKind::Failed { .. } => f.failed += 1,
            // Between two traced pods on one node both ends report the
            // same reset (sent and received): count it once, as the runner does.
            EventKind::Reset { direction } => match direction {
                ResetDirection::Sent => *resets_sent += 1,
                ResetDirection::Received => *resets_received += 1,
            },
            EventKind::Retransmit { .. } => f.retransmits += 1,
            EventKind::Drop { .. } => f.drops += 1,
            EventKind::Close {
                bytes_sent,
                bytes_received,
                ..
            } => {
                f.bytes_sent = f.bytes_sent.max(*bytes_sent);
                f.bytes_received = f.bytes_received.max(*bytes_received);
            }
            EventKind::Packet { len, .. } => {
                if forward {
                    f.packets_sent += 1;
                    f.bytes_sent += u64::from(*len);
                } else {
                    f.packets_received += 1;
                    f.bytes_received += u64::from(*len);
                }
            }
        }
        // Both ends of one connection on this node report connect and
        // accept for it: count it once.
        f.connections = (*connects).max(*accepts);
        f.resets = (*resets_sent).max(*resets_received);
    }

    /// The flows counted so far.
    pub fn flows(&self) -> Vec<FlowSummary> {
        self.flows.values().map(|(f, _)| f.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str, pkts: (u64, u64), drops: u64, rtt: Option<u64>) -> FlowSummary {
        FlowSummary {
            proto: Some(Proto::Tcp),
            src: Some(src.parse().unwrap()),
            dst: Some(dst.parse().unwrap()),
            connections: 1,
            packets_sent: pkts.0,
            bytes_sent: pkts.0 * 100,
            packets_received: pkts.1,
            bytes_received: pkts.1 * 100,
            drops,
            rtt: rtt.map(|us| {
                let mut r = Rtt::default();
                r.add(us);
                r
            }),
            ..Default::default()
        }
    }

    fn local(node: &str, ip: IpAddr) -> bool {
        (node == "n1" && ip.to_string() == "10.0.1.2")
            || (node == "n2" && ip.to_string() == "10.0.2.3")
    }

    #[test]
    fn both_ends_of_a_flow_are_not_double_counted() {
        let per_node = vec![
            (
                "n1".to_string(),
                vec![flow("10.0.1.2", "10.0.2.3:80", (6, 4), 1, Some(120))],
            ),
            (
                "n2".to_string(),
                vec![
                    flow("10.0.1.2", "10.0.2.3:80", (5, 4), 2, Some(30)),
                    flow("10.0.2.3", "10.0.9.9:53", (1, 1), 0, None),
                ],
            ),
        ];
        let merged = merge(&per_node, &local);
        assert_eq!(merged.len(), 2);
        let f = &merged[0];
        assert_eq!(f.connections, 1);
        assert_eq!((f.packets_sent, f.packets_received), (6, 4));
        assert_eq!(f.bytes_sent, 600);
        assert_eq!(f.drops, 3, "each drop happens in one kernel: they add up");
        assert_eq!(f.rtt.unwrap().avg_us, 120, "RTT from the opener's node");
        assert_eq!(merged[1].dst.unwrap().port(), 53);
    }

    #[test]
    fn rtt_from_opener_wins_whatever_the_order() {
        let per_node = vec![
            (
                "n2".to_string(),
                vec![flow("10.0.1.2", "10.0.2.3:80", (1, 1), 0, Some(30))],
            ),
            (
                "n1".to_string(),
                vec![flow("10.0.1.2", "10.0.2.3:80", (1, 1), 0, Some(120))],
            ),
        ];
        assert_eq!(merge(&per_node, &local)[0].rtt.unwrap().avg_us, 120);
    }

    #[test]
    fn tally_counts_events_once() {
        let ev = |kind: EventKind, src: &str, dst: &str| Event {
            time: "t".into(),
            node: "n1".into(),
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            pid: None,
            comm: None,
            src_name: None,
            dst_name: None,
            kind,
        };
        let mut t = Tally::default();
        t.add(&ev(EventKind::Connect, "10.0.1.2:40000", "10.0.1.3:80"));
        t.add(&ev(EventKind::Accept, "10.0.1.2:40000", "10.0.1.3:80"));
        t.add(&ev(
            EventKind::Established { rtt_us: 50 },
            "10.0.1.2:40000",
            "10.0.1.3:80",
        ));
        t.add(&ev(
            EventKind::Packet {
                iface: "v".into(),
                direction: podtrace::event::Direction::Ingress,
                flags: "SYN|ACK".into(),
                len: 60,
                first: false,
            },
            "10.0.1.3:80",
            "10.0.1.2:40000",
        ));
        let flows = t.flows();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].connections, 1);
        assert_eq!(flows[0].packets_received, 1);
        assert_eq!(flows[0].rtt.unwrap().count, 1);
    }
}
