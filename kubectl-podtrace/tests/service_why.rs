// SPDX-License-Identifier: Apache-2.0
//! A Service that cannot answer, explained: the real runner (from its
//! image, run by runc) traces `curl-demo` curling a Service's ClusterIP
//! while none of its pods is ready; the refusal shows as a `failed` event
//! to the ClusterIP with a `service` line saying why, and once a pod is
//! ready the next curl connects. Needs root and BPF (CI runs as root).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_sandbox::{PodManifest, Rule, Sandbox, SandboxConfig, User};
use serde_json::Value;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");
const OURS: &str = "app.kubernetes.io/managed-by=kubectl-podtrace";

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n";

fn web(name: &str, node: &str) -> PodManifest {
    let mut p = PodManifest::new("default", name, "nginx:latest", &[]).on_node(node);
    p.value["metadata"]["labels"]["app"] = "web".into();
    p.value["spec"]["containers"][0]["ports"] =
        serde_json::json!([{"name": "http", "containerPort": 80}]);
    p
}

fn kubectl(sb: &Sandbox, args: &[&str]) -> Output {
    sb.kubectl().args(args).output().expect("kubectl runs")
}

/// curl's exit code for one request from `curl-demo` (7: refused).
fn curl(sb: &Sandbox, url: &str) -> i32 {
    let out = sb
        .exec(
            "default",
            "curl-demo",
            &["curl", "-s", "-o", "/dev/null", "--max-time", "5", url],
        )
        .unwrap();
    out.status.code().unwrap_or(-1)
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

/// The sandbox with the real runner, `curl-demo` and Service `web` over
/// `web-1` and `web-2`, both made unready: its ClusterIP refuses.
async fn unready_web() -> (Sandbox, Ipv4Addr) {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let runner = Path::new(PLUGIN).with_file_name("podtrace-runner");
    assert!(runner.exists(), "run `cargo build --workspace` first");
    let mut config = SandboxConfig::bare();
    config.runner_bin = Some(runner);
    config.images =
        vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))];
    config.pods = vec![
        PodManifest::curl_demo().on_node("node-1"),
        web("web-1", "node-1"),
        web("web-2", "node-2"),
    ];
    let sb = Sandbox::start(config).await.expect("sandbox starts");
    for pod in ["curl-demo", "web-1", "web-2"] {
        sb.wait_for_pod_phase("default", pod, "Running", Duration::from_secs(30))
            .await
            .expect("pod runs");
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB).unwrap();
    let o = kubectl(&sb, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cip = sb.cluster_ip("default", "web").unwrap();
    sb.set_pod_ready("default", "web-1", false).unwrap();
    sb.set_pod_ready("default", "web-2", false).unwrap();
    // The nodes' rules reject once no endpoint is ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    while curl(&sb, &format!("http://{cip}/")) != 7 {
        assert!(Instant::now() < deadline, "the Service never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (sb, cip)
}

/// `kubectl podtrace curl-demo svc/web -o json` (as `user` when given),
/// once both runners are ready: the child, its stdout lines, those seen.
fn trace(sb: &Sandbox, user: Option<&str>) -> (Child, mpsc::Receiver<String>, Vec<Value>) {
    let mut cmd = Command::new(PLUGIN);
    cmd.arg("--kubeconfig").arg(sb.kubeconfig_path());
    if let Some(u) = user {
        cmd.args(["--context", u]);
    }
    let mut child = cmd
        .args(["curl-demo", "svc/web", "-o", "json"])
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
    while seen.iter().filter(|v| v["type"] == "ready").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "runners not ready:\n{}",
            dump(&seen)
        );
        drain(&rx, &mut seen, Duration::from_millis(500));
    }
    (child, rx, seen)
}

/// Curls the ClusterIP (refused each time) until `done` holds (bounded).
fn curl_until(
    sb: &Sandbox,
    cip: Ipv4Addr,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out:\n{}", dump(seen));
        assert_eq!(curl(sb, &format!("http://{cip}/")), 7, "not refused");
        drain(rx, seen, Duration::from_millis(300));
    }
}

/// Ctrl-C; the exit code (bounded wait) and stderr; nothing left behind.
async fn stop(sb: Sandbox, child: Child) -> String {
    let (code, stderr) = common::interrupt_reading_stderr(child);
    assert_eq!(code, Some(0), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kubectl(
            &sb,
            &[
                "get",
                "jobs,pods",
                "-n",
                "podtrace",
                "-l",
                OURS,
                "-o",
                "name",
            ],
        );
        if o.stdout.is_empty() && sb.runner_processes().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sb.shutdown().await;
    stderr
}

fn refused_to(cip: Ipv4Addr) -> impl Fn(&&Value) -> bool {
    let dst = format!("{cip}:80");
    move |v| v["type"] == "failed" && v["dst"] == dst.as_str() && v["error"] == "ECONNREFUSED"
}

fn is_service(v: &&Value) -> bool {
    v["type"] == "service"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_without_ready_endpoints_is_explained_and_answers_once_a_pod_is_ready() {
    let (sb, cip) = unready_web().await;
    let (child, rx, mut seen) = trace(&sb, None);
    // At least two refusals: the explanation is said once for the flow.
    curl_until(&sb, cip, &rx, &mut seen, |s| {
        s.iter().filter(refused_to(cip)).count() >= 2 && s.iter().any(|v| is_service(&v))
    });
    let lines: Vec<&Value> = seen.iter().filter(is_service).collect();
    assert_eq!(lines.len(), 1, "said once:\n{}", dump(&seen));
    let s = lines[0];
    assert_eq!(s["service"], "default/web", "{s}");
    assert_eq!(s["dst"], format!("{cip}:80"), "{s}");
    assert_eq!(s["problem"], "no-ready-endpoints", "{s}");
    assert_eq!(
        s["detail"], "0 of 2 pods ready: default/web-1, default/web-2 not ready",
        "{s}"
    );
    assert_eq!(s["cause"], "failed ECONNREFUSED", "{s}");

    // One pod ready: the next curl connects, through the ClusterIP.
    sb.set_pod_ready("default", "web-1", true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&sb, &format!("http://{cip}/")) != 0 {
        assert!(Instant::now() < deadline, "web-1 ready, still refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    // Through the Service to its backend: dst names web-1.
    let service_addr = format!("{cip}:80");
    while !seen.iter().any(|v| {
        v["type"] == "established"
            && v["service_addr"] == service_addr.as_str()
            && v["dst_name"] == "default/web-1"
    }) {
        assert!(
            Instant::now() < deadline,
            "no connection seen:\n{}",
            dump(&seen)
        );
        drain(&rx, &mut seen, Duration::from_millis(300));
    }
    stop(sb, child).await;
}

/// Without `list` on endpointslices (all else manifests/rbac.yaml grants):
/// said once on stderr, and the refusals are still traced.
#[tokio::test(flavor = "multi_thread")]
async fn without_rights_to_read_endpointslices_it_says_so_once_and_traces_on() {
    let (sb, cip) = unready_web().await;
    sb.add_user(User::with_rules(
        "oncall",
        vec![
            Rule::new(&["get", "list", "watch"], &[""], &["pods"]),
            Rule::new(&["get", "list"], &[""], &["services"]),
            Rule::new(
                &["list", "watch"],
                &["networking.k8s.io"],
                &["networkpolicies"],
            ),
            Rule::new(&["get", "list", "watch"], &[""], &["namespaces"]),
            Rule::new(&["create", "list", "delete"], &["batch"], &["jobs"])
                .in_namespace("podtrace"),
            Rule::new(&["get"], &[""], &["pods/log"]).in_namespace("podtrace"),
            Rule::new(&["list"], &[""], &["events"]).in_namespace("podtrace"),
            Rule::new(&["delete"], &[""], &["pods"]).in_namespace("podtrace"),
        ],
    ))
    .unwrap();
    let (child, rx, mut seen) = trace(&sb, Some("oncall"));
    curl_until(&sb, cip, &rx, &mut seen, |s| {
        s.iter().filter(refused_to(cip)).count() >= 2
    });
    assert!(!seen.iter().any(|v| is_service(&v)), "{}", dump(&seen));
    let stderr = stop(sb, child).await;
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("a Service that cannot answer cannot be explained"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {stderr}");
    assert!(said[0].contains("endpointslices"), "{stderr}");
    assert!(said[0].ends_with("tracing on"), "{stderr}");
}
