// SPDX-License-Identifier: Apache-2.0
//! A Service and its backend in one flow: the real runner (from its image,
//! run by runc) traces `curl-demo` curling `http://nginx` by name, a
//! 2-replica Deployment on two nodes behind a Service. Each connection is
//! shown with the Service it addressed and the backend it reached, in every
//! event of it, and the summary has one row for the Service flow with both
//! backends. Needs root and BPF (CI runs as root).
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");

fn kubectl(sb: &Sandbox, args: &[&str]) -> Output {
    let o = sb.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every JSON line the plugin wrote so far, read for at most `wait`.
fn drain(rx: &mpsc::Receiver<String>, seen: &mut Vec<Value>, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(serde_json::from_str(&l).unwrap_or(Value::Null));
    }
}

fn dump(seen: &[Value]) -> String {
    seen.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Deployment's pods: `default/name` → (IP, node).
fn backends(sb: &Sandbox) -> Vec<(String, String, String)> {
    let o = kubectl(sb, &["get", "pods", "-l", "app=nginx", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                format!("default/{}", p["metadata"]["name"].as_str().unwrap()),
                p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_flow_is_one_flow_with_its_backend() {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let runner = Path::new(PLUGIN).with_file_name("podtrace-runner");
    assert!(runner.exists(), "run `cargo build --workspace` first");
    let mut config = SandboxConfig::bare();
    // node-1 has curl-demo and the cluster DNS: the replicas spread over
    // the other two.
    config.nodes = 3;
    config.runner_bin = Some(runner);
    config.images =
        vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))];
    config.pods = vec![PodManifest::curl_demo().on_node("node-1")];
    let sb = Sandbox::start(config).await.expect("sandbox starts");
    sb.wait_for_pod_phase("default", "curl-demo", "Running", Duration::from_secs(30))
        .await
        .expect("curl-demo runs");
    kubectl(
        &sb,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx",
            "--replicas=2",
            "--port=80",
        ],
    );
    kubectl(&sb, &["expose", "deployment", "nginx", "--port=80"]);
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=30s"],
    );
    let pods = backends(&sb);
    let nodes: BTreeSet<&str> = pods.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 2, "one replica per node: {pods:?}");
    let cip = sb.cluster_ip("default", "nginx").unwrap();
    let service_addr = format!("{cip}:80");

    let mut child = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["curl-demo", "svc/nginx", "-o", "json"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .try_for_each(|l| tx.send(l))
    });
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let runners = nodes.len() + usize::from(!nodes.contains("node-1"));
    while seen.iter().filter(|v| v["type"] == "ready").count() < runners {
        assert!(Instant::now() < deadline, "not ready:\n{}", dump(&seen));
        drain(&rx, &mut seen, Duration::from_millis(500));
    }

    // Curl by name until both backends were reached (bounded: the
    // Service picks at random).
    let reached = |seen: &[Value]| -> BTreeSet<String> {
        seen.iter()
            .filter(|v| v["type"] == "established" && v["end"] == "client")
            .filter(|v| v["service"] == "default/nginx")
            .filter_map(|v| v["dst_name"].as_str().map(str::to_owned))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut curls = 0;
    while reached(&seen).len() < 2 || curls < 4 {
        assert!(
            Instant::now() < deadline,
            "both backends never reached:\n{}",
            dump(&seen)
        );
        let o = sb
            .exec(
                "default",
                "curl-demo",
                &[
                    "curl",
                    "-sf",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "5",
                    "http://nginx/",
                ],
            )
            .unwrap();
        assert!(o.status.success(), "curl http://nginx/: {o:?}");
        curls += 1;
        drain(&rx, &mut seen, Duration::from_millis(700));
    }

    // Every connection event of a connection through the Service, at
    // either end, names the Service and the backend.
    let names: BTreeSet<String> = pods.iter().map(|(n, _, _)| n.clone()).collect();
    let conn_events: Vec<&Value> = seen
        .iter()
        .filter(|v| v["end"].is_string() && v["src_name"] == "default/curl-demo")
        .filter(|v| v["dst"].as_str() != Some(&*format!("{cip}:53")))
        .filter(|v| v["proto"] == "tcp")
        .collect();
    assert!(!conn_events.is_empty(), "{}", dump(&seen));
    for v in &conn_events {
        assert_eq!(v["service"], "default/nginx", "{v}\n{}", dump(&seen));
        assert_eq!(v["service_addr"], service_addr.as_str(), "{v}");
        let backend = v["dst_name"].as_str().unwrap_or_default();
        assert!(names.contains(backend), "dst_name {backend}: {v}");
        let ip = &pods.iter().find(|(n, _, _)| n == backend).unwrap().1;
        assert_eq!(v["dst"], format!("{ip}:80"), "{v}");
    }
    // Both ends of one connection: the client's and the backend's.
    let ends: BTreeSet<&str> = conn_events
        .iter()
        .filter_map(|v| v["end"].as_str())
        .collect();
    assert_eq!(ends, BTreeSet::from(["client", "server"]));
    assert_eq!(reached(&seen), names);

    let (code, stderr) = common::interrupt_reading_stderr(child);
    assert_eq!(code, Some(0), "{stderr}");
    drain(&rx, &mut seen, Duration::from_secs(2));
    let summary = seen
        .iter()
        .find(|v| v["type"] == "session_summary")
        .unwrap_or_else(|| panic!("no session_summary:\n{}", dump(&seen)));
    let rows: Vec<&Value> = summary["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["src_name"] == "default/curl-demo")
        .collect();
    assert_eq!(rows.len(), 1, "one row for the Service flow: {summary}");
    let row = rows[0];
    assert_eq!(row["service"], "default/nginx", "{row}");
    assert_eq!(row["service_addr"], service_addr.as_str(), "{row}");
    let backends: BTreeSet<String> = row["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(backends, names, "{row}");
    let matched: u64 = row["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(row["connections"].as_u64(), Some(matched), "{row}");
    assert!(matched >= curls, "{row}: {curls} curls");
    sb.shutdown().await;
}
