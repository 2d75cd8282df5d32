// SPDX-License-Identifier: Apache-2.0
//! Pairs the DNS queries and responses of the traced pods into `dns`
//! events: latency, retries, and queries never answered (with the reason
//! when the kernel dropped them).

use std::net::SocketAddr;

use crate::event::{Dns, Event, EventKind, Proto};

use super::parse::{self, Message};
use super::PORT;

/// A query is unanswered when nothing came this long after its last sending.
pub const UNANSWERED_AFTER_NS: u64 = 5_000_000_000;

/// Queries waiting for their answer, at most: beyond, new ones are not
/// followed (a resolver flood is not what this is for).
const MAX_PENDING: usize = 4096;

/// A query, as its response names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    proto: Proto,
    /// The asking socket.
    client: SocketAddr,
    id: u16,
    name: String,
    qtype: String,
}

#[derive(Debug)]
struct Pending {
    server: SocketAddr,
    first_ns: u64,
    last_ns: u64,
    retries: u32,
    /// Where it was first seen: the same query seen at another traced
    /// pod's interface (the server's) is the same sending, not a retry.
    ifindex: u32,
    drop_reason: Option<String>,
}

/// A finished query: its event (without `time` and `node`, which the
/// caller sets) and when it finished, in the kernel's clock.
#[derive(Debug)]
pub struct Done {
    pub ts_ns: u64,
    pub event: Event,
}

/// The queries of one runner in flight.
#[derive(Debug, Default)]
pub struct Tracker {
    pending: foldhash::HashMap<Key, Pending>,
}

impl Tracker {
    /// A packet from or to port 53 with its bytes (a frame, Ethernet
    /// header on) seen at interface `ifindex` at `ts_ns`: the `dns` event
    /// when it answers a query.
    pub fn packet(
        &mut self,
        ts_ns: u64,
        proto: Proto,
        src: SocketAddr,
        dst: SocketAddr,
        ifindex: u32,
        frame: &[u8],
    ) -> Option<Done> {
        let m = parse::message(frame, proto)?;
        if !m.response {
            self.query(ts_ns, proto, src, dst, ifindex, m);
            return None;
        }
        let key = Key {
            proto,
            client: dst,
            id: m.id,
            name: m.name,
            qtype: m.qtype,
        };
        let p = self.pending.remove(&key)?;
        let latency_ms = ts_ns.saturating_sub(p.first_ns) as f64 / 1e6;
        Some(done(
            ts_ns,
            key,
            p,
            Some(m.rcode),
            m.answers,
            Some(latency_ms),
        ))
    }

    fn query(
        &mut self,
        ts_ns: u64,
        proto: Proto,
        src: SocketAddr,
        dst: SocketAddr,
        ifindex: u32,
        m: Message,
    ) {
        let key = Key {
            proto,
            client: src,
            id: m.id,
            name: m.name,
            qtype: m.qtype,
        };
        if let Some(p) = self.pending.get_mut(&key) {
            if p.ifindex == ifindex {
                p.retries += 1;
                p.last_ns = ts_ns;
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        self.pending.insert(
            key,
            Pending {
                server: dst,
                first_ns: ts_ns,
                last_ns: ts_ns,
                retries: 0,
                ifindex,
                drop_reason: None,
            },
        );
    }

    /// A packet the kernel dropped: when it was a pending query's (or its
    /// response's: the client's address and port on one side, port 53 on
    /// the other), the query keeps the reason. The query's server may be
    /// a Service's address the drop shows translated: matched on the
    /// client's side only.
    pub fn dropped(&mut self, proto: Proto, src: SocketAddr, dst: SocketAddr, reason: &str) {
        for (k, p) in self.pending.iter_mut() {
            let theirs = k.proto == proto
                && ((k.client == src && dst.port() == PORT)
                    || (k.client == dst && src.port() == PORT));
            if theirs {
                p.drop_reason = Some(reason.to_owned());
            }
        }
    }

    /// The queries with no answer `UNANSWERED_AFTER_NS` after their last
    /// sending, as of `now_ns` (the kernel's clock).
    pub fn expire(&mut self, now_ns: u64) -> Vec<Done> {
        self.take(|p| now_ns.saturating_sub(p.last_ns) >= UNANSWERED_AFTER_NS)
            .into_iter()
            .map(|(k, p)| {
                let at = p.last_ns + UNANSWERED_AFTER_NS;
                done(at.min(now_ns), k, p, None, Vec::new(), None)
            })
            .collect()
    }

    /// Every query still waiting, as unanswered: the trace is over.
    pub fn finish(&mut self, now_ns: u64) -> Vec<Done> {
        self.take(|_| true)
            .into_iter()
            .map(|(k, p)| done(now_ns, k, p, None, Vec::new(), None))
            .collect()
    }

    /// Removes the pending queries `f` picks, oldest first.
    fn take(&mut self, f: impl Fn(&Pending) -> bool) -> Vec<(Key, Pending)> {
        let keys: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| f(p))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(Key, Pending)> = keys
            .into_iter()
            .filter_map(|k| self.pending.remove_entry(&k))
            .collect();
        out.sort_by_key(|(_, p)| p.first_ns);
        out
    }
}

fn done(
    ts_ns: u64,
    k: Key,
    p: Pending,
    rcode: Option<String>,
    answers: Vec<crate::event::DnsAnswer>,
    latency_ms: Option<f64>,
) -> Done {
    let unanswered = rcode.is_none();
    Done {
        ts_ns,
        event: Event {
            time: String::new(),
            node: String::new(),
            proto: k.proto,
            src: k.client,
            dst: p.server,
            pid: None,
            comm: None,
            src_name: None,
            dst_name: None,
            via: None,
            end: None,
            kind: EventKind::Dns(Box::new(Dns {
                id: k.id,
                name: k.name,
                qtype: k.qtype,
                rcode,
                answers,
                latency_ms,
                retries: p.retries,
                unanswered,
                drop_reason: if unanswered { p.drop_reason } else { None },
            })),
        },
    }
}

#[cfg(test)]
mod tests;
