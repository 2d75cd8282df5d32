// SPDX-License-Identifier: Apache-2.0
//! The writer's files, read back by `pcap-file` and by the real tshark.

use std::net::SocketAddr;

use podtrace::event::{Payload, Proto};

use super::*;

#[path = "tshark.rs"]
mod tshark;

/// An Ethernet + IPv4 + TCP frame from `src` to `dst` carrying `payload`.
fn frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        unreachable!("IPv4 here")
    };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&s.ip().octets());
    ip.extend_from_slice(&d.ip().octets());
    let sum = !ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |a, w| {
            let a = a + w;
            (a & 0xffff) + (a >> 16)
        }) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    // seq, ack, data offset 5 words, PSH|ACK, window, checksum, urgent.
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

const CLIENT: &str = "10.1.2.3:40000";
const SERVER: &str = "10.1.1.2:80";

/// A packet event at `ns` past a fixed second, with its frame.
fn packet(node: &str, iface: &str, direction: Direction, ns: u64, to_server: bool) -> Event {
    let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let (src, dst) = if to_server { (c, s) } else { (s, c) };
    let data = frame(src, dst, b"GET / HTTP/1.1\r\n\r\n");
    let name = |a: SocketAddr| {
        Some(
            if a == c {
                "default/curl-demo"
            } else {
                "default/nginx-demo"
            }
            .to_owned(),
        )
    };
    Event {
        time: podtrace::event::rfc3339_nanos(1_764_081_438_000_000_000 + u128::from(ns)),
        node: node.into(),
        proto: Proto::Tcp,
        src,
        dst,
        pid: None,
        comm: None,
        src_name: name(src),
        dst_name: name(dst),
        via: None,
        end: None,
        kind: EventKind::Packet {
            iface: iface.into(),
            direction,
            flags: "PSH|ACK".into(),
            len: data.len() as u32 - ETH_HLEN,
            first: false,
            data: Some(Payload(data)),
        },
    }
}

fn session() -> Session {
    Session {
        targets: vec!["default/curl-demo".into(), "default/nginx-demo".into()],
        started: "2025-11-25T14:37:17Z".into(),
        snaplen: 648,
    }
}

/// The request leaving the client on node-1 and entering the server on
/// node-2, a reply, and an event without bytes.
fn written() -> (tempfile::TempPath, u64) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut w = Writer::new(file.reopen().unwrap(), &session()).unwrap();
    let events = [
        packet("node-1", "pt1v1x3", Direction::Egress, 1_000, true),
        packet("node-2", "pt1v2x2", Direction::Ingress, 2_500, true),
        packet("node-2", "pt1v2x2", Direction::Egress, 7_000_123, false),
        Event {
            kind: EventKind::Connect,
            ..packet("node-1", "pt1v1x3", Direction::Egress, 9, true)
        },
    ];
    for e in &events {
        w.write(e).unwrap();
    }
    w.flush().unwrap();
    (file.into_temp_path(), w.packets())
}

#[test]
fn tshark_reads_interfaces_names_directions_and_times() {
    let (path, packets) = written();
    assert_eq!(packets, 3, "the connect event is no packet");
    let rows = tshark::fields(
        &path,
        &["-N", "n"],
        &[
            "frame.interface_name",
            "ip.src_host",
            "ip.dst_host",
            "frame.packet_flags_direction",
            "frame.time_epoch",
            "frame.len",
            "tcp.len",
        ],
    );
    // Direction from the interface's view (1 inbound, 2 outbound): what
    // leaves a pod comes in on its host side.
    let want = [
        [
            "node-1/pt1v1x3 (default/curl-demo)",
            "default/curl-demo",
            "default/nginx-demo",
            "0x00000001",
            "1764081438.000001000",
        ],
        [
            "node-2/pt1v2x2 (default/nginx-demo)",
            "default/curl-demo",
            "default/nginx-demo",
            "0x00000002",
            "1764081438.000002500",
        ],
        [
            "node-2/pt1v2x2 (default/nginx-demo)",
            "default/nginx-demo",
            "default/curl-demo",
            "0x00000001",
            "1764081438.007000123",
        ],
    ];
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for (row, want) in rows.iter().zip(want) {
        assert_eq!(row[..5], want, "{rows:?}");
        assert_eq!(row[5], "72", "frame length: len + the Ethernet header");
        assert_eq!(row[6], "18", "the bytes are the frame: its TCP payload");
    }
}

#[test]
fn drops_show_their_reason_as_a_comment() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut w = Writer::new(file.reopen().unwrap(), &session()).unwrap();
    let sent = packet("node-1", "pt1v1x3", Direction::Egress, 1_000, true);
    // The same packet, dropped on its way into the server, cut at 40 bytes
    // (its Ethernet header the runner's zeros).
    let mut bytes = frame(sent.src, sent.dst, b"GET / HTTP/1.1\r\n\r\n");
    bytes.truncate(40);
    let drop = |reason: Option<&str>, ns| Event {
        kind: EventKind::Drop {
            reason: reason.map(Into::into),
            iface: Some("pt1v2x2".into()),
            direction: Some(Direction::Ingress),
            at: Some(podtrace::event::DropSite::Node),
            data: Some(Payload(bytes.clone())),
        },
        ..packet("node-2", "pt1v2x2", Direction::Ingress, ns, true)
    };
    let unplaced = Event {
        kind: EventKind::Drop {
            reason: None,
            iface: None,
            direction: None,
            at: None,
            data: Some(Payload(bytes.clone())),
        },
        ..sent.clone()
    };
    for e in [
        &sent,
        &drop(Some("NETFILTER_DROP"), 2_000),
        &drop(None, 3_000),
        &unplaced,
    ] {
        w.write(e).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(
        w.packets(),
        3,
        "a drop at no traced pod's interface is not written"
    );
    let rows = tshark::fields(
        file.path(),
        &[],
        &[
            "frame.interface_name",
            "frame.comment",
            "frame.len",
            "frame.cap_len",
        ],
    );
    let node2 = "node-2/pt1v2x2 (default/nginx-demo)";
    assert_eq!(
        rows,
        [
            ["node-1/pt1v1x3 (default/curl-demo)", "", "72", "72"],
            [
                node2,
                "dropped by the kernel in the node: NETFILTER_DROP",
                "72",
                "40"
            ],
            [
                node2,
                "dropped by the kernel in the node: no reason given (Linux < 5.17)",
                "72",
                "40"
            ],
        ]
    );
}

#[test]
fn the_section_says_who_wrote_it_what_it_traced_and_when() {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let (path, _) = written();
    let mut r = PcapNgReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let shb = r.section().options.clone();
    assert_eq!(
        shb,
        vec![
            SectionHeaderOption::UserApplication(
                concat!("kubectl-podtrace ", env!("CARGO_PKG_VERSION")).into()
            ),
            SectionHeaderOption::Comment(
                "kubectl podtrace default/curl-demo default/nginx-demo".into()
            ),
            SectionHeaderOption::Comment("started 2025-11-25T14:37:17Z".into()),
        ]
    );
    let mut idbs = Vec::new();
    while let Some(block) = r.next_block() {
        if let Block::InterfaceDescription(i) = block.unwrap() {
            idbs.push((i.linktype, i.snaplen));
        }
    }
    assert_eq!(idbs, vec![(DataLink::ETHERNET, 648); 2]);
}
