// SPDX-License-Identifier: Apache-2.0
//! Opening a connection, as the runner reports it: a lost SYN|ACK, a
//! connect the network refuses, a SYN that is dropped; over IPv4 and IPv6.
//! Real eBPF in network namespace pods; needs root (CI runs as root).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use podtrace::event::{End, Event, EventKind, Message};
use podtrace_netns::{Netns, Shape};

/// connect() from inside `ns` with a timeout (non-blocking, then poll and
/// SO_ERROR, as most clients do): what the caller got.
fn connect_in(ns: &Netns, to: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&to, timeout).map(drop)
    })
    .join()
    .unwrap()
}

/// The server's first SYN|ACK is lost (dropped in the client pod): the
/// server's kernel sends it again, which shows as a `retransmit` from the
/// server's side of that flow, in state SYN_RECV, and counts in the
/// summary.
fn lost_syn_ack(family: Family) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let _nginx = server.start_nginx(80, None).unwrap();
    // Only the first SYN|ACK: a quota of 100 bytes lets one segment (60
    // bytes over IPv4, 80 over IPv6) through the rule (so it is dropped),
    // not a second.
    nft(
        &client.netns,
        &cluster.prefix(),
        "synack",
        "table inet podtrace_synack {\n chain input {\n  type filter hook input priority 0;\n  \
         tcp flags & (syn | ack) == syn | ack quota until 100 bytes drop\n }\n}\n",
    );
    let sip = server_ip.to_string();
    // Only the server traced: every event is from its side.
    let mut runner = Runner::start(&node, &["--pod-ip", &sip]);
    runner.ready();
    let (code, _) = curl(&client, &http_url(server_ip, 80), 10);
    assert_eq!(code, "200", "the retransmitted SYN|ACK got through");
    let to = SocketAddr::new(server_ip, 80);
    let rt = runner.expect_event("the server's SYN|ACK retransmit", |e| {
        matches!(e.kind, EventKind::Retransmit { .. }) && e.dst == to
    });
    assert_eq!(rt.src.ip(), client_ip, "{rt:?}");
    assert_eq!(rt.end, Some(End::Server), "{rt:?}");
    assert_eq!(
        rt.kind,
        EventKind::Retransmit {
            state: Some("SYN_RECV".into())
        },
        "{rt:?}"
    );
    let lines = runner.stop_clean();
    let flow = flow_where(summary_of(&lines), |f| f.dst == Some(to));
    assert_eq!(flow.src, Some(client_ip), "{flow:?}");
    // Sent by the server: retransmitted server → client.
    assert!(flow.retransmits_received >= 1, "{flow:?}");
}

#[test]
fn a_lost_syn_ack_shows_as_the_servers_retransmit() {
    lost_syn_ack(Family::V4);
}

#[test]
fn a_lost_syn_ack_shows_as_the_servers_retransmit_ipv6() {
    lost_syn_ack(Family::V6);
}

/// A connect the network answers with ICMP (ICMPv6) net unreachable (a
/// `throw` route on the node) is reported with the error its caller got,
/// ENETUNREACH; a refused one still with ECONNREFUSED. Without the
/// `error_report` hook (before Linux 5.14) only the socket's close tells,
/// and the caller, woken by the error, may read it off the socket first:
/// then `failed` has no error, never a wrong one (5.10 in the kernel
/// matrix has shown both over IPv6).
fn failed_connect(family: Family) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    // No node has index 99: no pod has an address in 10.{slot}.99.0/24
    // or fd00:{slot}:99::/64.
    let slot = cluster.slot();
    let (nowhere, route): (IpAddr, _) = match family {
        Family::V4 => (Ipv4Addr::new(10, slot, 99, 1).into(), "32"),
        Family::V6 => (
            Ipv6Addr::new(0xfd00, slot.into(), 99, 0, 0, 0, 0, 1).into(),
            "128",
        ),
    };
    let ip_family = if nowhere.is_ipv6() { "-6" } else { "-4" };
    node.netns
        .ip(&[
            ip_family,
            "route",
            "add",
            "throw",
            &format!("{nowhere}/{route}"),
        ])
        .unwrap();
    let mut runner = Runner::start(&node, &["--pod-ip", &client_ip.to_string()]);
    let kept = runner.ready().features.is_some_and(|f| f.error_report);
    let nowhere = SocketAddr::new(nowhere, 80);
    let closed_port = SocketAddr::new(server_ip, 81);
    for (to, errno, name) in [
        (nowhere, libc::ENETUNREACH, "ENETUNREACH"),
        (closed_port, libc::ECONNREFUSED, "ECONNREFUSED"),
    ] {
        let err = connect_in(&client.netns, to, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(errno), "{to}: {err}");
        let ev = runner.expect_event(&format!("failed to {to}"), |e| {
            matches!(e.kind, EventKind::Failed { .. }) && e.dst == to
        });
        let EventKind::Failed { error } = &ev.kind else {
            unreachable!("{ev:?}")
        };
        let sure = kept || errno == libc::ECONNREFUSED;
        assert!(
            error.as_deref() == Some(name) || (!sure && error.is_none()),
            "{ev:?}"
        );
        assert_eq!(ev.src.ip(), client_ip, "{ev:?}");
        assert_eq!(ev.end, Some(End::Client), "{ev:?}");
    }
    runner.stop_clean();
}

#[test]
fn a_failed_connect_reports_the_callers_error() {
    failed_connect(Family::V4);
}

#[test]
fn a_failed_connect_reports_the_callers_error_ipv6() {
    failed_connect(Family::V6);
}

/// A connect whose SYN is dropped is reported when it happens: before its
/// SYN's packet and drop lines, and no later than them in time. Dropped in
/// the server pod (nftables input), the SYN passes the client's interface
/// first; dropped in the client pod (output), no interface sees it.
fn connect_comes_first(family: Family, drop_in_client: bool) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods_of(family, Shape::Routed, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let (ns, hook) = if drop_in_client {
        (&client.netns, "output")
    } else {
        (&server.netns, "input")
    };
    nft(
        ns,
        &cluster.prefix(),
        "syndrop",
        &format!(
            "table inet podtrace_syndrop {{\n chain c {{\n  type filter hook {hook} priority 0;\n  \
             tcp dport 80 drop\n }}\n}}\n"
        ),
    );
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    runner.ready();
    let to = SocketAddr::new(server_ip, 80);
    let err = connect_in(&client.netns, to, Duration::from_millis(1500)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    // The caller gave up and closed: the `failed` comes after everything
    // about the SYNs. (Their retransmit is no sync point: where the pod's
    // own firewall drops it, kernels before 2025 do not trace a retransmit whose
    // sending failed; docs/kernels.md.)
    runner.expect_event("the connect's failure", |e| {
        matches!(e.kind, EventKind::Failed { .. }) && e.dst == to
    });
    let lines = runner.stop_clean();
    let at = |pred: &dyn Fn(&Event) -> bool| {
        lines.iter().enumerate().find_map(|(i, m)| match m {
            Message::Event(e) if pred(e) => Some((i, e.clone())),
            _ => None,
        })
    };
    let (ci, connect) = at(&|e| matches!(e.kind, EventKind::Connect) && e.dst == to)
        .unwrap_or_else(|| panic!("no connect in {lines:#?}"));
    assert_eq!(connect.end, Some(End::Client), "{connect:?}");
    let syn = at(&|e| {
        matches!(&e.kind, EventKind::Packet { flags, .. } if flags == "SYN") && e.src == connect.src
    });
    let drop = at(&|e| matches!(e.kind, EventKind::Drop { .. }) && e.src == connect.src);
    assert_eq!(syn.is_none(), drop_in_client, "{lines:#?}");
    let drop = drop.unwrap_or_else(|| panic!("no drop in {lines:#?}"));
    let retransmit =
        at(&|e| matches!(e.kind, EventKind::Retransmit { .. }) && e.src == connect.src);
    if !drop_in_client {
        assert!(retransmit.is_some(), "no retransmit in {lines:#?}");
    }
    let later = syn
        .iter()
        .map(|s| ("SYN", s))
        .chain([("drop", &drop)])
        .chain(retransmit.iter().map(|r| ("retransmit", r)));
    for (what, (i, e)) in later {
        assert!(ci < *i, "connect at line {ci}, {what} at {i}: {lines:#?}");
        assert!(
            connect.time <= e.time,
            "connect {}, {what} {}",
            connect.time,
            e.time
        );
    }
}

#[test]
fn a_connect_comes_before_its_syn_and_its_drop() {
    connect_comes_first(Family::V4, false);
}

#[test]
fn a_connect_comes_before_its_syn_and_its_drop_ipv6() {
    connect_comes_first(Family::V6, false);
}

#[test]
fn a_connect_comes_before_its_syn_dropped_in_its_own_pod() {
    connect_comes_first(Family::V4, true);
}

#[test]
fn a_connect_comes_before_its_syn_dropped_in_its_own_pod_ipv6() {
    connect_comes_first(Family::V6, true);
}
