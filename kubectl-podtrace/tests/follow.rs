// SPDX-License-Identifier: Apache-2.0
//! Workloads and selectors as targets, and following their pods as they
//! come and go: the plugin run by the real `kubectl` against the sandbox.
//!
//! The runner is the stand-in that speaks the runner's contract
//! (`tests/sandbox/src/bin/fake_runner.rs`): it writes one `connect` event
//! from the first `--pod-ip` it was given, so an event from a pod's IP says
//! a runner was started for that pod. Needs root (network namespaces): CI
//! runs as root.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_sandbox::{PodManifest, Sandbox, SandboxConfig};
use serde_json::Value;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");
const OURS: &str = "app.kubernetes.io/managed-by=kubectl-podtrace";

/// A pod labelled `app=LABEL` on `node`, running nginx.
fn web(name: &str, label: &str, node: &str) -> PodManifest {
    let mut pod = PodManifest::new("default", name, "nginx:latest", &[]).on_node(node);
    pod.value["metadata"]["labels"]["app"] = label.into();
    pod
}

async fn sandbox(pods: Vec<PodManifest>) -> Sandbox {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces): run them with sudo"
    );
    let runner = Path::new(PLUGIN).with_file_name("podtrace-fake-runner");
    assert!(runner.is_file(), "run `cargo build --workspace` first");
    Sandbox::start(SandboxConfig {
        pods,
        runner_bin: Some(runner),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

/// `kubectl podtrace ARGS`: the real kubectl, finding the plugin on PATH.
fn podtrace(sb: &Sandbox, args: &[&str]) -> Command {
    let bin_dir = Path::new(PLUGIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("kubectl");
    cmd.arg("podtrace")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", sb.kubeconfig_path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs the real kubectl against the sandbox; panics unless it succeeds.
fn kubectl(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl create -f -` of one object.
fn create(sb: &Sandbox, object: Value) {
    use std::io::Write as _;
    let mut child = sb
        .kubectl()
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(object.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl create {object}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Trace Jobs (and their pods) of the plugin in the sandbox.
fn ours(sb: &Sandbox, kind: &str) -> Vec<String> {
    kubectl(
        sb,
        &["get", kind, "-n", "podtrace", "-l", OURS, "-o", "name"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Waits (bounded) until nothing of the plugin is left in the cluster.
async fn assert_nothing_left(sb: &Sandbox) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(ours(sb, "jobs").is_empty() && ours(sb, "pods").is_empty()) {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?} {:?}",
            ours(sb, "jobs"),
            ours(sb, "pods")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb.runner_processes().is_empty() {
        assert!(Instant::now() < deadline, "runner processes left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's IP once it is Running (bounded wait).
async fn running_ip(sb: &Sandbox, name: &str) -> String {
    sb.wait_for_pod_phase("default", name, "Running", Duration::from_secs(30))
        .await
        .expect("pod runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(ip) = sb.pod_ip("default", name).await {
            return ip.to_string();
        }
        assert!(Instant::now() < deadline, "{name} has no IP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running plugin whose stdout JSON lines and stderr arrive on channels.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        let pipe = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let lines = pipe(Box::new(child.stdout.take().unwrap()));
        let stderr = pipe(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (bounded) until `n` lines match; returns the first match.
    fn wait_for(&mut self, n: usize, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<&Value> = self.seen.iter().filter(|v| pred(v)).collect();
            if matching.len() >= n {
                return matching[0].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self
                    .seen
                    .push(serde_json::from_str(&l).unwrap_or(Value::Null)),
                Err(_) => {
                    let _ = self.child.kill();
                    let err: Vec<String> = self.stderr.try_iter().collect();
                    panic!(
                        "timed out after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                        self.seen
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        err.join("\n")
                    );
                }
            }
        }
    }

    /// Ctrl-C, then the exit code (bounded wait) and stderr.
    fn interrupt(mut self) -> (Option<i32>, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err: Vec<String> = self.stderr.iter().collect();
                return (status.code(), err.join("\n"));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the plugin did not stop within 60s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn is(v: &Value, ty: &str) -> bool {
    v["type"] == ty
}

/// A `connect` event from this IP (the stand-in runner of that pod).
fn connect_from(ip: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| {
        is(v, "connect")
            && v["src"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{ip}:")))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn selector_traces_every_matching_pod_on_two_nodes() {
    let sb = sandbox(vec![
        web("web-1", "web", "node-1"),
        web("web-2", "web", "node-2"),
        PodManifest::curl_demo().on_node("node-1"),
    ])
    .await;
    let (ip1, ip2) = (
        running_ip(&sb, "web-1").await,
        running_ip(&sb, "web-2").await,
    );
    let mut run = Running::start(podtrace(&sb, &["-l", "app=web", "-o", "json"]));
    run.wait_for(2, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip1));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip2));
    assert_eq!(ours(&sb, "jobs").len(), 2, "one Job per node");
    // curl-demo is not selected: no runner traces it.
    let curl = running_ip(&sb, "curl-demo").await;
    assert!(!run.seen.iter().any(connect_from(&curl)));
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_target_traces_its_backends_and_one_without_selector_says_why() {
    let sb = sandbox(vec![
        web("web-1", "web", "node-1"),
        web("web-2", "web", "node-2"),
        web("other", "other", "node-1"),
    ])
    .await;
    let (ip1, ip2, other) = (
        running_ip(&sb, "web-1").await,
        running_ip(&sb, "web-2").await,
        running_ip(&sb, "other").await,
    );
    for (name, selector) in [
        ("web", Some(serde_json::json!({"app": "web"}))),
        ("manual", None),
    ] {
        let mut spec = serde_json::json!({"ports": [{"port": 80, "protocol": "TCP"}]});
        if let Some(sel) = selector {
            spec["selector"] = sel;
        }
        create(
            &sb,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec
            }),
        );
    }
    let mut run = Running::start(podtrace(&sb, &["svc/web", "-o", "json"]));
    run.wait_for(2, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip1));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip2));
    assert_eq!(ours(&sb, "jobs").len(), 2, "one Job per backend's node");
    assert!(
        !run.seen.iter().any(connect_from(&other)),
        "a pod the Service does not select is not traced"
    );
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;

    let out = podtrace(&sb, &["svc/manual"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: svc/manual has no selector, so no pods back it here"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(ours(&sb, "jobs").is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_target_traces_the_jobs_pod_and_bad_targets_say_the_fix() {
    let sb = sandbox(vec![PodManifest::nginx_demo().on_node("node-2")]).await;
    create(
        &sb,
        serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "sleeper", "image": "curlimages/curl", "command": ["sleep", "infinity"]
            }]}}}
        }),
    );
    let pod = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let name = kubectl(
                &sb,
                &["get", "pods", "-l", "job-name=sleeper", "-o", "name"],
            );
            if let Some(n) = name.lines().next() {
                break n.trim_start_matches("pod/").to_string();
            }
            assert!(Instant::now() < deadline, "the Job made no pod");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ip = running_ip(&sb, &pod).await;
    let mut run = Running::start(podtrace(&sb, &["job/sleeper", "nginx-demo", "-o", "json"]));
    run.wait_for(2, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip));
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;

    for (args, says) in [
        (
            &["deploy/nginx"][..],
            "error: deploy/nginx not found in namespace default: check the name with `kubectl get deploy -n default`",
        ),
        (
            &["-l", "app=nope"],
            "error: -l app=nope matches no pod in namespace default: check the labels with `kubectl get pods -n default --show-labels`",
        ),
        (
            &["cronjob/x"],
            "error: unknown kind \"cronjob\" in \"cronjob/x\": use pod/, deploy/, rs/, sts/, ds/, job/ or svc/",
        ),
        (
            &["svc/nginx-demo"],
            "error: svc/nginx-demo not found in namespace default",
        ),
    ] {
        let out = podtrace(&sb, args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    assert!(ours(&sb, "jobs").is_empty());
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn named_pod_recreated_mid_trace_is_announced_and_traced_again() {
    let sb = sandbox(vec![
        PodManifest::curl_demo().on_node("node-1"),
        PodManifest::nginx_demo().on_node("node-2"),
    ])
    .await;
    let old_ip = running_ip(&sb, "nginx-demo").await;
    let mut run = Running::start(podtrace(&sb, &["nginx-demo", "-o", "json"]));
    run.wait_for(1, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&old_ip));

    kubectl(&sb, &["delete", "pod", "nginx-demo", "--wait=true"]);
    let deleted = run.wait_for(1, Duration::from_secs(10), |v| {
        is(v, "target") && v["change"] == "deleted"
    });
    assert_eq!(deleted["pod"], "default/nginx-demo");
    assert_eq!(deleted["target"], "pod/nginx-demo");
    assert_eq!(deleted["ips"][0], old_ip.as_str());

    // Recreated under the same name, on the other node this time.
    sb.create_pod(PodManifest::nginx_demo().on_node("node-1"))
        .await
        .unwrap();
    let new_ip = running_ip(&sb, "nginx-demo").await;
    assert_ne!(new_ip, old_ip, "the sandbox gives a new pod a new IP");
    let replaced = run.wait_for(1, Duration::from_secs(10), |v| {
        is(v, "target") && v["change"] == "replaced"
    });
    assert_eq!(replaced["by"], "default/nginx-demo");
    run.wait_for(1, Duration::from_secs(10), connect_from(&new_ip));
    // The first runner was left alone: one event from the old IP, not two.
    assert_eq!(
        run.seen.iter().filter(|v| connect_from(&old_ip)(v)).count(),
        1
    );
    assert_eq!(ours(&sb, "jobs").len(), 2, "a Job for the new pod");
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_that_join_a_selector_are_traced_within_5s_and_ctrl_c_removes_every_job() {
    let sb = sandbox(vec![web("web-1", "web", "node-1")]).await;
    let ip1 = running_ip(&sb, "web-1").await;
    let mut run = Running::start(podtrace(&sb, &["-l", "app=web", "-o", "json"]));
    run.wait_for(1, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip1));
    assert_eq!(ours(&sb, "jobs").len(), 1);

    // A pod with other labels does not join.
    sb.create_pod(web("other", "other", "node-2"))
        .await
        .unwrap();
    running_ip(&sb, "other").await;
    // One on a node already traced, one on a node not traced yet.
    for (name, node, n) in [("web-2", "node-1", 2), ("web-3", "node-2", 3)] {
        sb.create_pod(web(name, "web", node)).await.unwrap();
        let ip = running_ip(&sb, name).await;
        let running_at = Instant::now();
        let joined = run.wait_for(1, Duration::from_secs(5), |v| {
            is(v, "target") && v["change"] == "joined" && v["pod"] == format!("default/{name}")
        });
        assert_eq!(joined["target"], "-l app=web");
        assert_eq!(joined["node"], node);
        run.wait_for(1, Duration::from_secs(5), connect_from(&ip));
        assert!(
            running_at.elapsed() < Duration::from_secs(5),
            "{name} traced {:?} after it was Running",
            running_at.elapsed()
        );
        run.wait_for(n, Duration::from_secs(5), |v| is(v, "ready"));
        assert_eq!(ours(&sb, "jobs").len(), n, "a Job per pod that joined");
    }
    // Pods traced from the start were not traced again; `other` (Running
    // before web-3 was) never joined.
    assert_eq!(run.seen.iter().filter(|v| connect_from(&ip1)(v)).count(), 1);
    assert!(!run.seen.iter().any(|v| v["pod"] == "default/other"));

    // As in a rollout: new pods came first, then an old one goes.
    kubectl(&sb, &["delete", "pod", "web-1", "--wait=false"]);
    let replaced = run.wait_for(1, Duration::from_secs(10), |v| {
        is(v, "target") && v["pod"] == "default/web-1"
    });
    assert_eq!(replaced["change"], "replaced");
    assert_eq!(replaced["by"], "default/web-2", "the oldest new pod");

    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_that_drops_and_expires_is_resumed_and_pods_still_join() {
    let sb = sandbox(vec![web("web-1", "web", "node-1")]).await;
    let ip1 = running_ip(&sb, "web-1").await;
    let mut run = Running::start(podtrace(&sb, &["-l", "app=web", "-o", "json"]));
    run.wait_for(1, Duration::from_secs(30), |v| is(v, "ready"));
    run.wait_for(1, Duration::from_secs(10), connect_from(&ip1));
    // Every watch ends and its resource version is gone: the watcher lists
    // again (410 Gone) and must not take the pods it traces for new ones.
    sb.compact();
    sb.drop_watches();
    sb.create_pod(web("web-2", "web", "node-2")).await.unwrap();
    let ip2 = running_ip(&sb, "web-2").await;
    run.wait_for(1, Duration::from_secs(5), connect_from(&ip2));
    assert_eq!(run.seen.iter().filter(|v| connect_from(&ip1)(v)).count(), 1);
    assert!(!run
        .seen
        .iter()
        .any(|v| is(v, "target") && v["pod"] == "default/web-1"));
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;
    sb.shutdown().await;
}

/// The IPs of the Running pods with `app=LABEL`, once there are `n`.
async fn ips_of(sb: &Sandbox, label: &str, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(
            sb,
            &["get", "pods", "-l", &format!("app={label}"), "-o", "json"],
        );
        let list: Value = serde_json::from_str(&out).unwrap();
        let running: Vec<(String, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["status"]["podIP"].as_str()?.to_string(),
                ))
            })
            .collect();
        if running.len() == n {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} running pods of {label}: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_is_traced_and_followed_through_a_rollout_restart() {
    let sb = sandbox(vec![]).await;
    kubectl(
        &sb,
        &[
            "create",
            "deployment",
            "nginx",
            "--image=nginx",
            "--replicas=2",
        ],
    );
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=30s"],
    );
    let old = ips_of(&sb, "nginx", 2).await;
    let mut run = Running::start(podtrace(&sb, &["deploy/nginx", "-o", "json"]));
    run.wait_for(2, Duration::from_secs(30), |v| is(v, "ready"));
    for (_, ip) in &old {
        run.wait_for(1, Duration::from_secs(10), connect_from(ip));
    }

    kubectl(&sb, &["rollout", "restart", "deployment", "nginx"]);
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "nginx", "--timeout=30s"],
    );
    let new = ips_of(&sb, "nginx", 2).await;
    for (name, ip) in &new {
        assert!(
            !old.iter().any(|(n, _)| n == name),
            "a rollout makes new pods"
        );
        run.wait_for(1, Duration::from_secs(10), connect_from(ip));
    }
    for (name, _) in &old {
        let gone = run.wait_for(1, Duration::from_secs(10), |v| {
            is(v, "target") && v["pod"] == format!("default/{name}") && v["change"] != "joined"
        });
        assert_eq!(gone["target"], "deploy/nginx");
        // maxSurge first: each old pod goes once a new one runs.
        assert_eq!(gone["change"], "replaced", "{gone}");
        let by = gone["by"].as_str().unwrap().trim_start_matches("default/");
        assert!(new.iter().any(|(n, _)| n == by), "{gone}");
    }
    // Nothing traced twice: one runner per pod, old and new.
    for (_, ip) in old.iter().chain(&new) {
        assert_eq!(
            run.seen.iter().filter(|v| connect_from(ip)(v)).count(),
            1,
            "{ip}"
        );
    }
    assert_eq!(
        ours(&sb, "jobs").len(),
        4,
        "two at the start, one per new pod"
    );
    let (code, stderr) = run.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_nothing_left(&sb).await;
    sb.shutdown().await;
}
