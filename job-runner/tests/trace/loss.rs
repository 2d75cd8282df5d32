// SPDX-License-Identifier: Apache-2.0
//! Lost packets: retransmits under injected loss, and drops at each common
//! site with the kernel's reason, interface, direction and place; over
//! IPv4 and IPv6, in both CNI shapes.

use std::net::SocketAddr;
use std::time::Duration;

use super::common::*;
use podtrace::event::{Direction, DropSite, End, EventKind};
use podtrace_netns::Shape;

/// Drops about half the packets leaving `ns`: netem where the kernel has
/// it, else an nftables rule that drops at random (kernels built without
/// CONFIG_NET_SCH_NETEM, like this project's CI).
fn inject_loss(ns: &podtrace_netns::Netns, prefix: &str) {
    if ns
        .exec(
            "tc",
            &[
                "qdisc", "add", "dev", "eth0", "root", "netem", "loss", "50%",
            ],
        )
        .is_ok()
    {
        return;
    }
    let rules = "table inet podtrace_loss {\n chain output {\n  type filter hook output priority 0;\n  meta l4proto tcp numgen random mod 2 == 0 drop\n }\n}\n";
    let file = std::env::temp_dir().join(format!("{prefix}loss.nft"));
    std::fs::write(&file, rules).unwrap();
    ns.exec("nft", &["-f", file.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&file);
}

/// Loss injected on the client pod's eth0 shows as retransmits.
fn retransmits(shape: Shape, family: Family) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods_of(family, shape, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    runner.ready();
    inject_loss(&client.netns, &cluster.prefix());
    let mut seen = None;
    for _ in 0..20 {
        let _ = curl(&client, &http_url(server_ip, 80), 3);
        seen = runner.wait_event(Duration::from_millis(300), |e| {
            matches!(e.kind, EventKind::Retransmit { .. })
        });
        if seen.is_some() {
            break;
        }
    }
    let rt = seen.unwrap_or_else(|| panic!("no retransmit; saw:\n{}", runner.dump()));
    assert_eq!(rt.src.ip(), client_ip, "{rt:?}");
    assert_eq!(rt.dst.port(), 80, "{rt:?}");
    assert!(
        matches!(rt.kind, EventKind::Retransmit { state: Some(_) }),
        "{rt:?}"
    );
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(total(summary, |f| f.retransmits()) >= 1, "{summary:?}");
    // Every retransmit line is in the summary, in its end's direction.
    if summary.lost == 0 {
        let by = |end| {
            events(&lines)
                .filter(|e| matches!(e.kind, EventKind::Retransmit { .. }) && e.end == Some(end))
                .count() as u64
        };
        assert_eq!(total(summary, |f| f.retransmits_sent), by(End::Client));
        assert_eq!(total(summary, |f| f.retransmits_received), by(End::Server));
    }
}

#[test]
fn retransmits_routed() {
    retransmits(Shape::Routed, Family::V4);
}

#[test]
fn retransmits_bridge() {
    retransmits(Shape::Bridge, Family::V4);
}

#[test]
fn retransmits_routed_ipv6() {
    retransmits(Shape::Routed, Family::V6);
}

#[test]
fn retransmits_bridge_ipv6() {
    retransmits(Shape::Bridge, Family::V6);
}

/// An nftables rule in `ns` that drops TCP to `port` at the `chain` hook.
fn drop_rule(ns: &podtrace_netns::Netns, chain: &str, port: u16) {
    let rules = format!(
        "table inet podtrace_test {{\n chain {chain} {{\n  type filter hook {chain} priority 0;\n  tcp dport {port} drop\n }}\n}}\n"
    );
    let file = std::env::temp_dir().join(format!("{}-drop.nft", ns.name()));
    std::fs::write(&file, rules).unwrap();
    let loaded = ns.exec("nft", &["-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    loaded.unwrap();
}

/// The common drop sites, each with its reason, the traced pod's
/// host-side interface, the way the packet was going and where it died:
/// the same in both CNI shapes, whatever device the kernel held it on.
fn drop_sites(shape: Shape, family: Family) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods_of(family, shape, "srv", "cli");
    let (server_ip, client_ip) = (server.addr(family), client.addr(family));
    // The node's firewall (bridged traffic too: br_netfilter), one in
    // each pod; nothing listens on 81.
    drop_rule(&node.netns, "forward", 82);
    drop_rule(&server.netns, "input", 83);
    drop_rule(&client.netns, "output", 84);
    let (sip, cip) = (server_ip.to_string(), client_ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let features = runner
        .ready()
        .features
        .expect("the ready line lists features");
    let (into_server, out_of_client) = (
        (server.host_if.as_str(), Direction::Ingress),
        (client.host_if.as_str(), Direction::Egress),
    );
    for (port, reason, (iface, direction), at) in [
        (82, "NETFILTER_DROP", into_server, DropSite::Node),
        (83, "NETFILTER_DROP", into_server, DropSite::Pod),
        (81, "NO_SOCKET", into_server, DropSite::Pod),
        (84, "NETFILTER_DROP", out_of_client, DropSite::Pod),
    ] {
        let (code, _) = curl(&client, &http_url(server_ip, port), 1);
        assert_eq!(code, "000");
        let dst = SocketAddr::new(server_ip, port);
        let drop = runner.expect_event(&format!("drop to {dst}"), |e| {
            matches!(e.kind, EventKind::Drop { .. }) && e.dst == dst
        });
        assert_eq!(drop.src.ip(), client_ip, "{drop:?}");
        assert_eq!(
            drop.kind,
            EventKind::Drop {
                // Before Linux 5.17 the kernel gives none, and none is made up.
                reason: features.drop_reasons.then(|| reason.into()),
                iface: Some(iface.into()),
                direction: Some(direction),
                at: Some(at),
                data: None,
            },
            "{shape:?}, port {port}"
        );
    }
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(total(summary, |f| f.drops) >= 4, "{summary:?}");
}

#[test]
fn drop_sites_routed() {
    drop_sites(Shape::Routed, Family::V4);
}

#[test]
fn drop_sites_bridge() {
    drop_sites(Shape::Bridge, Family::V4);
}

#[test]
fn drop_sites_routed_ipv6() {
    drop_sites(Shape::Routed, Family::V6);
}

#[test]
fn drop_sites_bridge_ipv6() {
    drop_sites(Shape::Bridge, Family::V6);
}
