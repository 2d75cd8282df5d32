// SPDX-License-Identifier: Apache-2.0
//! `--snaplen`: the bytes of each packet the kernel copies into its event,
//! against real curl and nginx in network namespace pods. Needs root.

mod common;

use std::net::IpAddr;

use common::*;
use podtrace::event::{Event, EventKind, Payload, ETH_HLEN};
use podtrace_netns::Shape;

/// The packet events of one curl to nginx, traced with `extra` flags.
fn packets_of_one_request(extra: &[&str], path: &str) -> Vec<Event> {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(Shape::Routed, "nginx", "curl");
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut args = vec!["--pod-ip", &sip, "--pod-ip", &cip, "--packets"];
    args.extend_from_slice(extra);
    let mut runner = Runner::start(&node, &args);
    runner.ready();
    let (code, _) = curl(&client, &format!("http://{sip}{path}"), 10);
    assert_eq!(code, "404", "nginx answers the made-up path");
    // The client's FIN reaches the server's interface after the request.
    runner.expect_event("the client's FIN at the server", |e| {
        matches!(&e.kind, EventKind::Packet { iface, flags, .. }
            if *iface == server.host_if && flags.contains("FIN"))
            && e.src.ip() == IpAddr::from(client.ip)
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

#[test]
fn whole_packets_carry_what_was_sent() {
    let path = "/podtrace-payload-check";
    let packets = packets_of_one_request(&["--snaplen", "0"], path);
    let request_line = format!("GET {path} HTTP/1.1\r\n");
    let mut seen_request = 0;
    for e in &packets {
        let (len, data) = parts(e);
        let data = data.unwrap_or_else(|| panic!("a packet without its bytes: {e:?}"));
        assert_eq!(data.0.len() as u32, len + ETH_HLEN, "whole frame: {e:?}");
        // IPv4 after the Ethernet header, with the event's addresses.
        assert_eq!(data.0[12..14], [0x08, 0x00], "{e:?}");
        assert_eq!(data.0[26..30], octets(e.src.ip()), "{e:?}");
        assert_eq!(data.0[30..34], octets(e.dst.ip()), "{e:?}");
        if contains(&data.0, request_line.as_bytes()) {
            seen_request += 1;
        }
    }
    // Once leaving the client, once entering the server.
    assert_eq!(seen_request, 2, "the request line in the captured bytes");
}

#[test]
fn snaplen_bounds_the_bytes_and_none_are_copied_without_it() {
    let packets = packets_of_one_request(&["--snaplen", "60"], "/short");
    for e in &packets {
        let (len, data) = parts(e);
        let data = data.unwrap_or_else(|| panic!("a packet without its bytes: {e:?}"));
        assert_eq!(data.0.len() as u32, (len + ETH_HLEN).min(60), "{e:?}");
    }
    assert!(
        packets.iter().any(|e| parts(e).0 + ETH_HLEN > 60),
        "some packet was cut"
    );
    let packets = packets_of_one_request(&[], "/none");
    assert!(
        packets.iter().all(|e| parts(e).1.is_none()),
        "bytes without --snaplen: {packets:?}"
    );
}

/// A SYN to a closed port dies in the server's kernel (NO_SOCKET): its
/// drop event carries the packet, behind an Ethernet header of zeros.
#[test]
fn dropped_packets_carry_their_bytes() {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(Shape::Routed, "nginx", "curl");
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(
        &node,
        &["--pod-ip", &sip, "--pod-ip", &cip, "--snaplen", "0"],
    );
    // Before Linux 5.17 the kernel gives no reason, and none is made up.
    let reasons = runner.ready().features.is_some_and(|f| f.drop_reasons);
    let (code, _) = curl(&client, &format!("http://{sip}:81/"), 5);
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
    assert_eq!(data[..14], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
    assert_eq!(data[26..30], octets(drop.src.ip()), "{drop:?}");
    assert_eq!(data[30..34], octets(drop.dst.ip()), "{drop:?}");
    // The whole SYN: IPv4 header, TCP header with options, no payload.
    let ip_len = u16::from_be_bytes([data[16], data[17]]) as usize;
    assert_eq!(data.len(), ETH_HLEN as usize + ip_len, "{drop:?}");
    assert_eq!(data[14 + 20 + 13] & 0x12, 0x02, "a SYN: {drop:?}");
}

fn octets(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => panic!("IPv4 pods only here: {v6}"),
    }
}
