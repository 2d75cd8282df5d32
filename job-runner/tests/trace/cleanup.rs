// SPDX-License-Identifier: Apache-2.0
//! Nothing left behind: after SIGTERM (tcx and clsact), after an error
//! mid-attach, after SIGTERM during attach, and after a SIGKILLed runner
//! (the next one takes its clsact filters over).

use super::common::*;
use podtrace::event::Message;
use podtrace_netns::{Cluster, Shape};

/// After SIGTERM nothing of ours remains: no tcx link or clsact filter on
/// the interfaces, no BPF program; a clsact qdisc that was there before
/// stays, one we created goes.
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
