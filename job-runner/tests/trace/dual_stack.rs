// SPDX-License-Identifier: Apache-2.0
//! A dual-stack pod traced by both its addresses (as the plugin passes a
//! pod's `status.podIPs`): one attachment per interface, and traffic over
//! either family seen.

use std::net::SocketAddr;

use super::common::*;
use podtrace::event::EventKind;
use podtrace_netns::{Family, Shape};

fn both_addresses_of_a_pod(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods_of(Family::V6, shape, "nginx", "curl");
    let _nginx = server.start_nginx(80, None).unwrap();
    let (v4, v6) = (server.addr(Family::V4), server.addr(Family::V6));
    let (s4, s6) = (v4.to_string(), v6.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &s4, "--pod-ip", &s6, "--packets"]);
    let ready = runner.ready();
    assert_eq!(ready.interfaces.len(), 2, "one per address: {ready:?}");
    assert!(
        ready.interfaces.iter().all(|i| i.name == server.host_if),
        "{ready:?}"
    );
    for ip in [v6, v4] {
        let (code, _) = curl(&client, &http_url(ip, 80), 10);
        assert_eq!(code, "200");
        let to = SocketAddr::new(ip, 80);
        runner.expect_event("established", |e| {
            matches!(e.kind, EventKind::Established { .. }) && e.dst == to
        });
        runner.expect_event("a packet at the pod's interface", |e| {
            matches!(e.kind, EventKind::Packet { .. }) && e.dst == to
        });
    }
    runner.stop_clean();
}

#[test]
fn both_addresses_of_a_pod_routed() {
    both_addresses_of_a_pod(Shape::Routed);
}

#[test]
fn both_addresses_of_a_pod_bridge() {
    both_addresses_of_a_pod(Shape::Bridge);
}
