// SPDX-License-Identifier: Apache-2.0
//! The plugin on a dual-stack sandbox with the real runner
//! (`curl_to_nginx_across_two_nodes` over IPv6): each runner traces both
//! addresses of its pod and filters on both of the peer's, and a curl to
//! nginx-demo's IPv6 address shows with pod names. Needs root (network
//! namespaces, eBPF): CI runs as root.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace::event::{EventKind, Message};
use podtrace_sandbox::{IpFamily, PodManifest, Sandbox, SandboxConfig};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");

/// Both addresses of `pod`, the primary family first.
fn pod_ips(sb: &Sandbox, pod: &str) -> Vec<IpAddr> {
    let p = sb
        .get_object("pod", "default", pod)
        .expect("the pod exists");
    p["status"]["podIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ip"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// The cluster DNS's addresses a two-sided trace lets through besides the
/// peer's: kube-dns's ClusterIP, then its pods' (EndpointSlice) addresses.
fn cluster_dns_ips(sb: &Sandbox) -> Vec<IpAddr> {
    let svc = sb
        .get_object("service", "kube-system", "kube-dns")
        .expect("the cluster DNS Service exists");
    let mut ips: Vec<IpAddr> = vec![svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap()];
    let dns_pods = sb
        .kubectl()
        .args(["get", "endpointslices", "-n", "kube-system"])
        .args(["-l", "kubernetes.io/service-name=kube-dns"])
        .args(["-o", "jsonpath={.items[*].endpoints[*].addresses[*]}"])
        .output()
        .unwrap();
    ips.extend(
        String::from_utf8_lossy(&dns_pods.stdout)
            .split_whitespace()
            .map(|a| a.parse::<IpAddr>().unwrap()),
    );
    ips
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_over_ipv6_is_traced_with_pod_names_on_a_dual_stack_cluster() {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let sb = Sandbox::start(SandboxConfig {
        ip_family: IpFamily::Dual,
        pods: vec![
            PodManifest::curl_demo().on_node("node-1"),
            PodManifest::nginx_demo().on_node("node-2"),
        ],
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let (curl_ips, nginx_ips) = (pod_ips(&sb, "curl-demo"), pod_ips(&sb, "nginx-demo"));
    assert_eq!((curl_ips.len(), nginx_ips.len()), (2, 2));
    let nginx6 = nginx_ips[1];
    assert!(nginx6.is_ipv6());

    let mut child = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["curl-demo", "nginx-demo", "-o", "json"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    let (tx, lines) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut seen: Vec<String> = Vec::new();
    let messages = |seen: &[String]| -> Vec<Message> {
        seen.iter().filter_map(|l| Message::parse(l).ok()).collect()
    };
    let wait_for = |seen: &mut Vec<String>, what: &str, done: &dyn Fn(&[Message]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&messages(seen)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("no {what}; output:\n{}", seen.join("\n")),
            }
        }
    };
    wait_for(&mut seen, "ready lines", &|m| {
        m.iter().filter(|m| matches!(m, Message::Ready(_))).count() == 2
    });
    // Each runner: both addresses of its pod, both of the peer's, then the
    // cluster DNS's (its lookups).
    let dns_ips = cluster_dns_ips(&sb);
    for m in messages(&seen) {
        if let Message::Ready(r) = m {
            let (own, peer) = if r.body.node == "node-1" {
                (&curl_ips, &nginx_ips)
            } else {
                (&nginx_ips, &curl_ips)
            };
            assert_eq!(&r.body.pod_ips, own, "{}", r.body.node);
            let want: Vec<IpAddr> = peer.iter().chain(&dns_ips).copied().collect();
            assert_eq!(r.body.peer_ips, want, "{}", r.body.node);
        }
    }

    let url = format!("http://[{nginx6}]/");
    let out = sb
        .exec(
            "default",
            "curl-demo",
            &["curl", "-sS", "-g", "-o", "/dev/null", &url],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let to = SocketAddr::new(nginx6, 80);
    wait_for(&mut seen, "the IPv6 connection at both ends", &|m| {
        let named_established = |node: &str| {
            m.iter().any(|m| match m {
                Message::Event(e) => {
                    e.node == node
                        && matches!(e.kind, EventKind::Established { .. })
                        && e.dst == to
                        && e.src.ip() == curl_ips[1]
                        && e.src_name.as_deref() == Some("default/curl-demo")
                        && e.dst_name.as_deref() == Some("default/nginx-demo")
                }
                _ => false,
            })
        };
        named_established("node-1") && named_established("node-2")
    });

    let status = common::interrupt_and_wait(&mut child);
    seen.extend(lines.iter());
    assert!(status.success(), "{}", seen.join("\n"));
    let jobs = sb
        .kubectl()
        .args(["get", "jobs", "-A", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&jobs.stdout), "", "trace Jobs left");
    assert_eq!(sb.runner_processes(), Vec::<u32>::new(), "runners left");

    // The text output names each node's one interface once.
    let out = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["curl-demo", "nginx-demo", "--duration", "1s"])
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let tracing_on: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": tracing on "))
        .collect();
    assert_eq!(tracing_on.len(), 2, "{stderr}");
    for l in tracing_on {
        let (_, ifaces) = l.split_once(": tracing on ").unwrap();
        let ifaces = ifaces.split(" (").next().unwrap();
        assert!(!ifaces.contains(','), "one interface per node: {l}");
    }
    sb.shutdown().await;
}
