// SPDX-License-Identifier: Apache-2.0
//! `--write`: the plugin with the real runner in the sandbox
//! (`curl_to_nginx_across_two_nodes`), its capture read by the real tshark.
//! Needs root (network namespaces, eBPF): CI runs as root.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace::event::{EventKind, Message};
use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};

#[path = "../src/pcapng/tshark.rs"]
mod tshark;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");

/// `curl-demo` on node-1, `nginx-demo` on node-2, traced by the real runner
/// (the sandbox's default: `PODTRACE_RUNNER_BIN`, else the one built
/// with the workspace), run by the sandbox's kubelet as a process.
async fn sandbox() -> Sandbox {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    Sandbox::start(SandboxConfig {
        pods: vec![
            PodManifest::curl_demo().on_node("node-1"),
            PodManifest::nginx_demo().on_node("node-2"),
        ],
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

/// `kubectl podtrace curl-demo nginx-demo -o json --write -` while curl
/// fetches a page: the capture from stdout, the JSON lines from stderr.
#[tokio::test(flavor = "multi_thread")]
async fn write_to_stdout_gives_wireshark_every_packet_with_pod_names() {
    let sb = sandbox().await;
    let mut child = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["curl-demo", "nginx-demo", "-o", "json", "--write", "-"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    let mut stdout = child.stdout.take().unwrap();
    let capture = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    // Reads stderr lines until `done` holds (bounded).
    let wait_for = |seen: &mut Vec<String>, what: &str, done: &dyn Fn(&[String]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("no {what}; stderr:\n{}", seen.join("\n")),
            }
        }
    };
    let count = |seen: &[String], ty: &str| {
        seen.iter()
            .filter(|l| Message::parse(l).is_ok_and(|m| m.type_name() == ty))
            .count()
    };
    wait_for(&mut seen, "ready lines", &|s| count(s, "ready") == 2);
    let ip = sb.pod_ip("default", "nginx-demo").await.unwrap();
    let url = format!("http://{ip}/podtrace-write-check");
    let out = sb
        .exec(
            "default",
            "curl-demo",
            &["curl", "-s", "-o", "/dev/null", &url],
        )
        .unwrap();
    assert!(out.status.success());
    // Both ends' FINs at both nodes: the connection is over.
    wait_for(&mut seen, "FIN packets", &|s| {
        s.iter().filter(|l| l.contains("\"FIN|ACK\"")).count() >= 4
    });
    // And a closed port: the SYN dies in nginx-demo (NO_SOCKET).
    let closed = format!("http://{ip}:81/");
    let out = sb
        .exec("default", "curl-demo", &["curl", "-s", &closed])
        .unwrap();
    assert!(!out.status.success(), "refused");
    wait_for(&mut seen, "the SYN's drop", &|s| count(s, "drop") >= 1);
    let status = common::interrupt_and_wait(&mut child);
    let bytes = capture.join().unwrap().unwrap();
    seen.extend(lines.iter());
    assert!(status.success(), "{}", seen.join("\n"));

    let events: Vec<_> = seen
        .iter()
        .filter_map(|l| match Message::parse(l) {
            Ok(Message::Event(e)) => Some(e),
            _ => None,
        })
        .collect();
    let packets: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Packet { .. }))
        .collect();
    // Drops placed at a traced pod's interface go into the file too.
    let drops: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Drop { iface: Some(_), .. }))
        .collect();
    assert!(packets.len() >= 16, "{}", seen.join("\n"));
    assert!(
        packets
            .iter()
            .all(|e| matches!(e.kind, EventKind::Packet { data: None, .. })),
        "the JSON output is as without --write: no packet bytes"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let rows = tshark::fields(
        file.path(),
        &["-N", "n"],
        &[
            "frame.interface_id",
            "frame.interface_name",
            "frame.time_epoch",
            "ip.src_host",
            "ip.dst_host",
        ],
    );
    assert_eq!(
        rows.len(),
        packets.len() + drops.len(),
        "one frame per packet and drop event"
    );
    let summary = format!(
        "wrote {} packets to stdout (pcapng)",
        packets.len() + drops.len()
    );
    assert!(seen.contains(&summary), "{}", seen.join("\n"));

    let names: BTreeSet<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    let on = |node: &str, pod: &str| {
        names
            .iter()
            .any(|n| n.starts_with(&format!("{node}/")) && n.ends_with(&format!(" ({pod})")))
    };
    assert!(on("node-1", "default/curl-demo"), "{names:?}");
    assert!(on("node-2", "default/nginx-demo"), "{names:?}");
    let hosts: BTreeSet<&str> = rows.iter().flat_map(|r| [&*r[3], &*r[4]]).collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["default/curl-demo", "default/nginx-demo"]),
        "tshark -N n names every address"
    );
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &rows {
        let t: f64 = r[2].parse().unwrap();
        let prev = last.insert(&r[0], t).unwrap_or(0.0);
        assert!(t >= prev, "interface {}'s times go back: {rows:?}", r[0]);
    }
    // The request's bytes, leaving curl-demo and entering nginx-demo (by
    // content: Wireshark takes the second sighting for a retransmission).
    let requests = tshark::fields(
        file.path(),
        &[
            "-Y",
            "frame contains \"GET /podtrace-write-check HTTP/1.1\"",
        ],
        &["frame.interface_id"],
    );
    assert_eq!(requests, [["0"], ["1"]], "{rows:?}");
    let comments = tshark::fields(file.path(), &["-Y", "frame.comment"], &["frame.comment"]);
    assert_eq!(
        comments,
        [["dropped by the kernel in the pod: NO_SOCKET"]],
        "{rows:?}"
    );
}

/// A capture file that cannot be created fails the command in one line,
/// before any Job exists.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_cannot_be_written_fails_before_any_job() {
    let sb = sandbox().await;
    let out = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["curl-demo", "nginx-demo"])
        .args(["--write", "/nonexistent-podtrace-dir/trace.pcapng"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: cannot create /nonexistent-podtrace-dir/trace.pcapng (--write): No such file or \
         directory (os error 2); give a file in a directory you can write"
    );
    let jobs = sb
        .kubectl()
        .args(["get", "jobs", "-n", "podtrace", "-o", "name"])
        .output()
        .unwrap();
    assert!(jobs.status.success());
    assert_eq!(String::from_utf8_lossy(&jobs.stdout), "", "no trace Job");
}
