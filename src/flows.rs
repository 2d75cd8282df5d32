// SPDX-License-Identifier: Apache-2.0
//! Per-flow totals, and the one rule that adds up what different observers
//! saw of one flow.
//!
//! A flow is keyed by its canonical orientation, client IP → server
//! `IP:PORT`, and counts each direction of it apart (`*_sent`: client to
//! server, `*_received`: back). Events say which end reported them, so
//! every count lands in its direction by construction, whichever end's
//! socket or interface saw it.
//!
//! A flow is seen by several observers: its two ends (on one node or on
//! two), and the nodes' runners. [`combine`] adds two observations of a
//! flow, counter by counter: where both observers see the *same* events
//! (one connection, one packet, one reset seen sent and received), the
//! larger count is what happened; where each sees *different* events (a
//! retransmit, a drop, an RTT sample are each seen by one kernel), they add
//! up. The table is in docs/schema.md ("Merging flows"); this is the only
//! place that applies it: a runner combines its flows' two ends with it,
//! and the plugin the nodes' summaries.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::event::{Direction, End, Event, EventKind, FlowSummary, Proto, ResetDirection};

/// Adds `other`'s observation of a flow to `into` (same `proto`, `src` and
/// `dst`).
pub fn combine(into: &mut FlowSummary, other: &FlowSummary) {
    // Same events seen from two places (connect and accept of one
    // connection; a packet leaving one pod and entering the other; a reset
    // sent by one end and received by the other): the smaller count only
    // missed some. Failures are reported by the client alone.
    let same = |a: &mut u64, b: u64| *a = (*a).max(b);
    same(&mut into.connections, other.connections);
    same(&mut into.failed, other.failed);
    same(&mut into.packets_sent, other.packets_sent);
    same(&mut into.bytes_sent, other.bytes_sent);
    same(&mut into.packets_received, other.packets_received);
    same(&mut into.bytes_received, other.bytes_received);
    same(&mut into.resets_sent, other.resets_sent);
    same(&mut into.resets_received, other.resets_received);
    // Different events: a retransmit is seen only by the sender's kernel, a
    // drop only by the kernel that dropped it, an RTT sample only by the
    // end that measured it.
    into.retransmits_sent += other.retransmits_sent;
    into.retransmits_received += other.retransmits_received;
    into.drops += other.drops;
    if let Some(r) = &other.rtt {
        into.rtt.get_or_insert_with(Default::default).merge(r);
    }
    if into.src_name.is_none() {
        into.src_name.clone_from(&other.src_name);
    }
    if into.dst_name.is_none() {
        into.dst_name.clone_from(&other.dst_name);
    }
}

/// Merges flow lists (one per node) into one, busiest first.
pub fn merge<'a>(lists: impl IntoIterator<Item = &'a [FlowSummary]>) -> Vec<FlowSummary> {
    let mut merged: BTreeMap<_, FlowSummary> = BTreeMap::new();
    for f in lists.into_iter().flatten() {
        match merged.entry((f.proto, f.src, f.dst)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(f.clone());
            }
            std::collections::btree_map::Entry::Occupied(mut o) => combine(o.get_mut(), f),
        }
    }
    busiest_first(merged.into_values().collect())
}

/// Orders flows busiest first (packets, then connections), then by address.
pub fn busiest_first(mut flows: Vec<FlowSummary>) -> Vec<FlowSummary> {
    flows.sort_by_key(|f| {
        (
            Reverse(f.packets_sent + f.packets_received),
            Reverse(f.connections),
            f.src,
            f.dst,
        )
    });
    flows
}

/// A flow: client IP → server `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: Proto,
    client: IpAddr,
    server: SocketAddr,
}

/// The kernel's counters of one flow, each packet counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub drops: u64,
}

/// Flows seen so far on one node: what each end observed, combined at
/// [`Flows::finish`].
#[derive(Debug, Default)]
pub struct Flows {
    /// Per flow, the client's and the server's observations.
    flows: foldhash::HashMap<FlowKey, [FlowSummary; 2]>,
    /// Count packets and drops from their events (else they come from the
    /// kernel's counters: [`Flows::add_counters`]).
    packet_events: bool,
}

fn slot(end: End) -> usize {
    match end {
        End::Client => 0,
        End::Server => 1,
    }
}

impl Flows {
    /// Flows whose packets and drops are counted from `packet` and `drop`
    /// events: for a node whose own summary never came. (The events show
    /// only what was reported: without `--packets`, SYN, FIN and RST.)
    pub fn from_packet_events() -> Self {
        Flows {
            packet_events: true,
            ..Flows::default()
        }
    }

    fn observation(&mut self, key: FlowKey, by: End) -> &mut FlowSummary {
        &mut self.flows.entry(key).or_default()[slot(by)]
    }

    /// Folds one event in.
    pub fn record(&mut self, e: &Event) {
        if !e.kind.is_connection_event() {
            if self.packet_events {
                self.record_packet(e);
            }
            return;
        }
        let key = FlowKey {
            proto: e.proto,
            client: e.src.ip(),
            server: e.dst,
        };
        // Schema 1 lines say nothing of the end: then the opener's.
        let end = e.end.unwrap_or(End::Client);
        match &e.kind {
            EventKind::Connect => self.observation(key, End::Client).connections += 1,
            EventKind::Accept => self.observation(key, End::Server).connections += 1,
            EventKind::Failed { .. } => self.observation(key, End::Client).failed += 1,
            EventKind::Established { rtt_us } => self
                .observation(key, end)
                .rtt
                .get_or_insert_with(Default::default)
                .add(*rtt_us),
            EventKind::Retransmit { .. } => {
                let o = self.observation(key, end);
                match end {
                    End::Client => o.retransmits_sent += 1,
                    End::Server => o.retransmits_received += 1,
                }
            }
            EventKind::Reset { direction } => {
                let sender = match direction {
                    ResetDirection::Sent => end,
                    ResetDirection::Received => end.other(),
                };
                let o = self.observation(key, end);
                match sender {
                    End::Client => o.resets_sent += 1,
                    End::Server => o.resets_received += 1,
                }
            }
            // Its bytes are the socket's sequence space, not the packets'
            // lengths the flow counts: shown on the event only.
            EventKind::Close { .. } => {}
            EventKind::Drop { .. }
            | EventKind::Packet { .. }
            | EventKind::Icmp { .. }
            | EventKind::Dns(_) => {}
        }
    }

    /// A packet or drop, whose `src`/`dst` are the packet's own: oriented
    /// by the flow it belongs to.
    fn record_packet(&mut self, e: &Event) {
        let forward = FlowKey {
            proto: e.proto,
            client: e.src.ip(),
            server: e.dst,
        };
        let reverse = FlowKey {
            proto: e.proto,
            client: e.dst.ip(),
            server: e.src,
        };
        let from_client = if self.flows.contains_key(&forward) {
            true
        } else if self.flows.contains_key(&reverse) {
            false
        } else {
            match &e.kind {
                // A SYN comes from the client, a SYN|ACK from the server, the
                // first UDP datagram from whoever opened (as the kernel
                // orients its counters); else the lower port is the server's.
                EventKind::Packet { flags, .. } if has_flag(flags, "SYN") => {
                    !has_flag(flags, "ACK")
                }
                _ if e.proto == Proto::Udp => true,
                _ => e.dst.port() <= e.src.port(),
            }
        };
        let (key, sender) = if from_client {
            (forward, End::Client)
        } else {
            (reverse, End::Server)
        };
        match &e.kind {
            // A packet between two traced pods shows leaving one and
            // entering the other: the same packet, seen by each end.
            EventKind::Packet { direction, len, .. } => {
                let by = match direction {
                    Direction::Egress => sender,
                    Direction::Ingress => sender.other(),
                };
                let o = self.observation(key, by);
                let len = u64::from(*len);
                match sender {
                    End::Client => {
                        o.packets_sent += 1;
                        o.bytes_sent += len;
                    }
                    End::Server => {
                        o.packets_received += 1;
                        o.bytes_received += len;
                    }
                }
            }
            EventKind::Drop { .. } => self.observation(key, sender).drops += 1,
            _ => {}
        }
    }

    /// Adds the kernel's counters of a flow (each packet counted once).
    pub fn add_counters(&mut self, proto: Proto, client: IpAddr, server: SocketAddr, c: Counters) {
        let key = FlowKey {
            proto,
            client,
            server,
        };
        let o = self.observation(key, End::Client);
        o.packets_sent += c.packets_sent;
        o.bytes_sent += c.bytes_sent;
        o.packets_received += c.packets_received;
        o.bytes_received += c.bytes_received;
        o.drops += c.drops;
    }

    /// The flows, busiest first.
    pub fn finish(self) -> Vec<FlowSummary> {
        busiest_first(
            self.flows
                .into_iter()
                .map(|(k, [mut f, server])| {
                    combine(&mut f, &server);
                    f.proto = Some(k.proto);
                    f.src = Some(k.client);
                    f.dst = Some(k.server);
                    if k.proto == Proto::Udp {
                        f.connections = 1;
                    }
                    f
                })
                .collect(),
        )
    }
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags.split('|').any(|f| f == flag)
}

#[cfg(test)]
mod tests;
