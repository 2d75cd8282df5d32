// SPDX-License-Identifier: Apache-2.0
//! Turns the kernel's `pt_event` into the wire schema's owned [`Event`].

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::bpf::types;
use crate::drop_reason::DropReasons;
use crate::event::{Direction, Event, EventKind, Proto, ResetDirection, Rfc3339};
use crate::tracer::ip_from_key;

/// Converts events; holds what that needs (clock offset, names).
#[derive(Debug)]
pub struct Decoder {
    node: String,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns.
    realtime_offset: i128,
    drop_reasons: DropReasons,
    /// Interface names in the node's namespace, by index.
    ifnames: foldhash::HashMap<u32, String>,
    own_netns: u32,
    clock: Rfc3339,
    /// Connections accepted while tracing, (opener, acceptor) → accept
    /// time: the kernel keeps no state for accepted sockets (see `socks`
    /// in podtrace.bpf.c), so their later events are oriented and timed
    /// from here. Removed at close.
    accepted: foldhash::HashMap<(SocketAddr, SocketAddr), u64>,
}

/// Bound on [`Decoder::accepted`]: more connections than this accepted and
/// still open (or whose close was lost) and it starts over; their close
/// then shows no duration, as for connections older than the trace.
const MAX_ACCEPTED: usize = 1 << 16;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Decoder {
    pub fn new(
        node: String,
        ifnames: HashMap<u32, String>,
        own_netns: u64,
        drop_reasons: DropReasons,
    ) -> Self {
        let realtime_offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
        Decoder {
            node,
            realtime_offset,
            drop_reasons,
            ifnames: ifnames.into_iter().collect(),
            own_netns: own_netns as u32,
            clock: Rfc3339::default(),
            accepted: Default::default(),
        }
    }

    /// Wall-clock nanoseconds of a kernel timestamp.
    pub fn unix_ns(&self, ts_ns: u64) -> u128 {
        (ts_ns as i128 + self.realtime_offset).max(0) as u128
    }

    /// The event, or `None` for a kind this runner does not know.
    pub fn event(&mut self, raw: &types::pt_event) -> Option<Event> {
        let kind = match types::pt_kind(u32::from(raw.kind)) {
            types::pt_kind::PT_CONNECT => EventKind::Connect,
            types::pt_kind::PT_ACCEPT => EventKind::Accept,
            types::pt_kind::PT_ESTABLISHED => EventKind::Established {
                rtt_us: u64::from(raw.rtt_us),
            },
            types::pt_kind::PT_CLOSE => EventKind::Close {
                duration_ms: raw.duration_ns as f64 / 1e6,
                bytes_sent: raw.bytes_sent,
                bytes_received: raw.bytes_received,
            },
            types::pt_kind::PT_FAILED => EventKind::Failed {
                error: errno_name(raw.reason),
            },
            types::pt_kind::PT_RESET_SENT => EventKind::Reset {
                direction: ResetDirection::Sent,
            },
            types::pt_kind::PT_RESET_RECEIVED => EventKind::Reset {
                direction: ResetDirection::Received,
            },
            types::pt_kind::PT_RETRANSMIT => EventKind::Retransmit {
                state: Some(tcp_state_name(raw.reason).to_owned()),
            },
            types::pt_kind::PT_DROP => EventKind::Drop {
                reason: self.drop_reasons.name(raw.reason),
                iface: (raw.ifindex != 0 && raw.netns == self.own_netns)
                    .then(|| self.ifname(raw.ifindex)),
            },
            types::pt_kind::PT_PACKET => EventKind::Packet {
                iface: self.ifname(raw.ifindex),
                direction: if u32::from(raw.direction) == types::pt_direction::PT_DIR_EGRESS.0 {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                flags: if i32::from(raw.proto) == libc::IPPROTO_TCP {
                    tcp_flags(raw.tcp_flags)
                } else {
                    String::new()
                },
                len: raw.len,
                first: raw.first != 0,
            },
            _ => return None,
        };
        let proto = if i32::from(raw.proto) == libc::IPPROTO_UDP {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let mut src = SocketAddr::new(ip_from_key(&raw.saddr.addr), raw.sport);
        let mut dst = SocketAddr::new(ip_from_key(&raw.daddr.addr), raw.dport);
        let mut kind = kind;
        if kind.is_connection_event() {
            self.match_accepted(raw, &mut kind, &mut src, &mut dst);
        }
        Some(Event {
            time: self.clock.format(self.unix_ns(raw.ts_ns)),
            node: self.node.clone(),
            proto,
            src,
            dst,
            pid: (raw.has_pid != 0).then_some(raw.pid),
            comm: (raw.has_pid != 0).then(|| comm(&raw.comm)),
            src_name: None,
            dst_name: None,
            kind,
        })
    }

    /// Remembers accepts; orients (and, at close, times) the later events
    /// of accepted connections, whose orientation the kernel only guessed.
    fn match_accepted(
        &mut self,
        raw: &types::pt_event,
        kind: &mut EventKind,
        src: &mut SocketAddr,
        dst: &mut SocketAddr,
    ) {
        if matches!(kind, EventKind::Accept) {
            if self.accepted.len() >= MAX_ACCEPTED {
                self.accepted.clear();
            }
            self.accepted.insert((*src, *dst), raw.ts_ns);
            return;
        }
        if raw.oriented != 0 {
            return;
        }
        let key = if self.accepted.contains_key(&(*src, *dst)) {
            (*src, *dst)
        } else if self.accepted.contains_key(&(*dst, *src)) {
            std::mem::swap(src, dst);
            (*src, *dst)
        } else {
            return;
        };
        if let EventKind::Close { duration_ms, .. } = kind {
            if let Some(start) = self.accepted.remove(&key) {
                *duration_ms = raw.ts_ns.saturating_sub(start) as f64 / 1e6;
            }
        }
    }

    fn ifname(&self, ifindex: u32) -> String {
        self.ifnames
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}

fn comm(raw: &[i8; 16]) -> String {
    c_string(raw.iter().map(|c| *c as u8))
}

/// The bytes of a NUL-terminated C string (a fixed-size kernel or libc
/// field), lossily as UTF-8.
pub(crate) fn c_string(bytes: impl IntoIterator<Item = u8>) -> String {
    let bytes: Vec<u8> = bytes.into_iter().take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// TCP flags as `SYN|ACK`.
pub fn tcp_flags(f: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let mut out = String::new();
    for (bit, name) in NAMES {
        if f & bit != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
        }
    }
    out
}

/// TCP state names (include/net/tcp_states.h; part of the tcp_info ABI).
pub fn tcp_state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// errno names for the ways a TCP open fails (0: closed before any
/// answer, e.g. the caller gave up).
pub fn errno_name(errno: u32) -> String {
    let name = match errno as i32 {
        0 => "ECONNABORTED",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNRESET => "ECONNRESET",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EPIPE => "EPIPE",
        libc::EPROTO => "EPROTO",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_like_tcpdump() {
        assert_eq!(tcp_flags(0x02), "SYN");
        assert_eq!(tcp_flags(0x12), "SYN|ACK");
        assert_eq!(tcp_flags(0x11), "FIN|ACK");
        assert_eq!(tcp_flags(0x04), "RST");
        assert_eq!(tcp_flags(0), "");
    }

    #[test]
    fn accepted_connections_are_oriented_and_timed_from_their_accept() {
        let mut d = Decoder::new("n1".into(), HashMap::new(), 1, DropReasons::default());
        let conn = |kind: types::pt_kind, ts_ns: u64, oriented: u8, forward: bool| {
            // The client 10.1.2.3:45000 opened it to the server 10.1.1.2:8080.
            let (a, ap, b, bp) = ("10.1.2.3", 45000, "10.1.1.2", 8080);
            let (s, sp, t, tp) = if forward {
                (a, ap, b, bp)
            } else {
                (b, bp, a, ap)
            };
            let mut raw = types::pt_event {
                kind: kind.0 as u8,
                proto: libc::IPPROTO_TCP as u8,
                ts_ns,
                oriented,
                sport: sp,
                dport: tp,
                ..Default::default()
            };
            raw.saddr.addr = crate::tracer::ip_key(s.parse().unwrap());
            raw.daddr.addr = crate::tracer::ip_key(t.parse().unwrap());
            raw
        };
        let client: SocketAddr = "10.1.2.3:45000".parse().unwrap();
        let server: SocketAddr = "10.1.1.2:8080".parse().unwrap();
        let accept = d
            .event(&conn(types::pt_kind::PT_ACCEPT, 1_000_000, 1, true))
            .unwrap();
        assert_eq!((accept.src, accept.dst), (client, server));
        // 45000 > 8080: the kernel's port guess has it backwards.
        let est = d
            .event(&conn(types::pt_kind::PT_ESTABLISHED, 1_100_000, 0, false))
            .unwrap();
        assert_eq!((est.src, est.dst), (client, server));
        let close = d
            .event(&conn(types::pt_kind::PT_CLOSE, 4_500_000, 0, false))
            .unwrap();
        assert_eq!((close.src, close.dst), (client, server));
        assert!(
            matches!(close.kind, EventKind::Close { duration_ms, .. } if duration_ms == 3.5),
            "{close:?}"
        );
        // Closed: forgotten, so a guess stays a guess, without a duration.
        let again = d
            .event(&conn(types::pt_kind::PT_CLOSE, 9_000_000, 0, false))
            .unwrap();
        assert_eq!((again.src, again.dst), (server, client));
        assert!(matches!(again.kind, EventKind::Close { duration_ms, .. } if duration_ms == 0.0));
    }

    #[test]
    fn events_convert_to_the_wire_schema() {
        let mut d = Decoder::new(
            "n1".into(),
            HashMap::from([(7, "veth7".into())]),
            1,
            DropReasons::default(),
        );
        let mut raw = types::pt_event {
            kind: types::pt_kind::PT_PACKET.0 as u8,
            proto: libc::IPPROTO_TCP as u8,
            tcp_flags: 0x12,
            ifindex: 7,
            direction: types::pt_direction::PT_DIR_EGRESS.0 as u8,
            sport: 80,
            dport: 40000,
            len: 60,
            ..Default::default()
        };
        raw.saddr.addr = crate::tracer::ip_key("10.1.1.2".parse().unwrap());
        raw.daddr.addr = crate::tracer::ip_key("10.1.2.3".parse().unwrap());
        let e = d.event(&raw).unwrap();
        assert_eq!(e.src, "10.1.1.2:80".parse().unwrap());
        assert_eq!(e.dst, "10.1.2.3:40000".parse().unwrap());
        assert_eq!(
            e.kind,
            EventKind::Packet {
                iface: "veth7".into(),
                direction: Direction::Egress,
                flags: "SYN|ACK".into(),
                len: 60,
                first: false
            }
        );
        raw.kind = types::pt_kind::PT_FAILED.0 as u8;
        raw.reason = libc::ECONNREFUSED as u32;
        raw.has_pid = 1;
        raw.pid = 42;
        raw.comm[..4].copy_from_slice(&[b'c' as i8, b'u' as i8, b'r' as i8, b'l' as i8]);
        let e = d.event(&raw).unwrap();
        assert_eq!(e.comm.as_deref(), Some("curl"));
        assert_eq!(
            e.kind,
            EventKind::Failed {
                error: "ECONNREFUSED".into()
            }
        );
    }
}
