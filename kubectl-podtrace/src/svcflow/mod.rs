// SPDX-License-Identifier: Apache-2.0
//! A Service and its backend in one flow.
//!
//! A connection to a ClusterIP is seen twice: the client's socket holds the
//! ClusterIP, the backend's socket (after kube-proxy's DNAT) the backend's
//! address. Both keep the client's address and port, so the two halves are
//! matched exactly on (protocol, client `IP:PORT`), and in time: a client
//! port is reused for a later connection, so each end's connections on that
//! key are told apart by when they started ([`pair`]). A match that is not
//! unique is no match: the halves stay apart rather than be guessed
//! together. When something on the way also rewrites the client's address
//! (a CNI or a masquerade SNAT), the keys differ and nothing matches
//! (docs/follow.md).
//!
//! [`ServiceFlows`] learns from every event as it arrives and annotates
//! events as they leave the reorder window, by which time the other end
//! has had that long to arrive; [`fold`] makes one summary row per Service
//! flow.

mod fold;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use podtrace::event::{End, Event, EventKind, Proto, ServiceHop};

pub(crate) use fold::fold;

/// How far apart two nodes' clocks may be and a match still hold: the
/// backend's accept may then read as up to this much before the client's
/// connect. Two connections on one client port closer than this cannot be
/// told apart, and are left unmatched.
const SKEW_NS: i64 = 100_000_000;

/// Keys (client `IP:PORT`s) remembered; the oldest are counted into the
/// tally and forgotten beyond this.
const MAX_KEYS: usize = 65_536;

/// One end's connections are keyed by protocol and the client's address.
type Key = (Proto, SocketAddr);

/// One connection as one end saw it.
#[derive(Debug, Clone)]
struct Conn {
    /// Its first event (the `connect`/`accept`), ns since the epoch.
    start: i64,
    /// Its `close` or `failed`, when seen.
    end: Option<i64>,
    /// The address that end's socket had for the server: a ClusterIP at
    /// the client, the backend at the server.
    addr: SocketAddr,
    /// At the client: the Service whose ClusterIP `addr` is.
    service: Option<String>,
}

/// What each end saw on one key, in order.
#[derive(Debug, Default, Clone)]
struct Ends {
    client: Vec<Conn>,
    server: Vec<Conn>,
}

/// Per-connection counts for the summary: which backends a Service flow's
/// connections were matched to, and how many connections each backend
/// accepted from the client in all.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Tally {
    /// (protocol, client IP, ClusterIP:port) → the Service.
    pub services: HashMap<(Proto, IpAddr, SocketAddr), String>,
    /// (protocol, client IP, backend) → (Service address → connections
    /// matched to it).
    pub matched: HashMap<(Proto, IpAddr, SocketAddr), BTreeMap<SocketAddr, u64>>,
    /// (protocol, client IP, backend) → connections its socket accepted.
    pub accepted: HashMap<(Proto, IpAddr, SocketAddr), u64>,
}

/// A Service and, once matched, the backend a flow reached through it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hop {
    pub via: ServiceHop,
    pub backend: Option<SocketAddr>,
}

#[derive(Debug, Default)]
pub(crate) struct ServiceFlows {
    keys: HashMap<Key, Ends>,
    order: VecDeque<Key>,
    /// The keys forgotten so far, counted.
    tally: Tally,
}

/// ns since the epoch of an event's RFC 3339 time.
fn nanos(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()?
        .timestamp_nanos_opt()
}

impl ServiceFlows {
    /// Learns from an event as it arrives: a TCP connection event, or a UDP
    /// datagram (its first `packet`, a `drop`). `service` is the Service
    /// whose ClusterIP `e.dst` is.
    pub(crate) fn observe(&mut self, e: &Event, service: Option<&str>) {
        let Some(t) = nanos(&e.time) else {
            return;
        };
        let (end, opens) = match (e.end, e.proto) {
            (Some(end), _) if e.kind.is_connection_event() => (
                end,
                matches!(e.kind, EventKind::Connect | EventKind::Accept),
            ),
            // UDP has no connections: a datagram to a ClusterIP is the
            // client's half, one to anywhere else (after the NAT: at the
            // backend, or dropped on the node) may be the backend's.
            (None, Proto::Udp)
                if matches!(e.kind, EventKind::Packet { .. } | EventKind::Drop { .. }) =>
            {
                let end = if service.is_some() {
                    End::Client
                } else {
                    End::Server
                };
                let known = self.keys.get(&(e.proto, e.src)).is_some_and(|k| {
                    let conns = if end == End::Client {
                        &k.client
                    } else {
                        &k.server
                    };
                    conns.last().is_some_and(|c| c.addr == e.dst)
                });
                if known {
                    return;
                }
                (end, true)
            }
            _ => return,
        };
        let key = (e.proto, e.src);
        if !self.keys.contains_key(&key) {
            self.order.push_back(key);
            if self.order.len() > MAX_KEYS {
                if let Some(old) = self.order.pop_front() {
                    if let Some(ends) = self.keys.remove(&old) {
                        count(&mut self.tally, old, &ends);
                    }
                }
            }
        }
        let ends = self.keys.entry(key).or_default();
        let conns = match end {
            End::Client => &mut ends.client,
            End::Server => &mut ends.server,
        };
        let current = conns
            .iter()
            .rposition(|c| c.addr == e.dst && c.end.is_none() && c.start <= t);
        let i = match current {
            Some(i) if !opens => i,
            _ => {
                // A new connection ends whatever was open on this key at
                // this end (its close was lost).
                for c in conns.iter_mut().filter(|c| c.end.is_none()) {
                    c.end = Some(t);
                }
                conns.push(Conn {
                    start: t,
                    end: None,
                    addr: e.dst,
                    service: service.map(str::to_owned),
                });
                conns.len() - 1
            }
        };
        if matches!(e.kind, EventKind::Close { .. } | EventKind::Failed { .. }) {
            conns[i].end = Some(t);
        }
    }

    /// The Service and backend of an event's flow, as far as both ends are
    /// known now; `None` when it did not go to a ClusterIP as far as the
    /// client's end says, or the client's end was not seen.
    pub(crate) fn hop(&self, e: &Event) -> Option<Hop> {
        let t = nanos(&e.time)?;
        // Which way: connection events are client → server; a packet may
        // be either way, so try both.
        let ways: &[(SocketAddr, SocketAddr)] = if e.kind.is_connection_event() {
            &[(e.src, e.dst)]
        } else {
            &[(e.src, e.dst), (e.dst, e.src)]
        };
        ways.iter()
            .find_map(|&(client, server)| self.hop_of(e.proto, client, server, t))
    }

    fn hop_of(&self, proto: Proto, client: SocketAddr, server: SocketAddr, t: i64) -> Option<Hop> {
        let ends = self.keys.get(&(proto, client))?;
        let pairs = pair(ends);
        // The connection current at `t` at the end that had `server`.
        let at = |conns: &[Conn]| {
            conns
                .iter()
                .rposition(|c| c.addr == server && c.start <= t + SKEW_NS)
        };
        if let Some(ci) = at(&ends.client) {
            let c = &ends.client[ci];
            let service = c.service.clone()?;
            let backend = pairs
                .iter()
                .find(|(i, _)| *i == ci)
                .map(|&(_, s)| ends.server[s].addr);
            return Some(Hop {
                via: ServiceHop {
                    service,
                    service_addr: c.addr,
                },
                backend,
            });
        }
        let si = at(&ends.server)?;
        let (ci, _) = pairs.iter().find(|(_, s)| *s == si)?;
        let c = &ends.client[*ci];
        Some(Hop {
            via: ServiceHop {
                service: c.service.clone()?,
                service_addr: c.addr,
            },
            backend: Some(server),
        })
    }

    /// Every key's matches counted, with those forgotten earlier.
    pub(crate) fn tally(&self) -> Tally {
        let mut t = self.tally.clone();
        for (key, ends) in &self.keys {
            count(&mut t, *key, ends);
        }
        t
    }
}

/// The client's connections to a Service matched to the server's, as
/// (client index, server index): a server connection matches the client
/// connection whose time window holds its start, from the client's
/// connect to its close or the next connect on the key (widened by
/// [`SKEW_NS`]). Only one-to-one matches count.
fn pair(ends: &Ends) -> Vec<(usize, usize)> {
    let window = |i: usize| {
        let c = &ends.client[i];
        let next = ends.client.get(i + 1).map(|n| n.start);
        let until = match (c.end, next) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MAX),
        };
        (c.start - SKEW_NS, until.saturating_add(SKEW_NS))
    };
    let candidates: Vec<(usize, usize)> = (0..ends.client.len())
        .filter(|&i| ends.client[i].service.is_some())
        .flat_map(|i| {
            let (from, until) = window(i);
            ends.server
                .iter()
                .enumerate()
                .filter(move |(_, s)| from <= s.start && s.start <= until)
                .map(move |(s, _)| (i, s))
        })
        .collect();
    candidates
        .iter()
        .copied()
        .filter(|&(c, s)| {
            candidates.iter().filter(|(c2, _)| *c2 == c).count() == 1
                && candidates.iter().filter(|(_, s2)| *s2 == s).count() == 1
                // A server connection in a direct connection's window is
                // not the Service's.
                && !(0..ends.client.len()).any(|i| {
                    i != c && {
                        let (from, until) = window(i);
                        from <= ends.server[s].start && ends.server[s].start <= until
                    }
                })
        })
        .collect()
}

fn count(t: &mut Tally, (proto, client): Key, ends: &Ends) {
    for c in &ends.client {
        if let Some(svc) = &c.service {
            t.services
                .entry((proto, client.ip(), c.addr))
                .or_insert_with(|| svc.clone());
        }
    }
    for s in &ends.server {
        *t.accepted.entry((proto, client.ip(), s.addr)).or_default() += 1;
    }
    for (c, s) in pair(ends) {
        *t.matched
            .entry((proto, client.ip(), ends.server[s].addr))
            .or_default()
            .entry(ends.client[c].addr)
            .or_default() += 1;
    }
}
