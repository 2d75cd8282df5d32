// SPDX-License-Identifier: Apache-2.0
//! What the kernel tells the runner: its features in the `ready` line (the
//! kernel matrix runs this on every kernel), and events it could not queue
//! reported as lost.

use super::common::*;
use podtrace::event::{Features, Message, Proto};
use podtrace_netns::{Cluster, Shape};

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
