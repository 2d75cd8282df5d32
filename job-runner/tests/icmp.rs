// SPDX-License-Identifier: Apache-2.0
//! ICMP and ICMPv6 errors about traced flows, as the runner reports them:
//! on the flow they quote, with who sent them. A UDP datagram to a closed
//! port, a link with a smaller MTU on the path of a TCP transfer, a
//! datagram whose TTL runs out on the node; over IPv4 and IPv6. Real eBPF
//! in network namespace pods; needs root (CI runs as root).

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use common::*;
use podtrace::event::{Direction, Event, EventKind, Message, Proto};
use podtrace_netns::{Netns, Pod, Shape};

/// The ICMP error events among `lines` about `src -> dst`.
fn icmp_about(lines: &[Message], src: SocketAddr, dst: SocketAddr) -> Vec<&Event> {
    events(lines)
        .filter(|e| matches!(e.kind, EventKind::Icmp { .. }) && e.src == src && e.dst == dst)
        .collect()
}

/// What an ICMP event says: (error, mtu, from, direction, iface).
fn said(e: &Event) -> (&str, Option<u32>, IpAddr, Direction, &str) {
    match &e.kind {
        EventKind::Icmp {
            error,
            mtu,
            from,
            direction,
            iface,
            ..
        } => (error, *mtu, *from, *direction, iface),
        k => panic!("not an icmp event: {k:?}"),
    }
}

/// A UDP socket bound in `ns` to any address of `family`'s, with the
/// unicast TTL (hop limit) `ttl` when given.
fn udp_socket(ns: &Netns, family: Family, ttl: Option<u32>) -> UdpSocket {
    in_netns(ns, move || {
        let any: IpAddr = match family {
            Family::V4 => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let s = UdpSocket::bind((any, 0)).expect("bind");
        match (ttl, family) {
            (None, _) => {}
            (Some(t), Family::V4) => s.set_ttl(t).expect("IP_TTL"),
            (Some(t), Family::V6) => {
                let hops = t as libc::c_int;
                // SAFETY: setsockopt on a socket we own, with a c_int
                // option value of the size given.
                let rc = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::IPPROTO_IPV6,
                        libc::IPV6_UNICAST_HOPS,
                        (&hops as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "IPV6_UNICAST_HOPS");
            }
        }
        s
    })
    .join()
    .unwrap()
}

/// A UDP datagram from the client to a port nobody listens on in the
/// server: the server's kernel answers port unreachable, shown once (both
/// pods traced: where it leaves the server) on the datagram's flow.
fn closed_udp_port(family: Family) {
    require_root();
    let (_cluster, node, server, client) =
        one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    runner.ready();
    let sock = udp_socket(&client.netns, family, None);
    let to = SocketAddr::new(server_ip, 9);
    sock.send_to(b"anyone?", to).expect("send");
    let from = SocketAddr::new(client_ip, sock.local_addr().unwrap().port());
    let ev = runner.expect_event("port unreachable", |e| {
        matches!(e.kind, EventKind::Icmp { .. }) && e.dst == to
    });
    assert_eq!((ev.proto, ev.src), (Proto::Udp, from), "{ev:?}");
    assert_eq!(
        said(&ev),
        (
            "port unreachable",
            None,
            server_ip,
            Direction::Egress,
            server.host_if.as_str()
        ),
        "{ev:?}"
    );
    let lines = runner.stop_clean();
    assert_eq!(icmp_about(&lines, from, to).len(), 1, "{lines:#?}");
    // It lines up with the datagram it is about.
    assert!(
        events(&lines).any(|e| matches!(e.kind, EventKind::Packet { .. })
            && (e.proto, e.src, e.dst) == (Proto::Udp, from, to)),
        "{lines:#?}"
    );
}

#[test]
fn icmp_a_datagram_to_a_closed_port_shows_port_unreachable() {
    closed_udp_port(Family::V4);
}

#[test]
fn icmp_a_datagram_to_a_closed_port_shows_port_unreachable_ipv6() {
    closed_udp_port(Family::V6);
}

/// A TCP listener in `pod` on `ip` that reads one connection to its end:
/// the bytes read.
fn sink(pod: &Pod, ip: IpAddr) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let l = in_netns(&pod.netns, move || {
        TcpListener::bind((ip, 0)).expect("listen")
    })
    .join()
    .unwrap();
    let at = l.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).expect("read");
        all.len()
    });
    (at, reader)
}

/// The server pod's host-side link has a smaller MTU than the pods (as a
/// tunnel or a misconfigured node would): the client's full-size TCP
/// segments (DF set) get `frag needed` (ICMPv6: `packet too big`) with
/// that MTU from the node, on the transfer's flow, where it enters the
/// client. Only the client traced, with the server as its one peer: the
/// node is no peer, the quoted flow is.
fn smaller_mtu_on_the_path(family: Family) {
    require_root();
    let (_cluster, node, server, client) =
        one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    node.netns
        .ip(&["link", "set", &server.host_if, "mtu", "1400"])
        .unwrap();
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &cip, "--peer-ip", &sip]);
    runner.ready();
    let (to, reader) = sink(&server, server_ip);
    const BYTES: usize = 256 * 1024;
    let local = in_netns(&client.netns, move || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect");
        c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(&[7u8; BYTES]).expect("write");
        c.local_addr().unwrap()
    })
    .join()
    .unwrap();
    // Path MTU discovery did its job: everything arrived.
    assert_eq!(reader.join().unwrap(), BYTES);
    let ev = runner.expect_event("the smaller MTU's ICMP error", |e| {
        matches!(e.kind, EventKind::Icmp { .. }) && e.dst == to
    });
    assert_eq!((ev.proto, ev.src), (Proto::Tcp, local), "{ev:?}");
    let (error, mtu, from, direction, iface) = said(&ev);
    let want = match family {
        Family::V4 => "frag needed",
        Family::V6 => "packet too big",
    };
    assert_eq!(
        (error, mtu, direction, iface),
        (
            want,
            Some(1400),
            Direction::Ingress,
            client.host_if.as_str()
        ),
        "{ev:?}"
    );
    assert!(
        from != server_ip && from != client_ip,
        "from the node: {ev:?}"
    );
    let lines = runner.stop_clean();
    let flow = flow_where(summary_of(&lines), |f| {
        f.src == Some(client_ip) && f.dst == Some(to)
    });
    assert!(flow.packets_sent > 0, "{flow:?}");
}

#[test]
fn icmp_a_smaller_mtu_on_the_path_shows_frag_needed_on_the_tcp_flow() {
    smaller_mtu_on_the_path(Family::V4);
}

#[test]
fn icmp_a_smaller_mtu_on_the_path_shows_packet_too_big_on_the_tcp_flow_ipv6() {
    smaller_mtu_on_the_path(Family::V6);
}

/// A datagram sent with TTL (hop limit) 1 to a pod behind the node: the
/// node answers time exceeded, on the datagram's flow, where it enters
/// the client.
fn ttl_runs_out(family: Family) {
    require_root();
    let (_cluster, node, server, client) =
        one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let _listener = udp_listener(&server.netns, server_ip, 5353);
    let cip = client_ip.to_string();
    let mut runner = Runner::start(&node, &["--pod-ip", &cip]);
    runner.ready();
    let sock = udp_socket(&client.netns, family, Some(1));
    let to = SocketAddr::new(server_ip, 5353);
    sock.send_to(b"short-lived", to).expect("send");
    let ev = runner.expect_event("time exceeded", |e| {
        matches!(e.kind, EventKind::Icmp { .. }) && e.dst == to
    });
    let from = SocketAddr::new(client_ip, sock.local_addr().unwrap().port());
    assert_eq!((ev.proto, ev.src), (Proto::Udp, from), "{ev:?}");
    let (error, mtu, sender, direction, iface) = said(&ev);
    assert_eq!(
        (error, mtu, direction, iface),
        (
            "time exceeded",
            None,
            Direction::Ingress,
            client.host_if.as_str()
        ),
        "{ev:?}"
    );
    assert!(sender != server_ip && sender != client_ip, "{ev:?}");
    runner.stop_clean();
}

#[test]
fn icmp_a_ttl_that_runs_out_on_the_node_shows_time_exceeded() {
    ttl_runs_out(Family::V4);
}

#[test]
fn icmp_a_hop_limit_that_runs_out_on_the_node_shows_time_exceeded_ipv6() {
    ttl_runs_out(Family::V6);
}
