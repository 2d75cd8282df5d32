// SPDX-License-Identifier: Apache-2.0
//! One summary row per Service flow: the client's row to the ClusterIP
//! takes in the rows of the backends its connections were matched to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use podtrace::event::{Backend, FlowSummary, Proto};
use podtrace::flows;

use super::Tally;

/// `flows` (merged over the nodes, busiest first) with each row to a
/// ClusterIP marked with its Service, and each backend row whose every
/// accepted connection was matched to one Service flow folded into that
/// flow's row. A backend row with connections that were not matched (a
/// direct connection, one whose other half was not seen, an SNAT) stays a
/// row of its own: its counters cannot be split.
pub(crate) fn fold(mut rows: Vec<FlowSummary>, tally: &Tally) -> Vec<FlowSummary> {
    let key = |f: &FlowSummary| Some((f.proto?, f.src?, f.dst?));
    let index: HashMap<(Proto, IpAddr, SocketAddr), usize> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((key(f)?, i)))
        .collect();
    // Service row → its backend rows, with their matched connections.
    let mut folded: HashMap<usize, Vec<(usize, u64)>> = HashMap::new();
    for (i, f) in rows.iter().enumerate() {
        let Some(k @ (proto, client, _)) = key(f) else {
            continue;
        };
        let Some(matched) = tally.matched.get(&k) else {
            continue;
        };
        let [(service_addr, &n)] = matched.iter().collect::<Vec<_>>()[..] else {
            continue;
        };
        let accepted = tally.accepted.get(&k).copied().unwrap_or(0);
        if n < accepted || n < f.connections {
            continue;
        }
        if let Some(&s) = index.get(&(proto, client, *service_addr)) {
            folded.entry(s).or_default().push((i, n));
        }
    }
    for f in &mut rows {
        if let Some(svc) = key(f).and_then(|k| tally.services.get(&k)) {
            f.service = Some(svc.clone());
            f.service_addr = f.dst;
        }
    }
    let mut gone = vec![false; rows.len()];
    for (s, backend_rows) in folded {
        let mut sum = FlowSummary::default();
        let mut backends = Vec::new();
        for (b, connections) in backend_rows {
            add(&mut sum, &rows[b]);
            if let Some(addr) = rows[b].dst {
                backends.push(Backend {
                    addr,
                    name: rows[b].dst_name.clone(),
                    connections,
                });
            }
            gone[b] = true;
        }
        backends.sort_by_key(|b| b.addr);
        flows::combine(&mut rows[s], &sum);
        rows[s].backends = backends;
    }
    let kept = rows
        .into_iter()
        .zip(gone)
        .filter(|(_, g)| !g)
        .map(|(f, _)| f)
        .collect();
    flows::busiest_first(kept)
}

/// Adds the counters of a flow made of other connections than `into`'s
/// (another backend's): everything adds up, RTT samples pool.
fn add(into: &mut FlowSummary, other: &FlowSummary) {
    into.connections += other.connections;
    into.failed += other.failed;
    into.packets_sent += other.packets_sent;
    into.bytes_sent += other.bytes_sent;
    into.packets_received += other.packets_received;
    into.bytes_received += other.bytes_received;
    into.retransmits_sent += other.retransmits_sent;
    into.retransmits_received += other.retransmits_received;
    into.resets_sent += other.resets_sent;
    into.resets_received += other.resets_received;
    into.drops += other.drops;
    if let Some(r) = &other.rtt {
        into.rtt.get_or_insert_with(Default::default).merge(r);
    }
}
