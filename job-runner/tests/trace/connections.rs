// SPDX-License-Identifier: Apache-2.0
//! Connections as the runner reports them: the whole lifecycle of a curl to
//! nginx (connect, accept, RTT, close, packets, the summary), a refused
//! connection, UDP, and the summary's counters against the packets shown;
//! over IPv4 and IPv6, in both CNI shapes.

use std::net::{IpAddr, SocketAddr};

use super::common::*;
use podtrace::event::{Direction, End, Event, EventKind, Proto, ResetDirection};
use podtrace_netns::Shape;

/// curl -> nginx on one node with both pods traced: the whole lifecycle,
/// packets on both host-side interfaces, and the summary's counters.
fn lifecycle(shape: Shape, family: Family) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods_of(family, shape, "nginx", "curl");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let _nginx = server.start_nginx(80, None).unwrap();
    let marker_to = SocketAddr::new(server_ip, 5353);
    let _listener = udp_listener(&server.netns, marker_to.ip(), marker_to.port());
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let ready = runner.ready();
    let ifaces: Vec<&str> = ready.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert!(ifaces.contains(&server.host_if.as_str()), "{ready:?}");
    assert!(ifaces.contains(&client.host_if.as_str()), "{ready:?}");
    let kind = if shape == Shape::Routed {
        "veth"
    } else {
        "bridge-port"
    };
    assert_eq!(ready.interfaces[0].kind, kind, "{ready:?}");
    // Its stdout is a pipe here, as in a container: grown so that a burst
    // of events does not put the runner to sleep on every write.
    assert!(stdout_pipe_bytes(runner.pid) >= 1 << 20);

    let (code, size) = curl(&client, &http_url(server_ip, 80), 10);
    assert_eq!(code, "200");
    let server_addr = SocketAddr::new(server_ip, 80);
    let to_server = |e: &Event| e.src.ip() == client_ip && e.dst == server_addr;
    let connect = runner.expect_event("connect", |e| {
        matches!(e.kind, EventKind::Connect) && to_server(e)
    });
    assert_eq!(connect.comm.as_deref(), Some("curl"), "{connect:?}");
    assert!(connect.pid.unwrap_or(0) > 0, "{connect:?}");
    assert_eq!(connect.proto, Proto::Tcp);
    runner.expect_event("accept", |e| {
        matches!(e.kind, EventKind::Accept) && to_server(e)
    });
    let est = runner.expect_event("established with rtt", |e| {
        matches!(e.kind, EventKind::Established { rtt_us } if rtt_us > 0) && to_server(e)
    });
    assert!(est.time.ends_with('Z'));
    // Bytes per direction of the flow whichever end reports the close:
    // the page is server -> client (`bytes_received`) in both.
    runner.expect_event("client close with the page", |e| {
        matches!(e.kind, EventKind::Close { bytes_received, .. } if bytes_received >= size)
            && to_server(e)
            && e.end == Some(End::Client)
            && e.comm.as_deref() == Some("curl")
    });
    // The kernel keeps no state for accepted sockets: the runner orients
    // and times their close from the accept event.
    runner.expect_event("server close, oriented and timed", |e| {
        matches!(e.kind, EventKind::Close { bytes_sent, bytes_received, duration_ms }
            if bytes_received >= size && bytes_sent < size && duration_ms > 0.0)
            && to_server(e)
            && e.end == Some(End::Server)
            && e.comm.is_none()
    });
    for iface in [&server.host_if, &client.host_if] {
        runner.expect_event(&format!("SYN packet on {iface}"), |e| {
            matches!(&e.kind, EventKind::Packet { iface: i, flags, .. } if i == iface && flags == "SYN")
        });
    }
    runner.expect_event("egress packet", |e| {
        matches!(&e.kind, EventKind::Packet { direction: Direction::Egress, flags, .. } if flags == "SYN|ACK")
    });

    // A datagram after both closes: its event comes after anything the
    // closes made the kernel report (one ring buffer, in order), such as
    // a drop when a socket's queue is purged (QUEUE_PURGE).
    udp_send(&client.netns, marker_to, b"marker");
    runner.expect_event("the marker datagram", |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp && e.dst == marker_to
    });
    let lines = runner.stop_clean();
    // A healthy exchange loses no packet, so it reports no drop.
    let drops: Vec<&Event> = events(&lines)
        .filter(|e| matches!(e.kind, EventKind::Drop { .. }))
        .collect();
    assert!(
        drops.is_empty(),
        "a healthy exchange reported drops: {drops:?}"
    );
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f.src == Some(client_ip) && f.dst == Some(server_addr)
    });
    assert_eq!(flow.proto, Some(Proto::Tcp));
    assert_eq!(flow.connections, 1, "{flow:?}");
    assert!(flow.packets_sent >= 3, "{flow:?}");
    assert!(flow.packets_received >= 3, "{flow:?}");
    assert!(flow.bytes_received >= size, "{flow:?}");
    assert!(flow.rtt.is_some_and(|r| r.count >= 1), "{flow:?}");
    assert_eq!(flow.drops, 0, "{flow:?}");
    // Nothing of ours is left on the pods' interfaces.
    for iface in [&server.host_if, &client.host_if] {
        let left = attached_to(&node.netns, iface);
        assert!(left.trim().is_empty(), "left on {iface}: {left}");
    }
}

#[test]
fn lifecycle_routed() {
    lifecycle(Shape::Routed, Family::V4);
}

#[test]
fn lifecycle_bridge() {
    lifecycle(Shape::Bridge, Family::V4);
}

#[test]
fn lifecycle_routed_ipv6() {
    lifecycle(Shape::Routed, Family::V6);
}

#[test]
fn lifecycle_bridge_ipv6() {
    lifecycle(Shape::Bridge, Family::V6);
}

/// A refused connection: `failed` ECONNREFUSED on the client, a reset
/// sent by the server's kernel (from Linux 6.10, which reports resets sent
/// without a socket) and received by the client.
fn refused(shape: Shape, family: Family) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods_of(family, shape, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let features = runner
        .ready()
        .features
        .expect("the ready line lists features");
    let (code, _) = curl(&client, &http_url(server_ip, 81), 5);
    assert_eq!(code, "000");
    let dst = SocketAddr::new(server_ip, 81);
    let failed = runner.expect_event("failed", |e| {
        matches!(e.kind, EventKind::Failed { .. }) && e.dst == dst
    });
    assert_eq!(
        failed.kind,
        EventKind::Failed {
            error: Some("ECONNREFUSED".into())
        },
        "{failed:?}"
    );
    assert_eq!(failed.comm.as_deref(), Some("curl"), "{failed:?}");
    assert_eq!(failed.src.ip(), client_ip);
    // One reset, sent by the server's kernel (from Linux 6.10, which
    // reports resets sent without a socket), received by the client.
    let resets: &[(ResetDirection, End)] = if features.reset_without_socket {
        &[
            (ResetDirection::Sent, End::Server),
            (ResetDirection::Received, End::Client),
        ]
    } else {
        &[(ResetDirection::Received, End::Client)]
    };
    for &(direction, end) in resets {
        runner.expect_event(&format!("reset {}", direction.as_str()), |e| {
            e.kind == EventKind::Reset { direction } && e.dst == dst && e.end == Some(end)
        });
    }
    runner.expect_event(
        "RST packet",
        |e| matches!(&e.kind, EventKind::Packet { flags, .. } if flags.contains("RST")),
    );
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| f.dst == Some(dst));
    assert_eq!(flow.failed, 1, "{flow:?}");
    // Server -> client, seen sent and received: counted once.
    assert_eq!((flow.resets_sent, flow.resets_received), (0, 1), "{flow:?}");
    assert_eq!(flow.src, Some(client_ip));
}

#[test]
fn refused_routed() {
    refused(Shape::Routed, Family::V4);
}

#[test]
fn refused_bridge() {
    refused(Shape::Bridge, Family::V4);
}

#[test]
fn refused_routed_ipv6() {
    refused(Shape::Routed, Family::V6);
}

#[test]
fn refused_bridge_ipv6() {
    refused(Shape::Bridge, Family::V6);
}

/// A datagram to a UDP listener shows as a first packet and a UDP flow.
fn udp(shape: Shape, family: Family) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods_of(family, shape, "dns", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let sip = server_ip.to_string();
    let _listener = udp_listener(&server.netns, server_ip, 5353);
    let mut runner = Runner::start(&node, &["--pod-ip", &sip]);
    runner.ready();
    let to = std::net::SocketAddr::new(server_ip, 5353);
    udp_send(&client.netns, to, b"hello");
    let pkt = runner.expect_event("udp packet", |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp && e.dst == to
    });
    assert!(
        matches!(&pkt.kind, EventKind::Packet { first: true, iface, .. } if *iface == server.host_if),
        "{pkt:?}"
    );
    udp_send(&client.netns, to, b"again");
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f.proto == Some(Proto::Udp) && f.dst == Some(to)
    });
    assert_eq!(flow.src, Some(client_ip));
    assert!(flow.packets_sent >= 1, "{flow:?}");
}

#[test]
fn udp_routed() {
    udp(Shape::Routed, Family::V4);
}

#[test]
fn udp_bridge() {
    udp(Shape::Bridge, Family::V4);
}

#[test]
fn udp_routed_ipv6() {
    udp(Shape::Routed, Family::V6);
}

#[test]
fn udp_bridge_ipv6() {
    udp(Shape::Bridge, Family::V6);
}

/// The summary's packet and byte counters of each flow are exactly the
/// packets the runner reported one by one (`--packets`, one traced pod, so
/// every packet at its interface is counted once), also while packets of
/// two flows interleave (each CPU caches the flow it counted last and
/// hands the counts over when the next packet is another flow's).
#[test]
fn flow_counters_match_the_packets_reported() {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(Shape::Routed, "nginx", "cli");
    let _nginx = server.start_nginx(80, None).unwrap();
    let sip = server.ip.to_string();
    let _listener = udp_listener(&server.netns, server.ip.into(), 5353);
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--packets"]);
    runner.ready();
    let udp_to = std::net::SocketAddr::new(server.ip.into(), 5353);
    for _ in 0..3 {
        let (code, _) = curl(&client, &format!("http://{sip}/"), 10);
        assert_eq!(code, "200");
        udp_send(&client.netns, udp_to, b"between");
    }
    let tcp_to = SocketAddr::new(server.ip.into(), 80);
    // A connection's last packet (the client's final ACK) closes the
    // server's socket: after three closes and three datagrams, every
    // packet has been counted and its event written.
    runner.expect_events("server closes", 3, |e| {
        matches!(e.kind, EventKind::Close { .. }) && e.dst == tcp_to
    });
    runner.expect_events("datagrams", 3, |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp
    });
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert_eq!(summary.lost, 0, "{summary:?}");
    let client_ip = IpAddr::from(client.ip);
    for (proto, to) in [(Proto::Tcp, tcp_to), (Proto::Udp, udp_to)] {
        let flow = flow_where(summary, |f| f.proto == Some(proto) && f.dst == Some(to));
        let packets = |forward: bool| -> (u64, u64) {
            events(&lines)
                .filter(|e| e.proto == proto)
                .filter_map(|e| match e.kind {
                    EventKind::Packet { len, .. } => Some((e, len)),
                    _ => None,
                })
                .filter(|(e, _)| {
                    let (ours, theirs) = if forward {
                        (e.src, e.dst)
                    } else {
                        (e.dst, e.src)
                    };
                    ours.ip() == client_ip && theirs == to
                })
                .fold((0, 0), |(n, b), (_, len)| (n + 1, b + u64::from(len)))
        };
        let (sent, sent_bytes) = packets(true);
        let (received, received_bytes) = packets(false);
        assert!(sent >= 3, "{proto}: {sent} packets sent");
        assert_eq!(flow.packets_sent, sent, "{flow:?}");
        assert_eq!(flow.bytes_sent, sent_bytes, "{flow:?}");
        assert_eq!(flow.packets_received, received, "{flow:?}");
        assert_eq!(flow.bytes_received, received_bytes, "{flow:?}");
    }
}
