// SPDX-License-Identifier: Apache-2.0
//! What a runner sees: only its pods (others on the same node and bridge
//! stay invisible, two runners on one kernel see their own), the peer and
//! port filters, every filter combination loading, the namespace scope
//! map, and a clear error for a pod that is not on the node.

use std::net::{IpAddr, SocketAddr};

use super::common::*;
use podtrace::event::{Event, EventKind};
use podtrace_netns::{Cluster, Shape};

/// Traffic between two pods we do not trace never shows, even on the same
/// node and bridge as a traced pod.
fn others_stay_invisible(shape: Shape) {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", shape).unwrap();
    let traced = cluster.add_pod("node", "traced").unwrap();
    let other_srv = cluster.add_pod("node", "osrv").unwrap();
    let other_cli = cluster.add_pod("node", "ocli").unwrap();
    let _n1 = traced.start_nginx(80, None).unwrap();
    let _n2 = other_srv.start_nginx(80, None).unwrap();
    let tip = traced.ip.to_string();
    let mut runner = Runner::start(&node, &["--pod-ip", &tip]);
    runner.ready();
    let (code, _) = curl(&other_cli, &format!("http://{}/", other_srv.ip), 5);
    assert_eq!(code, "200");
    let (code, _) = curl(&other_cli, &format!("http://{}:81/", other_srv.ip), 5);
    assert_eq!(code, "000");
    // Then traffic we do trace, as a marker that the earlier events (if
    // any) have been read.
    let (code, _) = curl(&other_cli, &format!("http://{tip}/"), 5);
    assert_eq!(code, "200");
    let traced_addr = SocketAddr::new(traced.ip.into(), 80);
    runner.expect_event("traced close", |e| {
        matches!(e.kind, EventKind::Close { .. }) && e.dst == traced_addr
    });
    let lines = runner.stop_clean();
    let other = IpAddr::from(other_srv.ip);
    for e in events(&lines) {
        assert!(
            e.src.ip() != other && e.dst.ip() != other,
            "untraced traffic showed: {e:?}"
        );
    }
    let summary = summary_of(&lines);
    for f in &summary.flows {
        assert!(
            f.src != Some(other) && f.dst.map(|d| d.ip()) != Some(other),
            "untraced flow showed: {f:?}"
        );
    }
}

#[test]
fn others_stay_invisible_routed() {
    others_stay_invisible(Shape::Routed);
}

#[test]
fn others_stay_invisible_bridge() {
    others_stay_invisible(Shape::Bridge);
}

/// Two runners on two nodes of one kernel at once: each reports only its
/// own pods (the client side on one, the server side on the other).
#[test]
fn two_runners_each_see_their_own_node() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node_a = cluster.add_node("node-a", Shape::Routed).unwrap();
    let node_b = cluster.add_node("node-b", Shape::Bridge).unwrap();
    let client = cluster.add_pod("node-a", "cli").unwrap();
    let server = cluster.add_pod("node-b", "srv").unwrap();
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut ra = Runner::start(&node_a, &["--pod-ip", &cip, "--node-name", "node-a"]);
    let mut rb = Runner::start(&node_b, &["--pod-ip", &sip, "--node-name", "node-b"]);
    let cover = ra.ready().features.is_some_and(|f| f.recursion_cover);
    rb.ready();
    // Both share the tracepoint: each one's recursion cover found its own
    // pt_set_state (see set_state_cover in podtrace.bpf.c), where the
    // kernel allows one (features_match_the_kernel checks where).
    if cover {
        assert_recursion_cover(&ra);
        assert_recursion_cover(&rb);
    }
    let (code, size) = curl(&client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200");
    let dst = SocketAddr::new(server.ip.into(), 80);
    let is = |kind: &'static str| move |e: &Event| e.kind.name() == kind && e.dst == dst;
    ra.expect_event("connect on node-a", is("connect"));
    ra.expect_event("client close on node-a", is("close"));
    rb.expect_event("accept on node-b", is("accept"));
    rb.expect_event("server close on node-b", is("close"));
    let (ca, la, ea) = ra.stop();
    let (cb, lb, eb) = rb.stop();
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    if let Some(e) = events(&la).find(|e| matches!(e.kind, EventKind::Accept)) {
        panic!("node-a saw node-b's accept: {e:?}");
    }
    if let Some(e) = events(&lb).find(|e| matches!(e.kind, EventKind::Connect)) {
        panic!("node-b saw node-a's connect: {e:?}");
    }
    let packet_iface = |e: &Event| match &e.kind {
        EventKind::Packet { iface, .. } => Some(iface.clone()),
        _ => None,
    };
    for e in events(&la) {
        if let Some(iface) = packet_iface(e) {
            assert_eq!(iface, client.host_if, "{e:?}");
            assert_eq!(e.node, "node-a");
        }
    }
    for e in events(&lb) {
        if let Some(iface) = packet_iface(e) {
            assert_eq!(iface, server.host_if, "{e:?}");
        }
    }
    // Establishment counted on both sides.
    let established = |e: &Event| matches!(e.kind, EventKind::Established { .. });
    assert!(events(&la).any(established));
    assert!(events(&lb).any(established));
    // The two summaries merged (as the plugin does): one connection, seen
    // by both ends; the packets both saw; both ends' RTT samples.
    let merged = podtrace::flows::merge([
        summary_of(&la).flows.as_slice(),
        summary_of(&lb).flows.as_slice(),
    ]);
    let flow = merged
        .iter()
        .find(|f| f.dst == Some(dst))
        .unwrap_or_else(|| panic!("no flow to {dst}: {merged:?}"));
    assert_eq!(flow.src, Some(client.ip.into()), "{flow:?}");
    assert_eq!(flow.connections, 1, "{flow:?}");
    assert!(
        flow.packets_sent >= 3 && flow.packets_received >= 3,
        "{flow:?}"
    );
    assert!(flow.bytes_received >= size, "{flow:?}");
    assert_eq!(flow.rtt.map(|r| r.count), Some(2), "{flow:?}");
}

/// The runner's `set_state_cover` entry names the `pt_set_state` it holds
/// and carries the addresses the iterators found, folded into `bias`.
fn assert_recursion_cover(runner: &Runner) {
    let progs = bpf_prog_ids_of(runner.pid);
    let cover = bpf_map_ids_of(runner.pid)
        .into_iter()
        .find(|id| {
            let m = bpftool_json("map", "show", *id);
            m["name"] == "set_state_cover" && m["type"] == "array"
        })
        .expect("the runner holds a set_state_cover array");
    let dump = bpftool_json("map", "dump", cover);
    let v = &dump[0]["formatted"]["value"];
    for field in ["bias", "active", "covered_pptr", "self_addr"] {
        assert!(v[field].as_u64().is_some_and(|x| x != 0), "{field}: {v}");
    }
    let prog = v["prog_id"].as_u64().unwrap();
    assert!(
        progs.contains(&prog),
        "prog {prog} is not the runner's: {progs:?}"
    );
    assert_eq!(bpftool_json("prog", "show", prog)["name"], "pt_set_state");
}

/// Errors name the problem in one line: a pod IP that is not on the node.
#[test]
fn pod_not_on_this_node_is_a_clear_error() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node_a = cluster.add_node("node-a", Shape::Routed).unwrap();
    cluster.add_node("node-b", Shape::Routed).unwrap();
    let remote = cluster.add_pod("node-b", "remote").unwrap();
    let runner = Runner::start(&node_a, &["--pod-ip", &remote.ip.to_string()]);
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("pod IP {} is not on this node", remote.ip)),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `--peer-ip` and `--port` filter in the kernel: other traffic of the
/// traced pod does not show.
#[test]
fn peer_and_port_filters() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Routed).unwrap();
    let server = cluster.add_pod("node", "srv").unwrap();
    let peer = cluster.add_pod("node", "peer").unwrap();
    let stranger = cluster.add_pod("node", "stranger").unwrap();
    let _n80 = server.start_nginx(80, None).unwrap();
    let sip = server.ip.to_string();
    let mut runner = Runner::start(
        &node,
        &[
            "--pod-ip",
            &sip,
            "--peer-ip",
            &peer.ip.to_string(),
            "--port",
            "80",
        ],
    );
    runner.ready();
    // Not a peer: filtered. Peer on port 81: filtered. Then the marker.
    assert_eq!(curl(&stranger, &format!("http://{sip}/"), 5).0, "200");
    assert_eq!(curl(&peer, &format!("http://{sip}:81/"), 5).0, "000");
    assert_eq!(curl(&peer, &format!("http://{sip}/"), 5).0, "200");
    runner.expect_event("the peer's close", |e| {
        matches!(e.kind, EventKind::Close { .. }) && e.src.ip() == IpAddr::from(peer.ip)
    });
    let lines = runner.stop_clean();
    let stranger = IpAddr::from(stranger.ip);
    for e in events(&lines) {
        assert!(
            e.src.ip() != stranger && e.dst.ip() != stranger,
            "stranger showed: {e:?}"
        );
        assert!(
            e.src.port() != 81 && e.dst.port() != 81,
            "port 81 showed: {e:?}"
        );
    }
}

/// Every combination of the options that change the verified programs
/// (read-only data: one pod or several, --packets with or without
/// --snaplen, --peer-ip, --port) loads. The verifier judges each combination separately, and Linux 6.18
/// has rejected some program shapes with an internal "verifier bug"
/// (a comparison against one pod's address needed its stack set up early).
#[test]
fn every_filter_combination_loads() {
    require_root();
    let (_cluster, node, a, b) = one_node_two_pods(Shape::Routed, "a", "b");
    let (aip, bip) = (a.ip.to_string(), b.ip.to_string());
    let packet_flags: [&[&str]; 3] = [&[], &["--packets"], &["--packets", "--snaplen", "0"]];
    for packets in packet_flags {
        for both_pods in [false, true] {
            for peer in [false, true] {
                for port in [false, true] {
                    let mut args = vec!["--pod-ip", aip.as_str()];
                    if both_pods {
                        args.extend(["--pod-ip", bip.as_str()]);
                    }
                    args.extend_from_slice(packets);
                    if peer {
                        args.extend(["--peer-ip", bip.as_str()]);
                    }
                    if port {
                        args.extend(["--port", "80"]);
                    }
                    let mut runner = Runner::start(&node, &args);
                    runner.ready();
                    runner.stop_clean();
                }
            }
        }
    }
}

/// More traced pods on a node than the few namespaces the programs
/// compare inline: the namespace scope then comes from its map, and
/// connections between the pods are still seen from both ends.
#[test]
fn many_pods_on_a_node_use_the_scope_map() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Routed).unwrap();
    let pods: Vec<_> = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|n| cluster.add_pod("node", n).unwrap())
        .collect();
    let (client, server) = (&pods[0], &pods[3]);
    let _nginx = server.start_nginx(80, None).unwrap();
    let ips: Vec<String> = pods.iter().map(|p| p.ip.to_string()).collect();
    let mut args = Vec::new();
    for ip in &ips {
        args.extend(["--pod-ip", ip.as_str()]);
    }
    let mut runner = Runner::start(&node, &args);
    runner.ready();
    let sip = server.ip.to_string();
    let (code, _) = curl(client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200");
    let dst = SocketAddr::new(server.ip.into(), 80);
    runner.expect_event("connect from p1", |e| {
        matches!(e.kind, EventKind::Connect) && e.dst == dst && e.comm.as_deref() == Some("curl")
    });
    runner.expect_event("accept on p4", |e| {
        matches!(e.kind, EventKind::Accept) && e.dst == dst
    });
    runner.stop_clean();
}
