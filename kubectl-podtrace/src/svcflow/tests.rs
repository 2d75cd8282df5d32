// SPDX-License-Identifier: Apache-2.0
use super::*;
use podtrace::event::{Backend, FlowSummary, Rtt};

const CIP: &str = "10.96.0.20:80";
const A: &str = "10.244.1.5:8080";
const B: &str = "10.244.2.7:8080";
const SVC: &str = "default/nginx";

/// An event at `ms` milliseconds past a fixed second.
fn ev(ms: u64, end: End, src: &str, dst: &str, kind: EventKind) -> Event {
    Event {
        time: format!("2026-11-29T16:00:{:02}.{:03}000000Z", ms / 1000, ms % 1000),
        node: "n".into(),
        proto: Proto::Tcp,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        pid: None,
        comm: None,
        src_name: None,
        dst_name: None,
        via: None,
        end: Some(end),
        kind,
    }
}

fn close() -> EventKind {
    EventKind::Close {
        duration_ms: 1.0,
        bytes_sent: 73,
        bytes_received: 854,
    }
}

/// One connection through the Service from `client` to `backend`, from
/// `ms`: the client's events, then the server's.
fn connection(ms: u64, client: &str, backend: &str) -> (Vec<Event>, Vec<Event>) {
    (
        vec![
            ev(ms, End::Client, client, CIP, EventKind::Connect),
            ev(
                ms + 1,
                End::Client,
                client,
                CIP,
                EventKind::Established { rtt_us: 50 },
            ),
            ev(ms + 10, End::Client, client, CIP, close()),
        ],
        vec![
            ev(ms + 1, End::Server, client, backend, EventKind::Accept),
            ev(
                ms + 2,
                End::Server,
                client,
                backend,
                EventKind::Established { rtt_us: 40 },
            ),
            ev(ms + 11, End::Server, client, backend, close()),
        ],
    )
}

fn observe(f: &mut ServiceFlows, events: &[Event]) {
    for e in events {
        let svc = (e.end == Some(End::Client) && e.dst == CIP.parse().unwrap()).then_some(SVC);
        f.observe(e, svc);
    }
}

fn hop(backend: Option<&str>) -> Option<Hop> {
    Some(Hop {
        via: ServiceHop {
            service: SVC.into(),
            service_addr: CIP.parse().unwrap(),
        },
        backend: backend.map(|b| b.parse().unwrap()),
    })
}

#[test]
fn both_ends_match_in_either_arrival_order() {
    let (client, server) = connection(100, "10.244.1.2:52198", A);
    for client_first in [true, false] {
        let mut f = ServiceFlows::default();
        if client_first {
            observe(&mut f, &client);
            observe(&mut f, &server);
        } else {
            observe(&mut f, &server);
            observe(&mut f, &client);
        }
        for e in client.iter().chain(&server) {
            assert_eq!(
                f.hop(e),
                hop(Some(A)),
                "{e:?} (client first: {client_first})"
            );
        }
    }
}

#[test]
fn before_the_server_end_is_seen_the_service_alone() {
    let (client, _) = connection(100, "10.244.1.2:52198", A);
    let mut f = ServiceFlows::default();
    observe(&mut f, &client);
    assert_eq!(f.hop(&client[0]), hop(None));
}

#[test]
fn an_snat_on_the_way_matches_nothing() {
    // The backend sees the node's address and another port: no key in
    // common, so the halves stay apart.
    let (client, _) = connection(100, "10.244.1.2:52198", A);
    let (_, server) = connection(100, "10.0.0.1:61000", A);
    let mut f = ServiceFlows::default();
    observe(&mut f, &client);
    observe(&mut f, &server);
    assert_eq!(f.hop(&client[1]), hop(None));
    assert_eq!(f.hop(&server[0]), None);
    let rows = fold(
        vec![row("10.244.1.2", CIP, 1, 6), row("10.0.0.1", A, 1, 6)],
        &f.tally(),
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let to = |d: &str| rows.iter().find(|r| r.dst == d.parse().ok()).unwrap();
    assert_eq!(to(CIP).service.as_deref(), Some(SVC));
    assert!(to(CIP).backends.is_empty());
    assert_eq!(to(A).service, None);
}

fn row(src: &str, dst: &str, connections: u64, packets: u64) -> FlowSummary {
    let mut rtt = Rtt::default();
    rtt.add(50);
    FlowSummary {
        proto: Some(Proto::Tcp),
        src: Some(src.parse().unwrap()),
        dst: Some(dst.parse().unwrap()),
        connections,
        packets_sent: packets,
        packets_received: packets,
        retransmits_sent: 1,
        rtt: Some(rtt),
        ..Default::default()
    }
}

#[test]
fn two_backends_make_one_row() {
    let mut f = ServiceFlows::default();
    let (c1, s1) = connection(100, "10.244.1.2:40001", A);
    let (c2, s2) = connection(200, "10.244.1.2:40002", B);
    let (c3, s3) = connection(300, "10.244.1.2:40003", A);
    for part in [&c1, &s1, &s2, &c2, &c3, &s3] {
        observe(&mut f, part);
    }
    assert_eq!(f.hop(&c2[2]), hop(Some(B)));
    assert_eq!(f.hop(&c3[0]), hop(Some(A)));
    let mut a = row("10.244.1.2", A, 2, 12);
    a.dst_name = Some("default/nginx-a".into());
    let rows = fold(
        vec![row("10.244.1.2", CIP, 3, 18), a, row("10.244.1.2", B, 1, 6)],
        &f.tally(),
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(r.service.as_deref(), Some(SVC));
    assert_eq!(r.service_addr, Some(CIP.parse().unwrap()));
    assert_eq!(r.dst, Some(CIP.parse().unwrap()));
    assert_eq!(
        r.backends,
        vec![
            Backend {
                addr: A.parse().unwrap(),
                name: Some("default/nginx-a".into()),
                connections: 2
            },
            Backend {
                addr: B.parse().unwrap(),
                name: None,
                connections: 1
            },
        ]
    );
    // Seen by both ends: counted once; the backends' own: added.
    assert_eq!((r.connections, r.packets_sent), (3, 18));
    assert_eq!(r.retransmits_sent, 3);
    assert_eq!(r.rtt.unwrap().count, 3);
}

#[test]
fn a_client_port_reused_reaches_its_own_backend_each_time() {
    let mut f = ServiceFlows::default();
    let (c1, s1) = connection(100, "10.244.1.2:52198", A);
    let (c2, s2) = connection(2000, "10.244.1.2:52198", B);
    // The second server half arrives before the client's second half.
    for part in [&c1, &s1, &s2, &c2] {
        observe(&mut f, part);
    }
    for e in c1.iter().chain(&s1) {
        assert_eq!(f.hop(e), hop(Some(A)), "{e:?}");
    }
    for e in c2.iter().chain(&s2) {
        assert_eq!(f.hop(e), hop(Some(B)), "{e:?}");
    }
    let t = f.tally();
    let key = (
        Proto::Tcp,
        "10.244.1.2".parse().unwrap(),
        A.parse().unwrap(),
    );
    assert_eq!(t.matched[&key].values().sum::<u64>(), 1);
}

#[test]
fn a_direct_connection_on_a_reused_port_is_not_the_services() {
    let mut f = ServiceFlows::default();
    let (c1, s1) = connection(100, "10.244.1.2:52198", A);
    observe(&mut f, &c1);
    observe(&mut f, &s1);
    // The same client port, later, straight to the backend's pod IP.
    let direct = [
        ev(2000, End::Client, "10.244.1.2:52198", A, EventKind::Connect),
        ev(2001, End::Server, "10.244.1.2:52198", A, EventKind::Accept),
    ];
    observe(&mut f, &direct);
    assert_eq!(f.hop(&direct[0]), None);
    assert_eq!(f.hop(&direct[1]), None);
    // Two connections accepted, one through the Service: the backend's
    // row cannot be split, so it stays.
    let rows = fold(
        vec![row("10.244.1.2", CIP, 1, 6), row("10.244.1.2", A, 2, 12)],
        &f.tally(),
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
}

#[test]
fn two_server_halves_in_one_window_match_neither() {
    let mut f = ServiceFlows::default();
    let (c1, s1) = connection(100, "10.244.1.2:52198", A);
    let (_, s2) = connection(103, "10.244.1.2:52198", B);
    observe(&mut f, &c1);
    observe(&mut f, &s1);
    observe(&mut f, &s2);
    assert_eq!(f.hop(&c1[0]), hop(None));
}

#[test]
fn a_dns_lookup_dropped_after_the_nat_is_one_flow() {
    // The query leaves the client for the DNS Service; the node drops it
    // after the NAT chose the DNS pod: the drop names the backend.
    const DNS: &str = "10.96.0.10:53";
    const POD: &str = "10.244.1.9:53";
    let datagram = |ms, dst: &str, drop: bool| {
        let mut e = ev(ms, End::Client, "10.244.1.2:42767", dst, EventKind::Connect);
        e.proto = Proto::Udp;
        e.end = None;
        e.kind = if drop {
            EventKind::Drop {
                reason: Some("NETFILTER_DROP".into()),
                iface: None,
                direction: None,
                at: None,
                data: None,
            }
        } else {
            EventKind::Packet {
                iface: "veth".into(),
                direction: podtrace::event::Direction::Egress,
                flags: String::new(),
                len: 110,
                first: true,
                data: None,
            }
        };
        e
    };
    let sent = datagram(100, DNS, false);
    let dropped = datagram(100, POD, true);
    for sent_first in [true, false] {
        let mut f = ServiceFlows::default();
        let order = if sent_first {
            [&sent, &dropped]
        } else {
            [&dropped, &sent]
        };
        for e in order {
            let svc = (e.dst == DNS.parse().unwrap()).then_some("kube-system/kube-dns");
            f.observe(e, svc);
        }
        let want = Some(Hop {
            via: ServiceHop {
                service: "kube-system/kube-dns".into(),
                service_addr: DNS.parse().unwrap(),
            },
            backend: Some(POD.parse().unwrap()),
        });
        assert_eq!(f.hop(&sent), want);
        assert_eq!(f.hop(&dropped), want);
        let mut client = row("10.244.1.2", DNS, 1, 2);
        client.proto = Some(Proto::Udp);
        let mut backend = row("10.244.1.2", POD, 1, 0);
        backend.proto = Some(Proto::Udp);
        backend.drops = 2;
        let rows = fold(vec![client, backend], &f.tally());
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].drops, 2);
        assert_eq!(rows[0].backends.len(), 1);
    }
}
