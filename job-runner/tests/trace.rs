// SPDX-License-Identifier: Apache-2.0
//! The runner against real kernels, real nginx and real curl in network
//! namespace pods, in both CNI shapes. Needs root (CI runs as root).

mod common;

use std::time::Duration;

use common::*;
use podtrace_netns::{Cluster, Shape};
use serde_json::Value;

/// curl -> nginx on one node with both pods traced: the whole lifecycle,
/// packets on both host-side interfaces, and the summary's counters.
fn lifecycle(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "nginx", "curl");
    let _nginx = server.start_nginx(80, None).unwrap();
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    let ready = runner.ready();
    let ifaces: Vec<&str> = ready["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(ifaces.contains(&server.host_if.as_str()), "{ready}");
    assert!(ifaces.contains(&client.host_if.as_str()), "{ready}");
    let kind = if shape == Shape::Routed {
        "veth"
    } else {
        "bridge-port"
    };
    assert_eq!(ready["interfaces"][0]["kind"], kind, "{ready}");
    // Its stdout is a pipe here, as in a container: grown so that a burst
    // of events does not put the runner to sleep on every write.
    assert!(stdout_pipe_bytes(runner.pid) >= 1 << 20);

    let (code, size) = curl(&client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200");
    let to_server = |v: &Value| {
        ip_of(v, "src") == Some(client.ip.into()) && v["dst"] == format!("{sip}:80").as_str()
    };
    let connect = runner.expect("connect", |v| is_event(v, "connect") && to_server(v));
    assert_eq!(connect["comm"], "curl", "{connect}");
    assert!(connect["pid"].as_u64().unwrap_or(0) > 0, "{connect}");
    assert_eq!(connect["proto"], "tcp");
    runner.expect("accept", |v| is_event(v, "accept") && to_server(v));
    let est = runner.expect("established with rtt", |v| {
        is_event(v, "established") && to_server(v) && v["rtt_us"].as_u64().unwrap_or(0) > 0
    });
    assert!(est["time"].as_str().unwrap().ends_with('Z'));
    runner.expect("client close with the page", |v| {
        is_event(v, "close")
            && to_server(v)
            && v["comm"] == "curl"
            && v["bytes_received"].as_u64().unwrap_or(0) >= size
    });
    // The kernel keeps no state for accepted sockets: the runner orients
    // and times their close from the accept event.
    runner.expect("server close, oriented and timed", |v| {
        is_event(v, "close")
            && to_server(v)
            && v.get("comm").is_none()
            && v["bytes_sent"].as_u64().unwrap_or(0) >= size
            && v["duration_ms"].as_f64().unwrap_or(0.0) > 0.0
    });
    for iface in [&server.host_if, &client.host_if] {
        runner.expect(&format!("SYN packet on {iface}"), |v| {
            is_event(v, "packet") && v["iface"] == iface.as_str() && v["flags"] == "SYN"
        });
    }
    runner.expect("egress packet", |v| {
        is_event(v, "packet") && v["direction"] == "egress" && v["flags"] == "SYN|ACK"
    });

    // Past the reader's poll interval, so a drop at curl's close (its
    // socket's queue purged, QUEUE_PURGE) would have been written.
    std::thread::sleep(Duration::from_millis(300));
    let lines = runner.stop_clean();
    // A healthy exchange loses no packet, so it reports no drop.
    let drops: Vec<&Value> = lines.iter().filter(|v| is_event(v, "drop")).collect();
    assert!(
        drops.is_empty(),
        "a healthy exchange reported drops: {drops:?}"
    );
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f["src"] == cip.as_str() && f["dst"] == format!("{sip}:80").as_str()
    });
    assert_eq!(flow["proto"], "tcp");
    assert_eq!(flow["connections"], 1, "{flow}");
    assert!(flow["packets_sent"].as_u64().unwrap() >= 3, "{flow}");
    assert!(flow["packets_received"].as_u64().unwrap() >= 3, "{flow}");
    assert!(flow["bytes_received"].as_u64().unwrap() >= size, "{flow}");
    assert!(flow["rtt"]["count"].as_u64().unwrap() >= 1, "{flow}");
    assert_eq!(flow["drops"], 0, "{flow}");
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
/// sent by the server's kernel and received by the client.
fn refused(shape: Shape) {
    require_root();
    let (_cluster, node, server, client) = one_node_two_pods(shape, "srv", "cli");
    let (sip, cip) = (server.ip.to_string(), client.ip.to_string());
    let mut runner = Runner::start(&node, &["--pod-ip", &sip, "--pod-ip", &cip]);
    runner.ready();
    let (code, _) = curl(&client, &format!("http://{sip}:81/"), 5);
    assert_eq!(code, "000");
    let dst = format!("{sip}:81");
    let failed = runner.expect("failed", |v| {
        is_event(v, "failed") && v["dst"] == dst.as_str()
    });
    assert_eq!(failed["error"], "ECONNREFUSED", "{failed}");
    assert_eq!(failed["comm"], "curl", "{failed}");
    assert_eq!(ip_of(&failed, "src"), Some(client.ip.into()));
    runner.expect("reset sent", |v| {
        is_event(v, "reset") && v["direction"] == "sent" && v["dst"] == dst.as_str()
    });
    runner.expect("reset received", |v| {
        is_event(v, "reset") && v["direction"] == "received" && v["dst"] == dst.as_str()
    });
    runner.expect("RST packet", |v| {
        is_event(v, "packet") && v["flags"].as_str().unwrap_or("").contains("RST")
    });
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| f["dst"] == dst.as_str());
    assert_eq!(flow["failed"], 1, "{flow}");
    assert_eq!(flow["resets"], 1, "{flow}");
    assert_eq!(flow["src"], cip.as_str());
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
        seen = runner.wait_for(Duration::from_millis(300), |v| is_event(v, "retransmit"));
        if seen.is_some() {
            break;
        }
    }
    let rt = seen.unwrap_or_else(|| panic!("no retransmit; saw:\n{}", runner.dump()));
    assert_eq!(ip_of(&rt, "src"), Some(client.ip.into()), "{rt}");
    assert_eq!(port_of(&rt, "dst"), Some(80), "{rt}");
    assert!(rt["state"].is_string(), "{rt}");
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(total(summary, "retransmits") >= 1, "{summary}");
}

#[test]
fn retransmits_routed() {
    retransmits(Shape::Routed);
}

#[test]
fn retransmits_bridge() {
    retransmits(Shape::Bridge);
}

/// An nftables drop rule in the server pod shows as a drop with its reason.
fn nft_drop(shape: Shape) {
    require_root();
    let (cluster, node, server, client) = one_node_two_pods(shape, "srv", "cli");
    let _nginx = server.start_nginx(80, None).unwrap();
    let sip = server.ip.to_string();
    let rules = "table inet podtrace_test {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 80 drop\n }\n}\n";
    let rules_file = std::env::temp_dir().join(format!("{}nft-drop.nft", cluster.prefix()));
    std::fs::write(&rules_file, rules).unwrap();
    server
        .netns
        .exec("nft", &["-f", rules_file.to_str().unwrap()])
        .unwrap();
    let _ = std::fs::remove_file(&rules_file);
    let mut runner = Runner::start(&node, &["--pod-ip", &sip]);
    runner.ready();
    let (code, _) = curl(&client, &format!("http://{sip}/"), 2);
    assert_eq!(code, "000");
    let drop = runner.expect("drop", |v| {
        is_event(v, "drop") && v["dst"] == format!("{sip}:80").as_str()
    });
    assert_eq!(drop["reason"], "NETFILTER_DROP", "{drop}");
    assert_eq!(ip_of(&drop, "src"), Some(client.ip.into()));
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(total(summary, "drops") >= 1, "{summary}");
}

#[test]
fn nft_drop_routed() {
    nft_drop(Shape::Routed);
}

#[test]
fn nft_drop_bridge() {
    nft_drop(Shape::Bridge);
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
    let pkt = runner.expect("udp packet", |v| {
        is_event(v, "packet") && v["proto"] == "udp" && v["dst"] == to.to_string().as_str()
    });
    assert_eq!(pkt["first"], true, "{pkt}");
    assert_eq!(pkt["iface"], server.host_if.as_str(), "{pkt}");
    udp_send(&client.netns, to, b"again");
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    let flow = flow_where(summary, |f| {
        f["proto"] == "udp" && f["dst"] == to.to_string().as_str()
    });
    assert_eq!(flow["src"], client.ip.to_string().as_str());
    assert!(flow["packets_sent"].as_u64().unwrap() >= 1, "{flow}");
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
    runner.expect("traced close", |v| {
        is_event(v, "close") && v["dst"] == format!("{tip}:80").as_str()
    });
    let lines = runner.stop_clean();
    let other = other_srv.ip.to_string();
    for v in &lines {
        let s = v.to_string();
        if v["type"] == "ready" {
            continue;
        }
        assert!(
            !s.contains(&format!("\"{other}:")) && !s.contains(&format!("\"{other}\"")),
            "untraced traffic showed: {s}"
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
    ra.ready();
    rb.ready();
    // Both share the tracepoint: each one's recursion cover found its own
    // pt_set_state (see set_state_cover in podtrace.bpf.c).
    assert_recursion_cover(&ra);
    assert_recursion_cover(&rb);
    let (code, _) = curl(&client, &format!("http://{sip}/"), 10);
    assert_eq!(code, "200");
    let dst = format!("{sip}:80");
    ra.expect("connect on node-a", |v| {
        is_event(v, "connect") && v["dst"] == dst.as_str()
    });
    ra.expect("client close on node-a", |v| {
        is_event(v, "close") && v["dst"] == dst.as_str()
    });
    rb.expect("accept on node-b", |v| {
        is_event(v, "accept") && v["dst"] == dst.as_str()
    });
    rb.expect("server close on node-b", |v| {
        is_event(v, "close") && v["dst"] == dst.as_str()
    });
    let (ca, la, ea) = ra.stop();
    let (cb, lb, eb) = rb.stop();
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    if let Some(v) = la.iter().find(|v| v["type"] == "accept") {
        panic!("node-a saw node-b's accept: {v}");
    }
    if let Some(v) = lb.iter().find(|v| v["type"] == "connect") {
        panic!("node-b saw node-a's connect: {v}");
    }
    for v in la.iter().filter(|v| v["type"] == "packet") {
        assert_eq!(v["iface"], client.host_if.as_str(), "{v}");
        assert_eq!(v["node"], "node-a");
    }
    for v in lb.iter().filter(|v| v["type"] == "packet") {
        assert_eq!(v["iface"], server.host_if.as_str(), "{v}");
    }
    // Establishment counted on both sides.
    assert!(la.iter().any(|v| v["type"] == "established"));
    assert!(lb.iter().any(|v| v["type"] == "established"));
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
        ready["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"].as_str().unwrap().starts_with(prefix)),
        "{ready}"
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

#[test]
fn cleanup_after_sigterm_tcx() {
    cleanup_after_sigterm("tcx");
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
    for mode in ["tcx", "clsact"] {
        let runner = Runner::start(
            &node,
            &[
                "--pod-ip",
                &a.ip.to_string(),
                "--pod-ip",
                &b.ip.to_string(),
                "--tc-mode",
                mode,
                "--fail-after-hooks",
                "7",
            ],
        );
        let (code, lines, stderr) = runner.finish();
        assert_ne!(code, 0, "{lines:?}");
        assert!(stderr.contains("failing on purpose"), "{stderr}");
        assert!(!lines.iter().any(|v| v["type"] == "ready"));
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
    let lost = runner.expect("lost", |v| v["type"] == "lost");
    assert!(lost["count"].as_u64().unwrap() > 0, "{lost}");
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert!(summary["lost"].as_u64().unwrap() > 0, "{summary}");
    // The kernel's counters still saw every datagram.
    let flow = flow_where(summary, |f| f["proto"] == "udp");
    assert!(flow["packets_sent"].as_u64().unwrap() >= 19_000, "{flow}");
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
    runner.expect("the peer's close", |v| {
        is_event(v, "close") && ip_of(v, "src") == Some(peer.ip.into())
    });
    let lines = runner.stop_clean();
    for v in lines.iter().filter(|v| v.get("src").is_some()) {
        let s = v.to_string();
        assert!(
            !s.contains(&format!("\"{}:", stranger.ip)),
            "stranger showed: {s}"
        );
        assert!(!s.contains(":81\""), "port 81 showed: {s}");
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
    for mode in ["tcx", "clsact"] {
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
        runner.expect("hello", |v| v["type"] == "hello");
        let (code, lines, stderr) = runner.stop();
        assert_eq!(code, 0, "{mode}: {stderr}");
        assert!(
            lines.iter().any(|v| v["type"] == "summary"),
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
/// (read-only data: one pod or several, --packets, --peer-ip, --port)
/// loads. The verifier judges each combination separately, and Linux 6.18
/// has rejected some program shapes with an internal "verifier bug"
/// (a comparison against one pod's address needed its stack set up early).
#[test]
fn every_filter_combination_loads() {
    require_root();
    let (_cluster, node, a, b) = one_node_two_pods(Shape::Routed, "a", "b");
    let (aip, bip) = (a.ip.to_string(), b.ip.to_string());
    for packets in [false, true] {
        for both_pods in [false, true] {
            for peer in [false, true] {
                for port in [false, true] {
                    let mut args = vec!["--pod-ip", aip.as_str()];
                    if both_pods {
                        args.extend(["--pod-ip", bip.as_str()]);
                    }
                    if packets {
                        args.push("--packets");
                    }
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
    let dst = format!("{sip}:80");
    runner.expect("connect from p1", |v| {
        is_event(v, "connect") && v["dst"] == dst.as_str() && v["comm"] == "curl"
    });
    runner.expect("accept on p4", |v| {
        is_event(v, "accept") && v["dst"] == dst.as_str()
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
    let tcp_to = format!("{sip}:80");
    runner.expect("the last datagram", |v| {
        is_event(v, "packet") && v["proto"] == "udp"
    });
    // Past the reader's poll interval: every packet event is written.
    std::thread::sleep(Duration::from_millis(300));
    let lines = runner.stop_clean();
    let summary = summary_of(&lines);
    assert_eq!(summary["lost"], 0, "{summary}");
    for (proto, to) in [("tcp", tcp_to.as_str()), ("udp", &udp_to.to_string())] {
        let flow = flow_where(summary, |f| f["proto"] == proto && f["dst"] == to);
        let packets = |forward: bool| -> (u64, u64) {
            let evs = lines.iter().filter(|v| {
                is_event(v, "packet")
                    && v["proto"] == proto
                    && ip_of(v, if forward { "src" } else { "dst" }) == Some(client.ip.into())
                    && v[if forward { "dst" } else { "src" }] == to
            });
            evs.fold((0, 0), |(n, b), v| (n + 1, b + v["len"].as_u64().unwrap()))
        };
        let (sent, sent_bytes) = packets(true);
        let (received, received_bytes) = packets(false);
        assert!(sent >= 3, "{proto}: {sent} packets sent");
        assert_eq!(flow["packets_sent"], sent, "{flow}");
        assert_eq!(flow["bytes_sent"], sent_bytes, "{flow}");
        assert_eq!(flow["packets_received"], received, "{flow}");
        assert_eq!(flow["bytes_received"], received_bytes, "{flow}");
    }
}
