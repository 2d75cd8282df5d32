// SPDX-License-Identifier: Apache-2.0
//! `--snaplen`: the bytes of each packet the kernel copies into its event,
//! against real curl and nginx in network namespace pods; over IPv4 and
//! IPv6. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use podtrace::event::{Event, EventKind, Payload, ETH_HLEN};
use podtrace_netns::Shape;

/// The packet events of one curl to nginx over `family`, traced with
/// `extra` flags.
fn packets_of_one_request(family: Family, extra: &[&str], path: &str) -> Vec<Event> {
    require_root();
    let (_cluster, node, server, client) =
        one_node_two_pods_of(family, Shape::Routed, "nginx", "curl");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut args = vec!["--pod-ip", &sip, "--pod-ip", &cip, "--packets"];
    args.extend_from_slice(extra);
    let mut runner = Runner::start(&node, &args);
    runner.ready();
    let url = format!("http://{}{path}", SocketAddr::new(server_ip, 80));
    let (code, _) = curl(&client, &url, 10);
    assert_eq!(code, "404", "nginx answers the made-up path");
    // The client's FIN reaches the server's interface after the request.
    runner.expect_event("the client's FIN at the server", |e| {
        matches!(&e.kind, EventKind::Packet { iface, flags, .. }
            if *iface == server.host_if && flags.contains("FIN"))
            && e.src.ip() == client_ip
    });
    let lines = runner.stop_clean();
    let packets: Vec<Event> = events(&lines)
        .filter(|e| matches!(e.kind, EventKind::Packet { .. }))
        .cloned()
        .collect();
    assert!(packets.len() >= 10, "{packets:?}");
    packets
}

fn parts(e: &Event) -> (u32, Option<&Payload>) {
    match &e.kind {
        EventKind::Packet { len, data, .. } => (*len, data.as_ref()),
        k => unreachable!("{k:?}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The EtherType of `family`'s packets.
fn ethertype(family: Family) -> [u8; 2] {
    match family {
        Family::V4 => [0x08, 0x00],
        Family::V6 => [0x86, 0xdd],
    }
}

/// What the IP header after a frame's Ethernet header says: (source,
/// destination, the IP packet's length, the IP header's length). These
/// tests' packets have no IPv4 options or IPv6 extension headers.
fn ip_header(frame: &[u8]) -> (IpAddr, IpAddr, usize, usize) {
    let ip = &frame[ETH_HLEN as usize..];
    let be16 = |at: usize| usize::from(u16::from_be_bytes([ip[at], ip[at + 1]]));
    let v6 = |at: usize| {
        IpAddr::from(Ipv6Addr::from(
            <[u8; 16]>::try_from(&ip[at..at + 16]).unwrap(),
        ))
    };
    match [frame[12], frame[13]] {
        [0x08, 0x00] => (
            Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]).into(),
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]).into(),
            be16(2),
            usize::from(ip[0] & 0x0f) * 4,
        ),
        [0x86, 0xdd] => (v6(8), v6(24), 40 + be16(4), 40),
        t => panic!("not an IP packet: EtherType {t:02x?}"),
    }
}

fn whole_packets(family: Family) {
    let path = "/podtrace-payload-check";
    let packets = packets_of_one_request(family, &["--snaplen", "0"], path);
    let request_line = format!("GET {path} HTTP/1.1\r\n");
    let mut seen_request = 0;
    for e in &packets {
        let (len, data) = parts(e);
        let data = data.unwrap_or_else(|| panic!("a packet without its bytes: {e:?}"));
        assert_eq!(data.0.len() as u32, len + ETH_HLEN, "whole frame: {e:?}");
        // The family's IP header after the Ethernet header, with the
        // event's addresses and length.
        assert_eq!(data.0[12..14], ethertype(family), "{e:?}");
        let (src, dst, ip_len, _) = ip_header(&data.0);
        assert_eq!((src, dst), (e.src.ip(), e.dst.ip()), "{e:?}");
        assert_eq!(ip_len as u32, len, "{e:?}");
        if contains(&data.0, request_line.as_bytes()) {
            seen_request += 1;
        }
    }
    // Once leaving the client, once entering the server.
    assert_eq!(seen_request, 2, "the request line in the captured bytes");
}

#[test]
fn whole_packets_carry_what_was_sent() {
    whole_packets(Family::V4);
}

#[test]
fn whole_packets_carry_what_was_sent_ipv6() {
    whole_packets(Family::V6);
}

/// `--snaplen 60` cuts each frame at 60 bytes (the Ethernet header
/// included); without `--snaplen` no bytes are copied.
fn snaplen_bounds(family: Family) {
    let packets = packets_of_one_request(family, &["--snaplen", "60"], "/short");
    for e in &packets {
        let (len, data) = parts(e);
        let data = data.unwrap_or_else(|| panic!("a packet without its bytes: {e:?}"));
        assert_eq!(data.0.len() as u32, (len + ETH_HLEN).min(60), "{e:?}");
        assert_eq!(data.0[12..14], ethertype(family), "{e:?}");
    }
    assert!(
        packets.iter().any(|e| parts(e).0 + ETH_HLEN > 60),
        "some packet was cut"
    );
    let packets = packets_of_one_request(family, &[], "/none");
    assert!(
        packets.iter().all(|e| parts(e).1.is_none()),
        "bytes without --snaplen: {packets:?}"
    );
}

#[test]
fn snaplen_bounds_the_bytes_and_none_are_copied_without_it() {
    snaplen_bounds(Family::V4);
}

#[test]
fn snaplen_bounds_the_bytes_and_none_are_copied_without_it_ipv6() {
    snaplen_bounds(Family::V6);
}

/// A SYN to a closed port dies in the server's kernel (NO_SOCKET): its
/// drop event carries the packet, behind an Ethernet header of zeros.
fn dropped_syn(family: Family) {
    require_root();
    let (_cluster, node, server, client) =
        one_node_two_pods_of(family, Shape::Routed, "nginx", "curl");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(
        &node,
        &["--pod-ip", &sip, "--pod-ip", &cip, "--snaplen", "0"],
    );
    // Before Linux 5.17 the kernel gives no reason, and none is made up.
    let reasons = runner.ready().features.is_some_and(|f| f.drop_reasons);
    let (code, _) = curl(&client, &http_url(server_ip, 81), 5);
    assert_eq!(code, "000", "refused");
    let drop = runner.expect_event("the SYN's drop", |e| {
        matches!(&e.kind, EventKind::Drop { reason, .. }
            if reason.as_deref() == reasons.then_some("NO_SOCKET"))
            && e.dst.port() == 81
    });
    runner.stop_clean();
    let EventKind::Drop {
        data: Some(Payload(data)),
        ..
    } = &drop.kind
    else {
        panic!("a drop without its bytes: {drop:?}")
    };
    assert_eq!(data[..12], [0; 12], "{drop:?}");
    assert_eq!(data[12..14], ethertype(family), "{drop:?}");
    let (src, dst, ip_len, ip_hlen) = ip_header(data);
    assert_eq!((src, dst), (client_ip, server_ip), "{drop:?}");
    // The whole SYN: IP header, TCP header with options, no payload.
    assert_eq!(data.len(), ETH_HLEN as usize + ip_len, "{drop:?}");
    assert_eq!(
        data[ETH_HLEN as usize + ip_hlen + 13] & 0x12,
        0x02,
        "a SYN: {drop:?}"
    );
}

#[test]
fn dropped_packets_carry_their_bytes() {
    dropped_syn(Family::V4);
}

#[test]
fn dropped_packets_carry_their_bytes_ipv6() {
    dropped_syn(Family::V6);
}
