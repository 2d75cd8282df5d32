// SPDX-License-Identifier: Apache-2.0
use super::*;
use crate::event::Rtt;

const CLIENT: &str = "10.0.1.2:40000";
const SERVER: &str = "10.0.2.3:80";

fn ev(kind: EventKind, src: &str, dst: &str, end: Option<End>) -> Event {
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
        via: None,
        end,
        kind,
    }
}

/// A connection event from `end`'s socket.
fn conn(kind: EventKind, end: End) -> Event {
    ev(kind, CLIENT, SERVER, Some(end))
}

fn packet(src: &str, dst: &str, direction: Direction, flags: &str, len: u32) -> Event {
    ev(
        EventKind::Packet {
            iface: "veth".into(),
            direction,
            flags: flags.into(),
            len,
            first: false,
            data: None,
        },
        src,
        dst,
        None,
    )
}

fn rtt(samples: &[u64]) -> Option<Rtt> {
    let mut r = Rtt::default();
    samples.iter().for_each(|s| r.add(*s));
    Some(r)
}

fn key() -> FlowKey {
    FlowKey {
        proto: Proto::Tcp,
        client: "10.0.1.2".parse().unwrap(),
        server: SERVER.parse().unwrap(),
    }
}

fn add_counters(f: &mut Flows, c: Counters) {
    let k = key();
    f.add_counters(k.proto, k.client, k.server, c);
}

fn flow(f: FlowSummary) -> FlowSummary {
    FlowSummary {
        proto: Some(Proto::Tcp),
        src: Some(key().client),
        dst: Some(key().server),
        ..f
    }
}

#[test]
fn each_counter_follows_its_merge_rule() {
    // What the client's node and the server's node report of one flow.
    let client_node = flow(FlowSummary {
        connections: 10,
        failed: 2,
        packets_sent: 100,
        bytes_sent: 5000,
        packets_received: 80,
        bytes_received: 90_000,
        retransmits_sent: 55,
        retransmits_received: 0,
        resets_sent: 1,
        resets_received: 3,
        drops: 4,
        rtt: rtt(&[100, 300]),
        src_name: Some("default/curl-demo".into()),
        ..Default::default()
    });
    let server_node = flow(FlowSummary {
        connections: 8,
        failed: 0,
        packets_sent: 97,
        bytes_sent: 4900,
        packets_received: 80,
        bytes_received: 90_000,
        retransmits_sent: 0,
        retransmits_received: 3,
        resets_sent: 1,
        resets_received: 3,
        drops: 1,
        rtt: rtt(&[20]),
        dst_name: Some("default/nginx-demo".into()),
        ..Default::default()
    });
    for order in [
        [client_node.clone(), server_node.clone()],
        [server_node.clone(), client_node.clone()],
    ] {
        let merged = merge(order.iter().map(std::slice::from_ref));
        assert_eq!(merged.len(), 1);
        let m = &merged[0];
        // The same connections, packets and resets, seen from both ends.
        assert_eq!((m.connections, m.failed), (10, 2));
        assert_eq!((m.packets_sent, m.bytes_sent), (100, 5000));
        assert_eq!((m.packets_received, m.bytes_received), (80, 90_000));
        assert_eq!((m.resets_sent, m.resets_received), (1, 3));
        // Each retransmit, drop and RTT sample is seen by one kernel only.
        assert_eq!((m.retransmits_sent, m.retransmits_received), (55, 3));
        assert_eq!(m.retransmits(), 58);
        assert_eq!(m.drops, 5);
        let r = m.rtt.unwrap();
        assert_eq!((r.count, r.min_us, r.max_us, r.avg_us()), (3, 20, 300, 140));
        assert_eq!(m.src_name.as_deref(), Some("default/curl-demo"));
        assert_eq!(m.dst_name.as_deref(), Some("default/nginx-demo"));
    }
}

#[test]
fn merged_flows_are_busiest_first() {
    let quiet = FlowSummary {
        dst: Some("10.0.2.3:53".parse().unwrap()),
        packets_sent: 1,
        ..flow(FlowSummary::default())
    };
    let busy = flow(FlowSummary {
        packets_sent: 9,
        ..Default::default()
    });
    let merged = merge([&[quiet.clone()][..], &[busy.clone()][..]]);
    assert_eq!(merged, vec![busy, quiet]);
}

/// Both ends of one connection traced on one node, as the runner sees them
/// (packets from the kernel's counters).
#[test]
fn both_ends_on_one_node_count_each_thing_once() {
    let mut f = Flows::default();
    f.record(&conn(EventKind::Connect, End::Client));
    f.record(&conn(EventKind::Accept, End::Server));
    f.record(&conn(EventKind::Established { rtt_us: 10 }, End::Client));
    f.record(&conn(EventKind::Established { rtt_us: 30 }, End::Server));
    for _ in 0..2 {
        f.record(&conn(EventKind::Retransmit { state: None }, End::Client));
    }
    f.record(&conn(EventKind::Retransmit { state: None }, End::Server));
    // One reset, from the server: sent there, received by the client.
    f.record(&conn(
        EventKind::Reset {
            direction: ResetDirection::Sent,
        },
        End::Server,
    ));
    f.record(&conn(
        EventKind::Reset {
            direction: ResetDirection::Received,
        },
        End::Client,
    ));
    // Packets are the kernel's: their events are not counted again.
    f.record(&packet(CLIENT, SERVER, Direction::Egress, "SYN", 60));
    add_counters(
        &mut f,
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
    let m = &out[0];
    assert_eq!(m.connections, 1);
    assert_eq!((m.retransmits_sent, m.retransmits_received), (2, 1));
    assert_eq!((m.resets_sent, m.resets_received), (0, 1));
    assert_eq!(m.rtt.unwrap().avg_us(), 20);
    assert_eq!(
        (
            m.packets_sent,
            m.bytes_sent,
            m.packets_received,
            m.bytes_received
        ),
        (6, 400, 5, 1200)
    );
    assert_eq!(m.drops, 1);
    assert_eq!((m.src, m.dst), (Some(key().client), Some(key().server)));
}

#[test]
fn counts_land_in_the_flows_direction_whichever_end_reports_them() {
    // The server's end alone: its reset and retransmit go server -> client.
    let mut f = Flows::default();
    f.record(&conn(
        EventKind::Reset {
            direction: ResetDirection::Sent,
        },
        End::Server,
    ));
    f.record(&conn(
        EventKind::Reset {
            direction: ResetDirection::Received,
        },
        End::Server,
    ));
    f.record(&conn(EventKind::Retransmit { state: None }, End::Server));
    let m = &f.finish()[0];
    assert_eq!((m.resets_sent, m.resets_received), (1, 1));
    assert_eq!((m.retransmits_sent, m.retransmits_received), (0, 1));
}

/// The plugin's fallback for a node whose summary never came: everything
/// from the events, packets included.
#[test]
fn packet_events_count_each_packet_once_in_its_direction() {
    let mut f = Flows::from_packet_events();
    // The SYN leaves the client's pod and enters the server's (both traced
    // here); the SYN|ACK comes back; the request leaves the client only.
    f.record(&packet(CLIENT, SERVER, Direction::Egress, "SYN", 60));
    f.record(&packet(CLIENT, SERVER, Direction::Ingress, "SYN", 60));
    f.record(&packet(SERVER, CLIENT, Direction::Egress, "SYN|ACK", 60));
    f.record(&packet(SERVER, CLIENT, Direction::Ingress, "SYN|ACK", 60));
    f.record(&packet(CLIENT, SERVER, Direction::Egress, "PSH|ACK", 130));
    f.record(&ev(
        EventKind::Drop {
            reason: Some("NETFILTER_DROP".into()),
            iface: None,
            direction: None,
            at: None,
            data: None,
        },
        SERVER,
        CLIENT,
        None,
    ));
    // A server-side close: its bytes are not the packets' and are not
    // booked (the old tally added the server's "sent" to client -> server).
    f.record(&conn(
        EventKind::Close {
            duration_ms: 1.0,
            bytes_sent: 73,
            bytes_received: 854,
        },
        End::Server,
    ));
    let out = f.finish();
    assert_eq!(out.len(), 1, "{out:?}");
    let m = &out[0];
    assert_eq!((m.src, m.dst), (Some(key().client), Some(key().server)));
    assert_eq!((m.packets_sent, m.bytes_sent), (2, 190));
    assert_eq!((m.packets_received, m.bytes_received), (1, 60));
    assert_eq!(m.drops, 1);
}

#[test]
fn a_packet_without_a_known_flow_is_oriented_by_its_flags() {
    let mut f = Flows::from_packet_events();
    // The SYN|ACK's source is the server, though its port is the higher.
    f.record(&packet(
        "10.0.2.3:8080",
        "10.0.1.2:80",
        Direction::Egress,
        "SYN|ACK",
        60,
    ));
    let m = &f.finish()[0];
    assert_eq!(m.dst, Some("10.0.2.3:8080".parse().unwrap()));
    assert_eq!(m.packets_received, 1);
    // Runner flows take packets from the kernel only.
    let mut runner = Flows::default();
    runner.record(&packet(CLIENT, SERVER, Direction::Egress, "SYN", 60));
    assert!(runner.finish().is_empty());
}

#[test]
fn udp_flows_count_one_connection() {
    let mut f = Flows::from_packet_events();
    let mut p = packet("10.0.1.2:5353", "10.0.9.9:53", Direction::Egress, "", 40);
    p.proto = Proto::Udp;
    f.record(&p);
    let m = &f.finish()[0];
    assert_eq!((m.connections, m.packets_sent), (1, 1));
    assert_eq!(m.dst, Some("10.0.9.9:53".parse().unwrap()));
}
