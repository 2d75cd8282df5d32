// SPDX-License-Identifier: Apache-2.0
//! The runner against real kernels, real nginx and real curl in network
//! namespace pods, in both CNI shapes. Needs root (CI runs as root).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use podtrace::event::{
    Direction, DropSite, End, Event, EventKind, Features, Message, Proto, ResetDirection,
};
use podtrace_netns::{Cluster, Shape};

/// curl -> nginx on one node with both pods traced: the whole lifecycle,
/// packets on both host-side interfaces, and the summary's counters.
fn lifecycle(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "nginx", "curl");
    let _nginx = server.start_nginx(80, None).unwrap();
    let marker_to = SocketAddr::new(server.ip.into(), 5353);
    let _listener = udp_listener(&server.netns, marker_to.ip(), marker_to.port());
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let ready = runner.ready();
    let ifaces: Vec<&str> = ready.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert!(ifaces.contains(&server.host_if.as_str()), "{ready:?}");
    assert!(ifaces.contains(&client.host_if.as_str()), "{ready:?}");
    let kind = if shape == Shape::Routed {
        "veth"
    } else {
        "bridge-port"
    };
    assert_eq!(ready.interfaces[0].kind, kind, "{ready:?}");
    // Its stdout is a pipe here, as in a container: grown so that a burst
    // of events does not put the runner to sleep on every write.
    assert!(stdout_pipe_bytes(runner.pid) >= 1 << 20);

    let (code, size) = curl(&client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200");
    let server_addr = SocketAddr::new(server.ip.into(), 80);
    let to_server = |e: &Event| e.src.ip() == IpAddr::from(client.ip) && e.dst == server_addr;
    let connect = runner.expect_event("connect", |e| {
        matches!(e.kind, EventKind::Connect) && to_server(e)
    });
    assert_eq!(connect.comm.as_deref(), Some("curl"), "{connect:?}");
    assert!(connect.pid.unwrap_or(0) > 0, "{connect:?}");
    assert_eq!(connect.proto, Proto::Tcp);
    runner.expect_event("accept", |e| {
        matches!(e.kind, EventKind::Accept) && to_server(e)
    });
    let est = runner.expect_event("established with rtt", |e| {
        matches!(e.kind, EventKind::Established { rtt_us } if rtt_us > 0) && to_server(e)
    });
    assert!(est.time.ends_with('Z'));
    // Bytes per direction of the flow whichever end reports the close:
    // the page is server -> client (`bytes_received`) in both.
    runner.expect_event("client close with the page", |e| {
        matches!(e.kind, EventKind::Close { bytes_received, .. } if bytes_received >= size)
            && to_server(e)
            && e.end == Some(End::Client)
            && e.comm.as_deref() == Some("curl")
    });
    // The kernel keeps no state for accepted sockets: the runner orients
    // and times their close from the accept event.
    runner.expect_event("server close, oriented and timed", |e| {
        matches!(e.kind, EventKind::Close { bytes_sent, bytes_received, duration_ms }
            if bytes_received >= size && bytes_sent < size && duration_ms > 0.0)
            && to_server(e)
            && e.end == Some(End::Server)
            && e.comm.is_none()
    });
    for iface in [&server.host_if, &client.host_if] {
        runner.expect_event(&format!("SYN packet on {iface}"), |e| {
            matches!(&e.kind, EventKind::Packet { iface: i, flags, .. } if i == iface && flags == "SYN")
        });
    }
    runner.expect_event("egress packet", |e| {
        matches!(&e.kind, EventKind::Packet { direction: Direction::Egress, flags, .. } if flags == "SYN|ACK")
    });

    // A datagram after both closes: its event comes after anything the
    // closes made the kernel report (one ring buffer, in order), such as
    // a drop when a socket's queue is purged (QUEUE_PURGE).
    udp_send(&client.netns, marker_to, b"marker");
    runner.expect_event("the marker datagram", |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp && e.dst == marker_to
    });
    let lines = runner.stop_clean();
    // A healthy exchange loses no packet, so it reports no drop.
    let drops: Vec<&Event> = events(&lines)
        .filter(|e| matches!(e.kind, EventKind::Drop { .. }))
        .collect();
    assert!(
        drops.is_empty(),
        "a healthy exchange reported drops: {drops:?}"
    );
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f.src == Some(client.ip.into()) && f.dst == Some(server_addr)
    });
    assert_eq!(flow.proto, Some(Proto::Tcp));
    assert_eq!(flow.connections, 1, "{flow:?}");
    assert!(flow.packets_sent >= 3, "{flow:?}");
    assert!(flow.packets_received >= 3, "{flow:?}");
    assert!(flow.bytes_received >= size, "{flow:?}");
    assert!(flow.rtt.is_some_and(|r| r.count >= 1), "{flow:?}");
    assert_eq!(flow.drops, 0, "{flow:?}");
    // Nothing of ours is left on the pods' interfaces.
    for iface in [&server.host_if, &client.host_if] {
        let left = attached_to(&node.netns, iface);
        assert!(left.trim().is_empty(), "left on {iface}: {left}");
    }
}

#[test]
fn lifecycle_routed() {
    lifecycle(Shape::Routed);
}

#[test]
fn lifecycle_bridge() {
    lifecycle(Shape::Bridge);
}

/// A refused connection: `failed` ECONNREFUSED on the client, a reset
/// sent by the server's kernel (from Linux 6.10, which reports resets sent
/// without a socket) and received by the client.
fn refused(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "srv", "cli");
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let features = runner
        .ready()
        .features
        .expect("the ready line lists features");
    let (code, _) = curl(&client, &format!("http://{sip}:81/"), 5);
    assert_eq!(code, "000");
    let dst = SocketAddr::new(server.ip.into(), 81);
    let failed = runner.expect_event("failed", |e| {
        matches!(e.kind, EventKind::Failed { .. }) && e.dst == dst
    });
    assert_eq!(
        failed.kind,
        EventKind::Failed {
            error: Some("ECONNREFUSED".into())
        },
        "{failed:?}"
    );
    assert_eq!(failed.comm.as_deref(), Some("curl"), "{failed:?}");
    assert_eq!(failed.src.ip(), IpAddr::from(client.ip));
    // One reset, sent by the server's kernel (from Linux 6.10, which
    // reports resets sent without a socket), received by the client.
    let resets: &[(ResetDirection, End)] = if features.reset_without_socket {
        &[
            (ResetDirection::Sent, End::Server),
            (ResetDirection::Received, End::Client),
        ]
    } else {
        &[(ResetDirection::Received, End::Client)]
    };
    for &(direction, end) in resets {
        runner.expect_event(&format!("reset {}", direction.as_str()), |e| {
            e.kind == EventKind::Reset { direction } && e.dst == dst && e.end == Some(end)
        });
    }
    runner.expect_event(
        "RST packet",
        |e| matches!(&e.kind, EventKind::Packet { flags, .. } if flags.contains("RST")),
    );
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| f.dst == Some(dst));
    assert_eq!(flow.failed, 1, "{flow:?}");
    // Server -> client, seen sent and received: counted once.
    assert_eq!((flow.resets_sent, flow.resets_received), (0, 1), "{flow:?}");
    assert_eq!(flow.src, Some(client.ip.into()));
}

#[test]
fn refused_routed() {
    refused(Shape::Routed);
}

#[test]
fn refused_bridge() {
    refused(Shape::Bridge);
}

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
fn retransmits(shape: Shape) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods(shape, "srv", "cli");
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    runner.ready();
    inject_loss(&client.netns, &cluster.prefix());
    let mut seen = None;
    for _ in 0..20 {
        let _ = curl(&client, &format!("http://{sip}/"), 3);
        seen = runner.wait_event(Duration::from_millis(300), |e| {
            matches!(e.kind, EventKind::Retransmit { .. })
        });
        if seen.is_some() {
            break;
        }
    }
    let rt = seen.unwrap_or_else(|| panic!("no retransmit; saw:\n{}", runner.dump()));
    assert_eq!(rt.src.ip(), IpAddr::from(client.ip), "{rt:?}");
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
    retransmits(Shape::Routed);
}

#[test]
fn retransmits_bridge() {
    retransmits(Shape::Bridge);
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
fn drop_sites(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "srv", "cli");
    // The node's firewall (bridged traffic too: br_netfilter), one in
    // each pod; nothing listens on 81.
    drop_rule(&node.netns, "forward", 82);
    drop_rule(&server.netns, "input", 83);
    drop_rule(&client.netns, "output", 84);
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
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
        let (code, _) = curl(&client, &format!("http://{sip}:{port}/"), 1);
        assert_eq!(code, "000");
        let dst = SocketAddr::new(server.ip.into(), port);
        let drop = runner.expect_event(&format!("drop to {dst}"), |e| {
            matches!(e.kind, EventKind::Drop { .. }) && e.dst == dst
        });
        assert_eq!(drop.src.ip(), IpAddr::from(client.ip), "{drop:?}");
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
    drop_sites(Shape::Routed);
}

#[test]
fn drop_sites_bridge() {
    drop_sites(Shape::Bridge);
}

/// A datagram to a UDP listener shows as a first packet and a UDP flow.
fn udp(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "dns", "cli");
    let sip = server.ip.to_string();
    let _listener = udp_listener(&server.netns, server.ip.into(), 5353);
    let mut runner = Runner::start(&node, &["--pod-ip", &sip]);
    runner.ready();
    let to = std::net::SocketAddr::new(server.ip.into(), 5353);
    udp_send(&client.netns, to, b"hello");
    let pkt = runner.expect_event("udp packet", |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp && e.dst == to
    });
    assert!(
        matches!(&pkt.kind, EventKind::Packet { first: true, iface, .. } if *iface == server.host_if),
        "{pkt:?}"
    );
    udp_send(&client.netns, to, b"again");
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f.proto == Some(Proto::Udp) && f.dst == Some(to)
    });
    assert_eq!(flow.src, Some(client.ip.into()));
    assert!(flow.packets_sent >= 1, "{flow:?}");
}

#[test]
fn udp_routed() {
    udp(Shape::Routed);
}

#[test]
fn udp_bridge() {
    udp(Shape::Bridge);
}

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

/// After SIGTERM nothing of ours remains: no tcx link or clsact filter on
/// the interfaces, no BPF program; a clsact qdisc that was there before
/// stays, one we created goes.
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

fn cleanup_after_sigterm(mode: &str) {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Routed).unwrap();
    let a = cluster.add_pod("node", "a").unwrap();
    let b = cluster.add_pod("node", "b").unwrap();
    // A qdisc someone else created on b's interface.
    node.netns
        .exec("tc", &["qdisc", "add", "dev", &b.host_if, "clsact"])
        .unwrap();
    let mut runner = Runner::start(
        &node,
        &[
            "--pod-ip",
            &a.ip.to_string(),
            "--pod-ip",
            &b.ip.to_string(),
            "--tc-mode",
            mode,
        ],
    );
    let ready = runner.ready();
    let prefix = if mode == "clsact" { "tc/" } else { "tcx/" };
    assert!(
        ready.hooks.iter().any(|h| h.kind.starts_with(prefix)),
        "{ready:?}"
    );
    let progs = bpf_prog_ids_of(runner.pid);
    assert!(progs.len() >= 7, "runner holds programs {progs:?}");
    if mode == "clsact" {
        // (Debian's bpftool 7.1 and tc do not list tcx links; for tcx the
        // program IDs below are the proof.)
        assert!(!attached_to(&node.netns, &a.host_if).trim().is_empty());
    }
    runner.stop_clean();
    for iface in [&a.host_if, &b.host_if] {
        let left = attached_to(&node.netns, iface);
        assert!(left.trim().is_empty(), "left on {iface}: {left}");
    }
    for id in progs {
        assert!(!bpf_prog_exists(id), "BPF program {id} outlived the runner");
    }
    let qdiscs_a = sh(node
        .netns
        .command("tc")
        .args(["qdisc", "show", "dev", &a.host_if]));
    let qdiscs_b = sh(node
        .netns
        .command("tc")
        .args(["qdisc", "show", "dev", &b.host_if]));
    assert!(!qdiscs_a.contains("clsact"), "our qdisc stayed: {qdiscs_a}");
    assert!(
        qdiscs_b.contains("clsact"),
        "someone else's qdisc went: {qdiscs_b}"
    );
}

/// tcx where the kernel has it (6.6); elsewhere asking for it is a clear
/// error that names what is missing, and nothing is left attached.
#[test]
fn cleanup_after_sigterm_tcx() {
    if kernel_features().tcx {
        cleanup_after_sigterm("tcx");
        return;
    }
    require_root();
    let (_cluster, node, a, _b) = one_node_two_pods(Shape::Routed, "a", "b");
    let runner = Runner::start(&node, &["--pod-ip", &a.ip.to_string(), "--tc-mode", "tcx"]);
    let (code, _, stderr) = runner.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--tc-mode tcx needs Linux 6.6"), "{stderr}");
    let left = attached_to(&node.netns, &a.host_if);
    assert!(left.trim().is_empty(), "left on {}: {left}", a.host_if);
}

#[test]
fn cleanup_after_sigterm_clsact() {
    cleanup_after_sigterm("clsact");
}

/// An error after some hooks are attached still removes them all.
#[test]
fn cleanup_after_error_mid_attach() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Bridge).unwrap();
    let a = cluster.add_pod("node", "a").unwrap();
    let b = cluster.add_pod("node", "b").unwrap();
    for &mode in tc_modes() {
        let runner = Runner::start(
            &node,
            &[
                "--pod-ip",
                &a.ip.to_string(),
                "--pod-ip",
                &b.ip.to_string(),
                "--tc-mode",
                mode,
                // The tracepoint programs (8 where the kernel has every
                // feature), then one interface of two.
                "--fail-after-hooks",
                "9",
            ],
        );
        let (code, lines, stderr) = runner.finish();
        assert_ne!(code, 0, "{lines:?}");
        assert!(stderr.contains("failing on purpose"), "{stderr}");
        assert!(!lines.iter().any(|m| matches!(m, Message::Ready(_))));
        for iface in [&a.host_if, &b.host_if] {
            let left = attached_to(&node.netns, iface);
            assert!(left.trim().is_empty(), "{mode}: left on {iface}: {left}");
            let q = sh(node
                .netns
                .command("tc")
                .args(["qdisc", "show", "dev", iface]));
            assert!(!q.contains("clsact"), "{mode}: qdisc left on {iface}: {q}");
        }
    }
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

/// When the reader falls behind, the kernel counts what it could not queue
/// and the runner reports it: `lost` lines and the summary's `lost`.
#[test]
fn overflow_is_reported_as_lost() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Routed).unwrap();
    let server = cluster.add_pod("node", "srv").unwrap();
    let client = cluster.add_pod("node", "cli").unwrap();
    let _listener = udp_listener(&server.netns, server.ip.into(), 9000);
    let sip = server.ip.to_string();
    let mut runner = Runner::start(
        &node,
        &["--pod-ip", &sip, "--packets", "--ring-buffer-mib", "1"],
    );
    runner.ready();
    // Freeze the reader, then queue more than 1 MiB of events (20k x 128 B).
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(runner.pid as i32, libc::SIGSTOP) };
    let to = std::net::SocketAddr::new(server.ip.into(), 9000);
    in_netns(&client.netns, move || {
        let s = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        for _ in 0..20_000 {
            let _ = s.send_to(b"x", to);
        }
    })
    .join()
    .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(runner.pid as i32, libc::SIGCONT) };
    let lost = runner.expect("lost", |m| matches!(m, Message::Lost(_)));
    assert!(
        matches!(&lost, Message::Lost(l) if l.body.count > 0),
        "{lost:?}"
    );
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(summary.lost > 0, "{summary:?}");
    // The kernel's counters still saw every datagram.
    let flow = flow_where(summary, |f| f.proto == Some(Proto::Udp));
    assert!(flow.packets_sent >= 19_000, "{flow:?}");
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

/// SIGTERM while the runner is still finding pods and attaching: a clean
/// exit, and nothing left behind.
#[test]
fn sigterm_during_attach_leaves_nothing() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Bridge).unwrap();
    let a = cluster.add_pod("node", "a").unwrap();
    let b = cluster.add_pod("node", "b").unwrap();
    for &mode in tc_modes() {
        let mut runner = Runner::start(
            &node,
            &[
                "--pod-ip",
                &a.ip.to_string(),
                "--pod-ip",
                &b.ip.to_string(),
                "--tc-mode",
                mode,
            ],
        );
        // `hello` is written once the signal handlers are in place, before
        // anything is attached.
        runner.expect("hello", |m| matches!(m, Message::Hello(_)));
        let (code, lines, stderr) = runner.stop();
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert!(
            lines.iter().any(|m| matches!(m, Message::Summary(_))),
            "{mode}: {lines:?}"
        );
        for iface in [&a.host_if, &b.host_if] {
            let left = attached_to(&node.netns, iface);
            assert!(left.trim().is_empty(), "{mode}: left on {iface}: {left}");
            let q = sh(node
                .netns
                .command("tc")
                .args(["qdisc", "show", "dev", iface]));
            assert!(!q.contains("clsact"), "{mode}: qdisc left on {iface}: {q}");
        }
    }
}

/// A SIGKILLed runner cannot clean up clsact filters (tcx links die with
/// it); the next runner on the node takes them over and removes them.
#[test]
fn next_runner_clears_filters_of_a_killed_one() {
    require_root();
    let cluster = Cluster::new().unwrap();
    let node = cluster.add_node("node", Shape::Routed).unwrap();
    let a = cluster.add_pod("node", "a").unwrap();
    let ip = a.ip.to_string();
    let args = ["--pod-ip", ip.as_str(), "--tc-mode", "clsact"];
    let mut first = Runner::start(&node, &args);
    first.ready();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.pid as i32, libc::SIGKILL) };
    let _ = first.finish();
    assert!(!attached_to(&node.netns, &a.host_if).trim().is_empty());
    let mut second = Runner::start(&node, &args);
    second.ready();
    second.stop_clean();
    let left = attached_to(&node.netns, &a.host_if);
    assert!(left.trim().is_empty(), "left: {left}");
}

/// Every combination of the options that change the verified programs
/// (read-only data: one pod or several, --packets with or without
/// --snaplen, --peer-ip, --port)
/// loads. The verifier judges each combination separately, and Linux 6.18
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

/// The summary's packet and byte counters of each flow are exactly the
/// packets the runner reported one by one (`--packets`, one traced pod, so
/// every packet at its interface is counted once), also while packets of
/// two flows interleave (each CPU caches the flow it counted last and
/// hands the counts over when the next packet is another flow's).
#[test]
fn flow_counters_match_the_packets_reported() {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(Shape::Routed, "nginx", "cli");
    let _nginx = server.start_nginx(80, None).unwrap();
    let sip = server.ip.to_string();
    let _listener = udp_listener(&server.netns, server.ip.into(), 5353);
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--packets"]);
    runner.ready();
    let udp_to = std::net::SocketAddr::new(server.ip.into(), 5353);
    for _ in 0..3 {
        let (code, _) = curl(&client, &format!("http://{sip}/"), 10);
        assert_eq!(code, "200");
        udp_send(&client.netns, udp_to, b"between");
    }
    let tcp_to = SocketAddr::new(server.ip.into(), 80);
    // A connection's last packet (the client's final ACK) closes the
    // server's socket: after three closes and three datagrams, every
    // packet has been counted and its event written.
    runner.expect_events("server closes", 3, |e| {
        matches!(e.kind, EventKind::Close { .. }) && e.dst == tcp_to
    });
    runner.expect_events("datagrams", 3, |e| {
        matches!(e.kind, EventKind::Packet { .. }) && e.proto == Proto::Udp
    });
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert_eq!(summary.lost, 0, "{summary:?}");
    let client_ip = IpAddr::from(client.ip);
    for (proto, to) in [(Proto::Tcp, tcp_to), (Proto::Udp, udp_to)] {
        let flow = flow_where(summary, |f| f.proto == Some(proto) && f.dst == Some(to));
        let packets = |forward: bool| -> (u64, u64) {
            events(&lines)
                .filter(|e| e.proto == proto)
                .filter_map(|e| match e.kind {
                    EventKind::Packet { len, .. } => Some((e, len)),
                    _ => None,
                })
                .filter(|(e, _)| {
                    let (ours, theirs) = if forward {
                        (e.src, e.dst)
                    } else {
                        (e.dst, e.src)
                    };
                    ours.ip() == client_ip && theirs == to
                })
                .fold((0, 0), |(n, b), (_, len)| (n + 1, b + u64::from(len)))
        };
        let (sent, sent_bytes) = packets(true);
        let (received, received_bytes) = packets(false);
        assert!(sent >= 3, "{proto}: {sent} packets sent");
        assert_eq!(flow.packets_sent, sent, "{flow:?}");
        assert_eq!(flow.bytes_sent, sent_bytes, "{flow:?}");
        assert_eq!(flow.packets_received, received, "{flow:?}");
        assert_eq!(flow.bytes_received, received_bytes, "{flow:?}");
    }
}

/// The `ready` line's features are what each kernel version has (the
/// kernel matrix runs this on 5.10, 6.1, 6.12 and the host's kernel).
#[test]
fn features_match_the_kernel() {
    require_root();
    let (_cluster, node, a, _b) = one_node_two_pods(Shape::Routed, "a", "b");
    let mut runner = Runner::start(&node, &["--pod-ip", &a.ip.to_string()]);
    let ready = runner.ready();
    let features = ready.features.expect("the ready line lists features");
    let hello = hello_of(&runner.seen).clone();
    let release = hello.kernel.clone();
    // The kernel matrix builds docs/kernels.md's table from these lines.
    if let Some(dir) = std::env::var_os("PODTRACE_MATRIX_OUT") {
        let lines = [Message::hello(hello), Message::ready(ready)]
            .map(|m| serde_json::to_string(&m).unwrap() + "\n")
            .concat();
        std::fs::write(std::path::Path::new(&dir).join("ready.json"), lines)
            .expect("write the matrix's ready line");
    }
    let at_least = |major: u32, minor: u32| {
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (major, minor)
    };
    let want = Features {
        drop_reasons: at_least(5, 17),
        tcx: at_least(6, 6),
        reset_without_socket: at_least(6, 10),
        skipped_runs: at_least(5, 12),
        recursion_cover: at_least(6, 2),
        error_report: at_least(5, 14),
    };
    assert_eq!(features, want, "on {release}");
    assert_eq!(kernel_features().tcx, want.tcx);
    runner.stop_clean();
}
