// SPDX-License-Identifier: Apache-2.0
//! Opening a connection, as the runner reports it: a lost SYN|ACK. Real
//! eBPF in network namespace pods; needs root (CI runs as root).

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use podtrace::event::{End, EventKind};
use podtrace_netns::{Netns, Shape};

/// Loads an nftables ruleset into `ns`.
fn nft(ns: &Netns, prefix: &str, name: &str, rules: &str) {
    let file = std::env::temp_dir().join(format!("{prefix}{name}.nft"));
    std::fs::write(&file, rules).unwrap();
    ns.exec("nft", &["-f", file.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&file);
}

/// The server's first SYN|ACK is lost (dropped in the client pod): the
/// server's kernel sends it again, which shows as a `retransmit` from the
/// server's side of that flow, in state SYN_RECV, and counts in the
/// summary.
#[test]
fn a_lost_syn_ack_shows_as_the_servers_retransmit() {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods(Shape::Routed, "srv", "cli");
    let _nginx = server.start_nginx(80, None).unwrap();
    // Only the first SYN|ACK: a quota of 100 bytes lets one 60-byte
    // segment through the rule (so it is dropped), not a second.
    nft(
        &client.netns,
        &cluster.prefix(),
        "synack",
        "table inet podtrace_synack {\n chain input {\n  type filter hook input priority 0;\n  \
         tcp flags & (syn | ack) == syn | ack quota until 100 bytes drop\n }\n}\n",
    );
    let sip = server.ip.to_string();
    // Only the server traced: every event is from its side.
    let mut runner = Runner::start(&node, &["--pod-ip", &sip]);
    runner.ready();
    let (code, _) = curl(&client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200", "the retransmitted SYN|ACK got through");
    let to = SocketAddr::new(server.ip.into(), 80);
    let rt = runner.expect_event("the server's SYN|ACK retransmit", |e| {
        matches!(e.kind, EventKind::Retransmit { .. }) && e.dst == to
    });
    assert_eq!(rt.src.ip(), IpAddr::from(client.ip), "{rt:?}");
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
    assert_eq!(flow.src, Some(client.ip.into()), "{flow:?}");
    // Sent by the server: retransmitted server → client.
    assert!(flow.retransmits_received >= 1, "{flow:?}");
}
