// SPDX-License-Identifier: Apache-2.0
//! Turns the kernel's `pt_event` into the wire schema's owned [`Event`].

use std::net::{IpAddr, SocketAddr};

use crate::abi::{c_str, ip_from_key, push_tcp_flags, tcp_state_name};
use crate::bpf::types;
use crate::discover::{Discovery, PodIface};
use crate::drop_reason::DropReasons;
use crate::event::{
    Direction, DropSite, End, Event, EventKind, Payload, Proto, ResetDirection, Rfc3339,
};

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
    /// The traced pods, to say which one a drop concerns.
    pods: Vec<PodIface>,
    clock: Rfc3339,
    /// Connections accepted while tracing, (opener, acceptor) → accept
    /// time: the kernel keeps no state for accepted sockets (see `socks`
    /// in shared.bpf.h), so their later events are oriented and timed
    /// from here. Removed at close.
    accepted: foldhash::HashMap<(SocketAddr, SocketAddr), u64>,
    /// The last event of each kind, overwritten by the next (see
    /// [`Decoder::decode`]).
    reuse: [Option<Event>; KIND_SLOTS],
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

/// Now on the kernel's event clock (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).max(0) as u64
}

impl Decoder {
    pub fn new(node: String, found: &Discovery, drop_reasons: DropReasons) -> Self {
        let realtime_offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
        Decoder {
            node,
            realtime_offset,
            drop_reasons,
            ifnames: found.links.iter().map(|(i, n)| (*i, n.clone())).collect(),
            // The kernel's ns.inum is 32 bits.
            own_netns: found.own_netns as u32,
            pods: found.pods.clone(),
            clock: Rfc3339::default(),
            accepted: Default::default(),
            reuse: Default::default(),
        }
    }

    /// Wall-clock nanoseconds of a kernel timestamp.
    pub fn unix_ns(&self, ts_ns: u64) -> u128 {
        (ts_ns as i128 + self.realtime_offset).max(0) as u128
    }

    /// The event, or `None` for a kind this runner does not know.
    pub fn event(&mut self, raw: &types::pt_event) -> Option<Event> {
        self.decode(raw, &[]).cloned()
    }

    /// [`Decoder::event`] without allocating: the event is built in a slot
    /// kept per kind, whose strings are overwritten in place (the runner
    /// decodes every event, on the traced pods' own CPUs under load).
    /// Valid until the next call. `payload`: the packet bytes the record
    /// carried (see `Tracer::ring_buffer`), empty when none.
    pub fn decode(&mut self, raw: &types::pt_event, payload: &[u8]) -> Option<&Event> {
        let unix_ns = self.unix_ns(raw.ts_ns);
        let slot = self.reuse.get_mut(usize::from(raw.kind))?;
        let known = set_kind(
            slot.get_or_insert_with(empty_event),
            raw,
            payload,
            &self.drop_reasons,
            &self.ifnames,
        );
        let ev = slot.as_mut().filter(|_| known)?;
        ev.proto = if i32::from(raw.proto) == libc::IPPROTO_UDP {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        ev.src = SocketAddr::new(ip_from_key(&raw.saddr.addr), raw.sport);
        ev.dst = SocketAddr::new(ip_from_key(&raw.daddr.addr), raw.dport);
        if let EventKind::Drop {
            iface,
            direction,
            at,
            ..
        } = &mut ev.kind
        {
            let site = drop_site(
                &self.pods,
                self.own_netns,
                raw.netns,
                ev.src.ip(),
                ev.dst.ip(),
            );
            *at = site.map(|s| s.at);
            *iface = site.map(|s| s.pod.ifname.clone());
            *direction = site.and_then(|s| s.direction);
        }
        if ev.kind.is_connection_event() {
            ev.end = Some(if raw.by_opener != 0 {
                End::Client
            } else {
                End::Server
            });
            match_accepted(&mut self.accepted, raw, ev);
            // The socket counted its own sent and received: the server's
            // are the flow's the other way round.
            if let (
                Some(End::Server),
                EventKind::Close {
                    bytes_sent,
                    bytes_received,
                    ..
                },
            ) = (ev.end, &mut ev.kind)
            {
                std::mem::swap(bytes_sent, bytes_received);
            }
        } else {
            ev.end = None;
        }
        self.clock.format_into(unix_ns, &mut ev.time);
        set(&mut ev.node, &self.node);
        ev.pid = (raw.has_pid != 0).then_some(raw.pid);
        match (raw.has_pid != 0, &mut ev.comm) {
            (true, Some(c)) => {
                c.clear();
                push_comm(&raw.comm, c);
            }
            (true, c) => *c = Some(comm(&raw.comm)),
            (false, c) => *c = None,
        }
        Some(ev)
    }
}

/// Kinds `pt_event.kind` can hold (enum pt_kind), each with its slot.
const KIND_SLOTS: usize = types::pt_kind::PT_ICMP.0 as usize + 1;

fn empty_event() -> Event {
    let none = SocketAddr::from(([0, 0, 0, 0], 0));
    Event {
        time: String::with_capacity(32),
        node: String::new(),
        proto: Proto::Tcp,
        src: none,
        dst: none,
        pid: None,
        comm: None,
        src_name: None,
        dst_name: None,
        via: None,
        end: None,
        kind: EventKind::Connect,
    }
}

/// `s = v`, reusing `s`'s buffer.
fn set(s: &mut String, v: &str) {
    if s != v {
        s.clear();
        s.push_str(v);
    }
}

/// Sets `e.kind` from the raw event, reusing its strings when it already is
/// of that kind (it is: each kind has its own slot). False for a kind this
/// runner does not know.
fn set_kind(
    e: &mut Event,
    raw: &types::pt_event,
    payload: &[u8],
    drop_reasons: &DropReasons,
    ifnames: &foldhash::HashMap<u32, String>,
) -> bool {
    let ifname = |s: &mut String| match ifnames.get(&raw.ifindex) {
        Some(n) => set(s, n),
        None => *s = format!("if{}", raw.ifindex),
    };
    e.kind = match (types::pt_kind(u32::from(raw.kind)), &mut e.kind) {
        (types::pt_kind::PT_CONNECT, _) => EventKind::Connect,
        (types::pt_kind::PT_ACCEPT, _) => EventKind::Accept,
        (types::pt_kind::PT_ESTABLISHED, _) => EventKind::Established {
            rtt_us: u64::from(raw.rtt_us),
        },
        (types::pt_kind::PT_CLOSE, _) => EventKind::Close {
            duration_ms: raw.duration_ns as f64 / 1e6,
            bytes_sent: raw.bytes_sent,
            bytes_received: raw.bytes_received,
        },
        (types::pt_kind::PT_FAILED, _) => EventKind::Failed {
            error: errno_name(raw.reason),
        },
        (types::pt_kind::PT_RESET_SENT, _) => EventKind::Reset {
            direction: ResetDirection::Sent,
        },
        (types::pt_kind::PT_RESET_RECEIVED, _) => EventKind::Reset {
            direction: ResetDirection::Received,
        },
        (types::pt_kind::PT_RETRANSMIT, _) => EventKind::Retransmit {
            state: Some(tcp_state_name(raw.reason).to_owned()),
        },
        // Where: see `drop_site`, once the addresses are decoded.
        (types::pt_kind::PT_DROP, _) => EventKind::Drop {
            reason: (!drop_reasons.is_empty()).then(|| drop_reasons.name(raw.reason)),
            iface: None,
            direction: None,
            at: None,
            data: (!payload.is_empty()).then(|| Payload(payload.to_vec())),
        },
        // The hot one (every SYN, FIN and RST; every packet with
        // --packets): updated in place.
        (
            types::pt_kind::PT_PACKET,
            EventKind::Packet {
                iface,
                direction,
                flags,
                len,
                first,
                data,
            },
        ) => {
            ifname(iface);
            *direction = direction_of(raw);
            flags.clear();
            if i32::from(raw.proto) == libc::IPPROTO_TCP {
                push_tcp_flags(raw.tcp_flags, flags);
            }
            *len = raw.len;
            *first = raw.first != 0;
            match (payload.is_empty(), data) {
                (true, d) => *d = None,
                (false, Some(d)) => {
                    d.0.clear();
                    d.0.extend_from_slice(payload);
                }
                (false, d) => *d = Some(Payload(payload.to_vec())),
            }
            return true;
        }
        // A few per run: built afresh.
        (types::pt_kind::PT_ICMP, _) => match crate::icmp::decode(raw, payload) {
            Some(icmp) => {
                let mut iface = String::new();
                ifname(&mut iface);
                EventKind::Icmp {
                    error: icmp.error,
                    mtu: icmp.mtu,
                    from: icmp.from,
                    icmp_type: icmp.icmp_type,
                    icmp_code: icmp.icmp_code,
                    iface,
                    direction: direction_of(raw),
                }
            }
            None => return false,
        },
        (types::pt_kind::PT_PACKET, _) => {
            e.kind = EventKind::Packet {
                iface: String::new(),
                direction: Direction::Ingress,
                flags: String::new(),
                len: 0,
                first: false,
                data: None,
            };
            return set_kind(e, raw, payload, drop_reasons, ifnames);
        }
        _ => return false,
    };
    true
}

/// A packet's (or ICMP error's) way across a pod's host-side interface.
fn direction_of(raw: &types::pt_event) -> Direction {
    if u32::from(raw.direction) == types::pt_direction::PT_DIR_EGRESS.0 {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// Which traced pod a drop concerns, and how.
#[derive(Debug, Clone, Copy)]
struct Site<'a> {
    pod: &'a PodIface,
    direction: Option<Direction>,
    at: DropSite,
}

/// Places a drop in the namespace `netns` of a packet `src` -> `dst`.
///
/// From the namespace and the addresses only, never from the device the
/// kernel held the packet on: for one and the same drop that is the
/// sending pod's veth when routed, the bridge or the receiving port when
/// bridged, or a pod's own eth0. In a pod's namespace: that pod, `ingress`
/// when the packet was addressed to it, `egress` when it came from it. On
/// the node: the pod it was on its way into, else the pod it came out of.
/// `None` when it is neither (nothing is guessed).
fn drop_site<'a>(
    pods: &'a [PodIface],
    own_netns: u32,
    netns: u32,
    src: IpAddr,
    dst: IpAddr,
) -> Option<Site<'a>> {
    let by_ip = |ip| pods.iter().find(|p| p.pod_ip == ip);
    if netns == own_netns {
        let (pod, direction) = match (by_ip(dst), by_ip(src)) {
            (Some(p), _) => (p, Direction::Ingress),
            (None, Some(p)) => (p, Direction::Egress),
            (None, None) => return None,
        };
        return Some(Site {
            pod,
            direction: Some(direction),
            at: DropSite::Node,
        });
    }
    let in_pod = |p: &&PodIface| p.netns as u32 == netns;
    let pod = pods.iter().find(in_pod)?;
    // A pod may own several addresses (dual stack): any of them.
    let owns = |ip| pods.iter().filter(in_pod).any(|p| p.pod_ip == ip);
    let direction = if owns(dst) {
        Some(Direction::Ingress)
    } else if owns(src) {
        Some(Direction::Egress)
    } else {
        None
    };
    Some(Site {
        pod,
        direction,
        at: DropSite::Pod,
    })
}

/// Remembers accepts; orients (and, at close, times) the later events of
/// accepted connections, whose orientation the kernel only guessed.
fn match_accepted(
    accepted: &mut foldhash::HashMap<(SocketAddr, SocketAddr), u64>,
    raw: &types::pt_event,
    e: &mut Event,
) {
    if matches!(e.kind, EventKind::Accept) {
        if accepted.len() >= MAX_ACCEPTED {
            accepted.clear();
        }
        accepted.insert((e.src, e.dst), raw.ts_ns);
        return;
    }
    if raw.oriented != 0 {
        return;
    }
    let key = if accepted.contains_key(&(e.src, e.dst)) {
        (e.src, e.dst)
    } else if accepted.contains_key(&(e.dst, e.src)) {
        // The guess took the local end for the other one.
        std::mem::swap(&mut e.src, &mut e.dst);
        e.end = e.end.map(End::other);
        (e.src, e.dst)
    } else {
        return;
    };
    if let EventKind::Close { duration_ms, .. } = &mut e.kind {
        if let Some(start) = accepted.remove(&key) {
            *duration_ms = raw.ts_ns.saturating_sub(start) as f64 / 1e6;
        }
    }
}

fn comm(raw: &[i8; 16]) -> String {
    let mut s = String::new();
    push_comm(raw, &mut s);
    s
}

fn push_comm(raw: &[i8; 16], out: &mut String) {
    out.push_str(&c_str(&raw.map(|c| c as u8)));
}

/// errno names for the ways a TCP open fails; none for 0 (no error
/// recorded: closed before any answer, e.g. the caller gave up).
pub fn errno_name(errno: u32) -> Option<String> {
    let name = match errno as i32 {
        0 => return None,
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
        _ => return Some(format!("errno {errno}")),
    };
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_are_oriented_and_timed_from_their_accept() {
        let mut d = Decoder::new("n1".into(), &node(Vec::new()), DropReasons::default());
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
                // All from the server's socket: the opener's end when it
                // is (wrongly) `saddr`.
                by_opener: u8::from(!forward),
                bytes_sent: 854,
                bytes_received: 73,
                sport: sp,
                dport: tp,
                ..Default::default()
            };
            raw.saddr.addr = crate::abi::ip_key(s.parse().unwrap());
            raw.daddr.addr = crate::abi::ip_key(t.parse().unwrap());
            raw
        };
        let client: SocketAddr = "10.1.2.3:45000".parse().unwrap();
        let server: SocketAddr = "10.1.1.2:8080".parse().unwrap();
        let accept = d
            .event(&conn(types::pt_kind::PT_ACCEPT, 1_000_000, 1, true))
            .unwrap();
        assert_eq!((accept.src, accept.dst), (client, server));
        assert_eq!(accept.end, Some(End::Server));
        // 45000 > 8080: the kernel's port guess has it backwards.
        let est = d
            .event(&conn(types::pt_kind::PT_ESTABLISHED, 1_100_000, 0, false))
            .unwrap();
        assert_eq!((est.src, est.dst), (client, server));
        let close = d
            .event(&conn(types::pt_kind::PT_CLOSE, 4_500_000, 0, false))
            .unwrap();
        assert_eq!((close.src, close.dst), (client, server));
        assert_eq!((est.end, close.end), (Some(End::Server), Some(End::Server)));
        // The server sent the 854 bytes: client -> server is the 73.
        assert_eq!(
            close.kind,
            EventKind::Close {
                duration_ms: 3.5,
                bytes_sent: 73,
                bytes_received: 854
            }
        );
        // Closed: forgotten, so a guess stays a guess, without a duration.
        let again = d
            .event(&conn(types::pt_kind::PT_CLOSE, 9_000_000, 0, false))
            .unwrap();
        assert_eq!((again.src, again.dst), (server, client));
        assert!(matches!(again.kind, EventKind::Close { duration_ms, .. } if duration_ms == 0.0));
    }

    /// The node's namespace is 1; `pods` hang off it.
    fn node(pods: Vec<PodIface>) -> Discovery {
        Discovery {
            own_netns: 1,
            pods,
            links: [(7, "veth7".to_owned())].into(),
        }
    }

    fn veth7_decoder() -> Decoder {
        Decoder::new("n1".into(), &node(Vec::new()), DropReasons::default())
    }

    fn syn_ack_on_veth7() -> types::pt_event {
        types::pt_event {
            kind: types::pt_kind::PT_PACKET.0 as u8,
            proto: libc::IPPROTO_TCP as u8,
            tcp_flags: 0x12,
            ifindex: 7,
            len: 60,
            ..Default::default()
        }
    }

    #[test]
    fn a_reused_slot_keeps_nothing_of_the_last_event() {
        let mut d = veth7_decoder();
        let mut raw = types::pt_event {
            first: 1,
            has_pid: 1,
            pid: 42,
            ..syn_ack_on_veth7()
        };
        raw.comm[..4].copy_from_slice(&[b'c' as i8, b'u' as i8, b'r' as i8, b'l' as i8]);
        let first = d.event(&raw).unwrap();
        assert_eq!(first.comm.as_deref(), Some("curl"));
        // The same kind again (the same slot), everything different.
        raw.proto = libc::IPPROTO_UDP as u8;
        raw.ifindex = 9;
        raw.len = 28;
        raw.first = 0;
        raw.has_pid = 0;
        raw.ts_ns += 1_500_000_000;
        let second = d.decode(&raw, &[]).unwrap();
        assert_eq!(second.proto, Proto::Udp);
        assert_eq!((second.pid, second.comm.as_deref()), (None, None));
        assert_eq!(
            second.kind,
            EventKind::Packet {
                iface: "if9".into(),
                direction: Direction::Ingress,
                flags: String::new(),
                len: 28,
                first: false,
                data: None
            }
        );
        assert_ne!(second.time, first.time);
        assert_eq!(second.node, "n1");
        // Another kind in between leaves the packet slot as it was.
        raw.kind = types::pt_kind::PT_ESTABLISHED.0 as u8;
        raw.rtt_us = 9;
        let est = d.decode(&raw, &[]).unwrap();
        assert_eq!(est.kind, EventKind::Established { rtt_us: 9 });
    }

    #[test]
    fn packet_bytes_go_with_their_event_only() {
        let mut d = veth7_decoder();
        let raw = syn_ack_on_veth7();
        let data = |e: &Event| match &e.kind {
            EventKind::Packet { data, .. } => data.clone(),
            k => panic!("{k:?}"),
        };
        let with = d.decode(&raw, b"frame one").unwrap();
        assert_eq!(data(with), Some(Payload(b"frame one".to_vec())));
        let shorter = d.decode(&raw, b"two").unwrap();
        assert_eq!(data(shorter), Some(Payload(b"two".to_vec())));
        // The same slot, a record without bytes: none left over.
        let without = d.decode(&raw, &[]).unwrap();
        assert_eq!(data(without), None);
    }

    #[test]
    fn drops_name_the_pod_interface_its_direction_and_where() {
        use crate::discover::IfaceKind;
        // Server 10.1.1.2 (namespace 20, host side cali2), client 10.1.1.3
        // (namespace 30, cali3); the node is namespace 1.
        let pod = |ip: &str, ifname: &str, netns| PodIface {
            pod_ip: ip.parse().unwrap(),
            ifname: ifname.into(),
            ifindex: 0,
            kind: IfaceKind::Veth,
            netns,
        };
        let mut d = Decoder::new(
            "n1".into(),
            &node(vec![
                pod("10.1.1.2", "cali2", 20),
                pod("10.1.1.3", "cali3", 30),
            ]),
            DropReasons::default(),
        );
        let mut drop = |netns, ifindex, src: &str, dst: &str| {
            let mut raw = types::pt_event {
                kind: types::pt_kind::PT_DROP.0 as u8,
                proto: libc::IPPROTO_TCP as u8,
                netns,
                ifindex,
                ..Default::default()
            };
            raw.saddr.addr = crate::abi::ip_key(src.parse().unwrap());
            raw.daddr.addr = crate::abi::ip_key(dst.parse().unwrap());
            match d.event(&raw).unwrap().kind {
                EventKind::Drop {
                    iface,
                    direction,
                    at,
                    ..
                } => (iface, direction, at),
                k => panic!("{k:?}"),
            }
        };
        let (ingress, egress) = (Some(Direction::Ingress), Some(Direction::Egress));
        let (pod, on_node) = (Some(DropSite::Pod), Some(DropSite::Node));
        let (cali2, cali3) = (Some("cali2".to_owned()), Some("cali3".to_owned()));
        let (cli, srv, far) = ("10.1.1.3", "10.1.1.2", "10.9.9.9");
        #[rustfmt::skip]
        let cases = [
            ("in the server (its input chain, no socket)", 20, 2, cli, srv, (cali2.clone(), ingress, pod)),
            ("in the client (its output chain)", 30, 0, cli, srv, (cali3.clone(), egress, pod)),
            // Whatever device it was on: the client's veth when routed,
            // the bridge or the server's port when bridged.
            ("on the node, no device", 1, 0, cli, srv, (cali2.clone(), ingress, on_node)),
            ("on the node, a device", 1, 7, cli, srv, (cali2.clone(), ingress, on_node)),
            ("on the node, to elsewhere", 1, 7, cli, far, (cali3.clone(), egress, on_node)),
            ("in a pod, neither address its own", 30, 0, far, far, (cali3, None, pod)),
            ("on the node, no traced pod", 1, 7, far, far, (None, None, None)),
            ("in a namespace not ours", 40, 7, cli, srv, (None, None, None)),
        ];
        for (what, netns, dev, src, dst, want) in cases {
            assert_eq!(drop(netns, dev, src, dst), want, "{what}");
        }
    }

    #[test]
    fn events_convert_to_the_wire_schema() {
        let mut d = veth7_decoder();
        let mut raw = types::pt_event {
            direction: types::pt_direction::PT_DIR_EGRESS.0 as u8,
            sport: 80,
            dport: 40000,
            ..syn_ack_on_veth7()
        };
        raw.saddr.addr = crate::abi::ip_key("10.1.1.2".parse().unwrap());
        raw.daddr.addr = crate::abi::ip_key("10.1.2.3".parse().unwrap());
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
                first: false,
                data: None
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
                error: Some("ECONNREFUSED".into())
            }
        );
    }
}
