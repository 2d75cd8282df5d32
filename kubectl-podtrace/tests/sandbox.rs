// SPDX-License-Identifier: Apache-2.0
//! The plugin against the local cluster sandbox: every behaviour and error
//! path, through the built binary (and once through the real `kubectl`).
//!
//! The runner here is a stand-in speaking the runner's contract and wire
//! schema ([`fake_runner_bin`]), so these tests exercise the plugin, not the kernel;
//! `real_runner_traces_curl_to_nginx` uses the real runner when it is built.
//! Needs root (the sandbox builds network namespaces): CI runs as root; as
//! another user the tests say so and pass without running.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use podtrace::event::Message;
use podtrace_sandbox::{PodManifest, Rule, RunnerCrash, Sandbox, SandboxConfig, User};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");
const SELECTOR: &str = "app.kubernetes.io/managed-by=kubectl-podtrace";

/// The runner stand-in (`tests/sandbox/src/bin/fake_runner.rs`): it reads
/// the runner's command-line contract and writes `hello`, a stderr
/// diagnostic, `ready`, one `connect` event and one `lost` line through the
/// schema's types, idles until SIGTERM/SIGINT or `--duration`, then writes
/// its `summary`. Built with the workspace, next to the plugin.
fn fake_runner_bin() -> PathBuf {
    let bin = Path::new(PLUGIN).with_file_name("podtrace-fake-runner");
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace`",
        bin.display()
    );
    bin
}

/// The fake runner, given its own `flags` (e.g. `--stop-delay 8s`) before
/// the runner's: a two-line wrapper in `dir`, since the kubelet runs the
/// runner binary with the Job's arguments only.
fn fake_runner(dir: &Path, flags: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("podtrace-runner");
    let script = format!(
        "#!/bin/sh\nexec '{}' {} \"$@\"\n",
        fake_runner_bin().display(),
        flags.join(" ")
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Env {
    sandbox: Sandbox,
    _dir: tempfile::TempDir,
}

/// A sandbox (`curl_to_nginx_across_two_nodes`'s two pods by default) whose runner is
/// the fake one. These tests need root (network namespaces) and fail,
/// rather than skip, without it.
async fn sandbox_with(mut config: SandboxConfig) -> Env {
    assert!(
        podtrace_sandbox::is_root(),
        "the sandbox tests need root (network namespaces, eBPF): run them with sudo"
    );
    let dir = tempfile::tempdir().unwrap();
    if config.runner_bin.is_none() {
        config.runner_bin = Some(fake_runner_bin());
    }
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    Env { sandbox, _dir: dir }
}

/// `curl_to_nginx_across_two_nodes`'s pods, pinned: `curl-demo` on node-1, `nginx-demo` on node-2.
fn two_nodes() -> SandboxConfig {
    SandboxConfig {
        pods: vec![
            PodManifest::curl_demo().on_node("node-1"),
            PodManifest::nginx_demo().on_node("node-2"),
        ],
        ..SandboxConfig::default()
    }
}

async fn sandbox() -> Env {
    sandbox_with(two_nodes()).await
}

impl Env {
    /// Runs the plugin with `args`, which must fail with exit code 1 (one
    /// sentence on stderr, never a panic); returns its stderr.
    async fn fails(&self, args: &[&str], timeout: Duration) -> String {
        let mut cmd = self.plugin();
        cmd.args(args);
        let out = run(cmd, timeout).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    }

    fn plugin(&self) -> Command {
        let mut cmd = Command::new(PLUGIN);
        cmd.arg("--kubeconfig").arg(self.sandbox.kubeconfig_path());
        cmd.env_remove("KUBECONFIG").env("NO_COLOR", "1");
        cmd.stdin(Stdio::null());
        cmd
    }

    async fn client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(self.sandbox.kubeconfig_path()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn trace_jobs(&self) -> Vec<String> {
        let jobs: Api<Job> = Api::namespaced(self.client().await, "podtrace");
        jobs.list(&ListParams::default().labels(SELECTOR))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }

    async fn trace_pods(&self) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client().await, "podtrace");
        pods.list(&ListParams::default().labels(SELECTOR))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// Waits (bounded) until a pod in `default` has a container waiting
    /// with `reason`.
    async fn wait_for_waiting_reason(&self, pod: &str, reason: &str) {
        let pods: Api<Pod> = Api::namespaced(self.client().await, "default");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let p = pods.get(pod).await.unwrap();
            let waiting = p
                .status
                .and_then(|s| s.container_statuses)
                .into_iter()
                .flatten()
                .filter_map(|c| c.state?.waiting?.reason)
                .any(|r| r == reason);
            if waiting {
                return;
            }
            assert!(Instant::now() < deadline, "pod {pod} never got {reason}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Nothing of the session is left: no Job, no pod, no runner process,
    /// nothing of the runner containers (runc state, bundle, cgroup, mount).
    async fn assert_nothing_left(&self) {
        assert_eq!(
            self.trace_jobs().await,
            Vec::<String>::new(),
            "trace Jobs left"
        );
        assert_eq!(
            self.trace_pods().await,
            Vec::<String>::new(),
            "trace pods left"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let clean = || {
            self.sandbox.runner_processes().is_empty()
                && self.sandbox.runner_container_leftovers().is_empty()
        };
        while !clean() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            self.sandbox.runner_processes(),
            Vec::<u32>::new(),
            "runner processes left"
        );
        assert_eq!(
            self.sandbox.runner_container_leftovers(),
            Vec::<String>::new(),
            "runner containers left"
        );
    }
}

/// Runs a command to its end, killing it after `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plugin starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("command did not finish within {timeout:?}");
        }
    }
}

async fn run(cmd: Command, timeout: Duration) -> Output {
    tokio::task::spawn_blocking(move || run_bounded(cmd, timeout))
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running plugin whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    err_lines: mpsc::Receiver<String>,
    err_seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
            err_lines: erx,
            err_seen: Vec::new(),
        }
    }

    /// Waits (bounded) for `n` stdout lines matching `pred`.
    fn wait_for(&mut self, n: usize, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while self.seen.iter().filter(|l| pred(l)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => {
                    self.err_seen.extend(self.err_lines.try_iter());
                    panic!(
                        "timed out; stdout so far:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        self.err_seen.join("\n")
                    )
                }
            }
        }
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.err_seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(l) => self.err_seen.push(l),
                Err(_) => panic!("timed out; stderr so far:\n{}", self.err_seen.join("\n")),
            }
        }
    }

    fn interrupt(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
    }

    /// Waits (bounded) for the exit; returns the code, all stdout and stderr.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut seen = self.seen;
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    seen.push(l);
                }
                let mut err = self.err_seen;
                while let Ok(l) = self.err_lines.recv_timeout(Duration::from_secs(2)) {
                    err.push(l);
                }
                return (status.code(), seen, err.join("\n"));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("plugin did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn is_type(line: &str, ty: &str) -> bool {
    Message::parse(line).is_ok_and(|m| m.type_name() == ty)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_on_two_nodes_get_two_jobs_json_passthrough_and_cleanup() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "-o", "json", "--duration", "2s"]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let msgs: Vec<Message> = stdout
        .lines()
        .map(|l| Message::parse(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let nodes_of = |ty: &str| {
        let mut n: Vec<String> = msgs
            .iter()
            .filter(|m| m.type_name() == ty)
            .map(|m| match m {
                Message::Hello(h) => h.body.node.clone(),
                Message::Ready(r) => r.body.node.clone(),
                Message::Summary(s) => s.body.node.clone(),
                Message::Lost(l) => l.body.node.clone(),
                Message::Event(e) => e.node.clone(),
                Message::Warning(w) => w.body.node.clone(),
                Message::Policy(p) => p.body.node.clone(),
                Message::Service(s) => s.body.node.clone(),
                Message::Target(t) => t.body.node.clone(),
                Message::SessionSummary(_) => String::new(),
            })
            .collect();
        n.sort();
        n
    };
    let both = vec!["node-1".to_string(), "node-2".to_string()];
    assert_eq!(nodes_of("hello"), both, "one runner per node:\n{stdout}");
    assert_eq!(nodes_of("ready"), both);
    assert_eq!(nodes_of("lost"), both);
    assert_eq!(
        nodes_of("summary"),
        both,
        "summaries arrive before the Jobs go"
    );
    let names: Vec<(Option<String>, Option<String>)> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some((e.src_name.clone(), e.dst_name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2);
    for pair in &names {
        let mut v = vec![pair.0.clone().unwrap(), pair.1.clone().unwrap()];
        v.sort();
        assert_eq!(
            v,
            vec!["default/curl-demo", "default/nginx-demo"],
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("fake-runner: attaching"),
        "non-JSON runner output is shown as a warning:\n{stderr}"
    );
    // Last, the nodes' summaries merged: what the text summary shows.
    let Some(Message::SessionSummary(s)) = msgs.last() else {
        panic!("no session_summary last:\n{stdout}");
    };
    let s = &s.body;
    assert_eq!(s.flows.len(), 1, "one flow seen from both ends: {s:?}");
    let f = &s.flows[0];
    assert_eq!(f.src_name.as_deref(), Some("default/curl-demo"), "{f:?}");
    assert_eq!(f.dst_name.as_deref(), Some("default/nginx-demo"), "{f:?}");
    // Each end's retransmits add up; both ends saw the same packets.
    assert_eq!((f.retransmits_sent, f.retransmits_received), (55, 3));
    assert_eq!(
        (f.connections, f.packets_sent, f.packets_received),
        (1, 6, 4)
    );
    assert_eq!(s.lost, 4);
    assert_eq!(s.nodes, both);
    assert!(s.counted_from_events.is_empty());
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_output_is_aligned_with_names_and_ends_with_a_summary() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["default/curl-demo", "pod/nginx-demo", "--duration", "2s"]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.starts_with("TIME "), "{stdout}");
    assert!(
        stdout.contains("tcp connect      default/curl-demo:40000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("!!! LOST 2 events on node node-1"),
        "{stdout}"
    );
    assert!(stdout.contains("\nSUMMARY\nFLOW"), "{stdout}");
    let flows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("FLOW"))
        .skip(1)
        .collect();
    assert_eq!(
        flows.len(),
        2,
        "one merged flow, then the lost line:\n{stdout}"
    );
    assert!(
        flows[0].starts_with("tcp default/curl-demo -> default/nginx-demo:80"),
        "{stdout}"
    );
    assert!(
        flows[0].contains(" 55/3 "),
        "retransmits of both ends:\n{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour when not a terminal");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_deletes_the_jobs_and_prints_the_summary() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    running.wait_for(2, Duration::from_secs(30), |l| is_type(l, "ready"));
    assert_eq!(env.trace_jobs().await.len(), 2, "one Job per node");
    running.interrupt();
    let (code, lines, stderr) = running.finish(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        lines.iter().filter(|l| is_type(l, "summary")).count(),
        2,
        "{stderr}"
    );
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_ctrl_c_exits_at_once_and_cleanup_removes_the_leftovers() {
    // A runner slow to stop, so the first Ctrl-C's clean-up is still
    // waiting when the second comes.
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        runner_bin: Some(fake_runner(dir.path(), &["--stop-delay", "8s"])),
        ..two_nodes()
    };
    let env = sandbox_with(config).await;
    let mut cmd = env.plugin();
    cmd.args(["nginx-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    running.wait_for(1, Duration::from_secs(30), |l| is_type(l, "ready"));
    running.interrupt();
    running.wait_for_stderr("stopping:", Duration::from_secs(10));
    running.interrupt();
    let started = Instant::now();
    let (code, _, stderr) = running.finish(Duration::from_secs(10));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stderr.contains("kubectl podtrace cleanup"), "{stderr}");

    let mut cmd = env.plugin();
    cmd.arg("cleanup");
    let out = run(cmd, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(env.trace_jobs().await.is_empty() && env.trace_pods().await.is_empty()) {
        assert!(Instant::now() < deadline, "cleanup left Jobs or pods");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_plugin_leftovers_are_removed_by_cleanup_for_their_owner_only() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["nginx-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    running.wait_for(1, Duration::from_secs(30), |l| is_type(l, "ready"));
    running.child.kill().unwrap();
    let _ = running.child.wait();
    assert_eq!(
        env.trace_jobs().await.len(),
        1,
        "a killed plugin leaves its Job"
    );

    // Someone else's cleanup leaves it alone...
    env.sandbox
        .add_user(User::with_rules(
            "other",
            vec![Rule::new(&["*"], &["*"], &["*"])],
        ))
        .unwrap();
    let mut cmd = env.plugin();
    cmd.args(["cleanup", "--context", "other"]);
    let out = run(cmd, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no trace Jobs of yours"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(env.trace_jobs().await.len(), 1);
    // ...unless --all; the owner's removes it too.
    let mut cmd = env.plugin();
    cmd.args(["cleanup", "--all", "--context", "other"]);
    let out = run(cmd, Duration::from_secs(30)).await;
    assert!(
        text(&out.stdout).contains("deleted"),
        "{}",
        text(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(env.trace_jobs().await.is_empty() && env.trace_pods().await.is_empty()) {
        assert!(Instant::now() < deadline, "cleanup left Jobs or pods");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pod_names_the_namespace_and_close_matches() {
    let env = sandbox().await;
    let stderr = env.fails(&["ngnix-demo"], Duration::from_secs(30)).await;
    assert_eq!(
        stderr.trim(),
        "error: pod \"ngnix-demo\" not found in namespace \"default\"; did you mean nginx-demo?"
    );
    let mut cmd = env.plugin();
    cmd.args(["-n", "kube-system", "nginx-demo"]);
    let out = run(cmd, Duration::from_secs(30)).await;
    assert!(
        text(&out.stderr).contains("not found in namespace \"kube-system\""),
        "{}",
        text(&out.stderr)
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_in_another_namespace_is_suggested_as_ns_slash_name() {
    let env = sandbox().await;
    env.sandbox
        .create_pod(PodManifest::new(
            "kube-system",
            "dns",
            "busybox",
            &["sleep", "infinity"],
        ))
        .await
        .unwrap();
    let stderr = env.fails(&["dns"], Duration::from_secs(30)).await;
    assert_eq!(
        stderr.trim(),
        "error: pod \"dns\" not found in namespace \"default\"; it is in namespace \
         \"kube-system\": name it kube-system/dns"
    );
    // With -n, the namespace is wrong for one of the two pods.
    let stderr = env
        .fails(
            &["-n", "kube-system", "nginx-demo", "dns"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        stderr.trim(),
        "error: pod \"nginx-demo\" not found in namespace \"kube-system\"; it is in namespace \
         \"default\": name it default/nginx-demo (-n applies to both pods)"
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_who_may_not_read_the_pods_gets_the_complete_missing_list() {
    let env = sandbox().await;
    // Everything in the job namespace, nothing about the pods to trace.
    env.sandbox
        .add_user(User::with_rules(
            "jobs-only",
            vec![
                Rule::new(&["create", "list", "delete"], &["batch"], &["jobs"])
                    .in_namespace("podtrace"),
                Rule::new(&["get", "list"], &[""], &["pods"]).in_namespace("podtrace"),
                Rule::new(&["get"], &[""], &["pods/log"]).in_namespace("podtrace"),
                Rule::new(&["list"], &[""], &["events"]).in_namespace("podtrace"),
            ],
        ))
        .unwrap();
    let stderr = env
        .fails(
            &["--context", "jobs-only", "curl-demo", "kube-system/dns"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        stderr.trim(),
        "error: you are missing permissions the trace needs: get pods in namespace \"default\"; \
         get pods in namespace \"kube-system\" (see manifests/rbac.yaml)"
    );
    // A caller with no rights at all: the job namespace's too, in one list.
    env.sandbox
        .add_user(User::with_rules("nobody", Vec::new()))
        .unwrap();
    let stderr = env
        .fails(
            &["--context", "nobody", "curl-demo"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        stderr.trim(),
        "error: you are missing permissions the trace needs: create jobs.batch, list jobs.batch, \
         delete jobs.batch, get pods, list pods, get pods/log, list events in namespace \
         \"podtrace\"; get pods in namespace \"default\" (see manifests/rbac.yaml)"
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_is_not_running_says_what_it_is_doing() {
    let env = sandbox().await;
    // A slow registry: the pod stays Pending while its image is pulled.
    env.sandbox.set_image_pull_delay(Duration::from_secs(60));
    env.sandbox
        .create_pod(PodManifest::new(
            "default",
            "starting",
            "busybox",
            &["sleep", "infinity"],
        ))
        .await
        .unwrap();
    let stderr = env.fails(&["starting"], Duration::from_secs(30)).await;
    assert!(
        stderr.starts_with("error: pod default/starting is Pending:")
            && stderr.trim_end().ends_with("try again when it is Running"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_whose_image_cannot_be_pulled_will_not_start() {
    let env = sandbox().await;
    env.sandbox
        .create_pod(PodManifest::new(
            "default",
            "broken",
            "example.com/nope:1",
            &[],
        ))
        .await
        .unwrap();
    env.wait_for_waiting_reason("broken", "ImagePullBackOff")
        .await;
    let stderr = env.fails(&["broken"], Duration::from_secs(30)).await;
    assert!(
        stderr.starts_with(
            "error: pod default/broken will not start: its container is in ImagePullBackOff"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("kubectl describe pod -n default broken"),
        "{stderr}"
    );
    assert!(!stderr.contains("try again"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_pod_will_not_start() {
    let env = sandbox().await;
    env.sandbox
        .create_pod(PodManifest::new("default", "crashy", "busybox", &["false"]))
        .await
        .unwrap();
    env.wait_for_waiting_reason("crashy", "CrashLoopBackOff")
        .await;
    let stderr = env.fails(&["crashy"], Duration::from_secs(30)).await;
    assert!(
        stderr.starts_with(
            "error: pod default/crashy will not start: its container is in CrashLoopBackOff"
        ),
        "{stderr}"
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_permissions_are_listed_exactly_and_nothing_is_created() {
    let env = sandbox().await;
    env.sandbox
        .add_user(User::with_rules(
            "viewer",
            vec![
                Rule::new(&["get", "list"], &[""], &["pods", "services", "namespaces"]),
                Rule::new(&["get", "list", "watch"], &["batch"], &["jobs"]),
            ],
        ))
        .unwrap();
    let stderr = env
        .fails(
            &["--context", "viewer", "curl-demo", "nginx-demo"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        stderr.trim(),
        "error: you are missing permissions the trace needs: create jobs.batch, delete jobs.batch, \
         get pods/log, list events in namespace \"podtrace\" (see manifests/rbac.yaml)"
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_baseline_job_namespace_is_explained_with_the_label_to_set() {
    let env = sandbox().await;
    env.sandbox.set_pod_security("podtrace", "baseline");
    let stderr = env.fails(&["curl-demo"], Duration::from_secs(30)).await;
    assert!(
        stderr.contains(
            "kubectl label namespace podtrace pod-security.kubernetes.io/enforce=privileged --overwrite"
        ),
        "{}",
        stderr
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_security_rejection_at_admission_fails_fast() {
    let env = sandbox().await;
    // A caller who may not read namespaces: preflight cannot see the label,
    // so admission is what rejects the runner's pod.
    env.sandbox
        .add_user(User::with_rules(
            "tracer",
            vec![
                Rule::new(
                    &["get", "list", "watch"],
                    &[""],
                    &["pods", "services", "events"],
                ),
                Rule::new(&["get"], &[""], &["pods/log"]),
                Rule::new(&["*"], &["batch"], &["jobs"]),
            ],
        ))
        .unwrap();
    env.sandbox.set_pod_security("podtrace", "baseline");
    let mut cmd = env.plugin();
    cmd.args(["--context", "tracer", "curl-demo", "--start-timeout", "30s"]);
    let started = Instant::now();
    let out = run(cmd, Duration::from_secs(60)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the cluster refused to create the trace pod for node")
            && stderr.contains("violates PodSecurity"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_pulled_is_named() {
    let env = sandbox().await;
    let stderr = env
        .fails(
            &[
                "curl-demo",
                "--image",
                "registry.example.com/podtrace/nope:v9",
            ],
            Duration::from_secs(60),
        )
        .await;
    assert!(
        stderr.contains(
            "cannot pull the runner image \"registry.example.com/podtrace/nope:v9\" on node"
        ),
        "{stderr}"
    );
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_room_for_the_runner_is_unschedulable_with_the_schedulers_message() {
    let env = sandbox().await;
    // Tolerating every taint does not help when the node's CPU is spoken
    // for: the runner's small request no longer fits on curl-demo's node.
    env.sandbox.set_allocatable_cpu("node-1", "10m").unwrap();
    let stderr = env
        .fails(&["curl-demo", "nginx-demo"], Duration::from_secs(60))
        .await;
    assert!(stderr.contains("node-1"), "{stderr}");
    assert!(stderr.contains("Insufficient cpu"), "{stderr}");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_that_crashes_shows_its_exit_code_and_last_lines() {
    let env = sandbox().await;
    env.sandbox
        .crash_runner_on_start(Some(RunnerCrash::default()));
    let stderr = env.fails(&["curl-demo"], Duration::from_secs(60)).await;
    assert!(
        stderr.contains("exited with code 1 before tracing started"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("failed to load BPF programs").count(),
        1,
        "the runner's stderr, once, in the error:\n{stderr}"
    );
    assert!(!stderr.contains("unexpected runner output"), "{stderr}");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_start_gives_up_after_the_start_timeout() {
    let env = sandbox().await;
    env.sandbox.set_image_pull_delay(Duration::from_secs(30));
    let stderr = env
        .fails(
            &["curl-demo", "--start-timeout", "2s"],
            Duration::from_secs(60),
        )
        .await;
    assert!(
        stderr.contains("the runners were not tracing after 2s (--start-timeout): node"),
        "{stderr}"
    );
    assert!(stderr.contains("pulling runner image"), "{stderr}");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_job_namespace_says_how_to_create_it() {
    let env = sandbox().await;
    let stderr = env
        .fails(
            &["curl-demo", "--job-namespace", "tracing"],
            Duration::from_secs(30),
        )
        .await;
    assert!(
        stderr.contains("the job namespace \"tracing\" does not exist: create it with `kubectl apply -f manifests/namespace.yaml`"),
        "{}",
        stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_valid_jobs_and_creates_nothing() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "--dry-run", "--port", "80"]);
    let out = run(cmd, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    for d in &docs {
        assert_eq!(d["kind"], serde_yaml::Value::from("Job"));
        let _: Job = serde_yaml::from_value(d.clone()).expect("a valid batch/v1 Job");
    }
    assert!(env.trace_jobs().await.is_empty());
    // The server accepts it with strict field validation.
    let mut kubectl = env.sandbox.kubectl();
    kubectl.args(["create", "--dry-run=server", "-f", "-"]);
    kubectl
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = kubectl.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "server-side validation: {}",
        text(&out.stderr)
    );
    assert!(env.trace_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_log_stream_is_reopened_without_losing_lines() {
    let env = sandbox().await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    running.wait_for(2, Duration::from_secs(30), |l| is_type(l, "ready"));
    env.sandbox.drop_log_streams();
    env.sandbox.drop_watches();
    running.wait_for_stderr(
        "node node-1's runner broke; reopened it",
        Duration::from_secs(20),
    );
    running.wait_for_stderr(
        "node node-2's runner broke; reopened it",
        Duration::from_secs(20),
    );
    running.interrupt();
    let (code, lines, stderr) = running.finish(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{stderr}");
    for ty in ["hello", "ready", "summary"] {
        assert_eq!(
            lines.iter().filter(|l| is_type(l, ty)).count(),
            2,
            "{ty} once per node, no repeats:\n{}\nstderr:\n{stderr}",
            lines.join("\n")
        );
    }
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_down_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
         users:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let mut cmd = Command::new(PLUGIN);
    cmd.arg("--kubeconfig").arg(&kc).arg("nginx-demo");
    let out = run(cmd, Duration::from_secs(60)).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: cannot get pod default/nginx-demo: the API server refused the connection (is the \
         cluster up, and is the kubeconfig's server address right?)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_kubectl_finds_and_runs_the_plugin() {
    let env = sandbox().await;
    let bin_dir = Path::new(PLUGIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", env.sandbox.kubeconfig_path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    };
    let out = run(kubectl(&["plugin", "list"]), Duration::from_secs(30)).await;
    assert!(
        text(&out.stdout).contains("kubectl-podtrace"),
        "{}",
        text(&out.stdout)
    );
    let out = run(kubectl(&["podtrace", "version"]), Duration::from_secs(30)).await;
    assert!(
        text(&out.stdout).starts_with(concat!("kubectl-podtrace ", env!("CARGO_PKG_VERSION"))),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        kubectl(&["podtrace", "curl-demo", "nginx-demo", "--duration", "2s"]),
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("SUMMARY"),
        "{}",
        text(&out.stdout)
    );
    let out = run(kubectl(&["podtrace", "--help"]), Duration::from_secs(30)).await;
    assert!(text(&out.stdout).contains("EXAMPLES:"));
    env.assert_nothing_left().await;
}

/// The real runner from its image, ending on its own (`--duration`): its
/// log ends as it exits, a moment before its pod says so (runc deletes the
/// container first), and that is no broken stream.
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_that_ends_on_its_own_is_no_broken_stream() {
    let config = SandboxConfig {
        images: vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))],
        ..two_nodes()
    };
    let env = sandbox_with(config).await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "-o", "json", "--duration", "2s"]);
    let running = Running::start(cmd);
    let (code, lines, stderr) = running.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        lines.iter().filter(|l| is_type(l, "summary")).count(),
        2,
        "{}",
        lines.join("\n")
    );
    assert!(
        !stderr.contains("broke"),
        "a runner's normal end was taken for a broken log stream:\n{stderr}"
    );
    env.assert_nothing_left().await;
}

/// The real runner from its image (it needs root and BPF): curl → nginx
/// shows up with pod names, and the Ctrl-C summary arrives.
#[tokio::test(flavor = "multi_thread")]
async fn real_runner_traces_curl_to_nginx() {
    let runner = std::env::var_os("PODTRACE_RUNNER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(PLUGIN).with_file_name("podtrace-runner"));
    assert!(
        runner.exists(),
        "{} is not built: run `cargo build --workspace` (or set PODTRACE_RUNNER_BIN)",
        runner.display()
    );
    // The product path: the runner's image, run by runc.
    let config = SandboxConfig {
        runner_bin: Some(runner),
        images: vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))],
        ..two_nodes()
    };
    let env = sandbox_with(config).await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    running.wait_for(2, Duration::from_secs(60), |l| is_type(l, "ready"));
    let ip = env.sandbox.pod_ip("default", "nginx-demo").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env
            .sandbox
            .exec(
                "default",
                "curl-demo",
                &["curl", "-s", "-o", "/dev/null", &format!("http://{ip}")],
            )
            .unwrap();
        assert!(out.status.success());
        if running.seen.iter().any(|l| l.contains("\"established\"")) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", running.seen.join("\n"));
        let _ = running
            .lines
            .recv_timeout(Duration::from_millis(500))
            .map(|l| running.seen.push(l));
    }
    running.interrupt();
    let (code, lines, stderr) = running.finish(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"src_name\":\"default/curl-demo\"")),
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        lines.iter().filter(|l| is_type(l, "summary")).count(),
        2,
        "both runners' summaries arrive before their Jobs go:\n{}",
        lines.join("\n")
    );
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rights_to_list_pods_names_are_limited_to_the_targets_and_said_once() {
    let env = sandbox().await;
    // Exactly manifests/rbac.yaml's namespaced Role, plus reading pods in
    // `default` only: no cluster-wide pod or service listing.
    env.sandbox
        .add_user(User::with_rules(
            "oncall",
            vec![
                Rule::new(&["get", "list"], &[""], &["pods"]).in_namespace("default"),
                Rule::new(&["get"], &[""], &["namespaces"]),
                Rule::new(&["create", "list", "delete"], &["batch"], &["jobs"])
                    .in_namespace("podtrace"),
                Rule::new(&["get", "list", "delete"], &[""], &["pods"]).in_namespace("podtrace"),
                Rule::new(&["get"], &[""], &["pods/log"]).in_namespace("podtrace"),
                Rule::new(&["list"], &[""], &["events"]).in_namespace("podtrace"),
            ],
        ))
        .unwrap();
    let mut cmd = env.plugin();
    cmd.args([
        "--context",
        "oncall",
        "curl-demo",
        "nginx-demo",
        "--duration",
        "2s",
    ]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("cannot list pods in all namespaces: forbidden")
            .count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(
        stdout.contains("default/curl-demo:40000"),
        "targets keep their names:\n{stdout}"
    );
    env.assert_nothing_left().await;
}

/// `(dst IP, dst_name)` of a `connect` event line.
fn connect_dst(line: &str) -> Option<(std::net::IpAddr, Option<String>)> {
    match Message::parse(line).ok()? {
        Message::Event(e) if matches!(e.kind, podtrace::event::EventKind::Connect) => {
            Some((e.dst.ip(), e.dst_name))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_is_no_target_is_named_from_the_pod_watch_without_listing_pods() {
    // Every half second the runners connect to each IP in `connect-to`: an
    // address no pod has (its name never comes), and later a third pod.
    let dir = tempfile::tempdir().unwrap();
    let connect_to = dir.path().join("connect-to");
    std::fs::write(&connect_to, "192.0.2.1\n").unwrap();
    let flags = ["--connect-file", connect_to.to_str().unwrap()];
    let env = sandbox_with(SandboxConfig {
        runner_bin: Some(fake_runner(dir.path(), &flags)),
        ..two_nodes()
    })
    .await;
    let before = env.sandbox.requests().len();
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "-o", "json"]);
    let mut running = Running::start(cmd);
    let nameless = |l: &str| connect_dst(l).is_some_and(|(ip, _)| ip.to_string() == "192.0.2.1");
    running.wait_for(1, Duration::from_secs(30), nameless);

    // A pod created once the trace runs, not traced, then connected to.
    let bystander = PodManifest::new("default", "bystander", "busybox", &["sleep", "infinity"])
        .on_node("node-2");
    env.sandbox.create_pod(bystander).await.unwrap();
    env.sandbox
        .wait_for_pod_phase("default", "bystander", "Running", Duration::from_secs(20))
        .await
        .unwrap();
    let ip = env.sandbox.pod_ip("default", "bystander").await.unwrap();
    std::fs::write(&connect_to, format!("192.0.2.1\n{ip}\n")).unwrap();
    running.wait_for(1, Duration::from_secs(20), |l| {
        connect_dst(l).is_some_and(|(_, name)| name.as_deref() == Some("default/bystander"))
    });
    // The nameless address keeps coming for 5 s more: a lookup per unknown
    // IP (every 3 s at most) would list pods again meanwhile.
    let seen = running.seen.iter().filter(|l| nameless(l)).count();
    running.wait_for(seen + 10, Duration::from_secs(20), nameless);
    running.interrupt();
    let (code, lines, stderr) = running.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    // The plugin is kube-rs, which sends no User-Agent.
    let lists: Vec<String> = env.sandbox.requests()[before..]
        .iter()
        .filter(|r| r.agent.is_empty() && r.is_list_of("/api/v1/pods"))
        .map(|r| r.uri.clone())
        .collect();
    assert!(
        lists.len() <= 1,
        "pods in all namespaces are listed once at most (the watch's first list): {lists:?}"
    );
    assert!(
        lines
            .iter()
            .filter_map(|l| connect_dst(l))
            .filter(|(dst, _)| *dst == std::net::IpAddr::V4(ip))
            .all(|(_, name)| name.as_deref() == Some("default/bystander")),
        "every connect to the bystander is named:\n{}",
        lines.join("\n")
    );
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_is_traced_with_a_warning() {
    let env = sandbox().await;
    let mut pod =
        PodManifest::new("default", "hostnet", "busybox", &["sleep", "infinity"]).on_node("node-1");
    pod.value["spec"]["hostNetwork"] = serde_json::json!(true);
    env.sandbox.create_pod(pod).await.unwrap();
    env.sandbox
        .wait_for_pod_phase("default", "hostnet", "Running", Duration::from_secs(20))
        .await
        .unwrap();
    let mut cmd = env.plugin();
    cmd.args(["hostnet", "--dry-run"]);
    let out = run(cmd, Duration::from_secs(30)).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: pod default/hostnet uses hostNetwork: its traffic is the node node-1's"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_dying_mid_trace_stops_the_session_and_the_summary_comes_from_its_events() {
    // A runner that dies right after its first events, without a summary.
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        runner_bin: Some(fake_runner(dir.path(), &["--die-with", "3"])),
        ..two_nodes()
    };
    let env = sandbox_with(config).await;
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo"]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopped (exit code 3); stopping the trace"),
        "{stderr}"
    );
    assert!(
        stdout.contains("tcp default/curl-demo -> default/nginx-demo:80"),
        "the events' flows are in the summary:\n{stdout}"
    );
    assert!(stdout.contains("(no summary came from node"), "{stdout}");
    env.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn netfilter_drops_are_explained_by_policy_or_said_once_to_be_unexplainable() {
    let dir = tempfile::tempdir().unwrap();
    let env = sandbox_with(SandboxConfig {
        runner_bin: Some(fake_runner(dir.path(), &["--netfilter-drops", "2"])),
        ..two_nodes()
    })
    .await;
    // With the rights: no policy selects either pod, so the drop has
    // another cause, said once per direction.
    let mut cmd = env.plugin();
    cmd.args(["curl-demo", "nginx-demo", "--duration", "2s"]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .matches("policy: ingress to default/nginx-demo on TCP/80: no NetworkPolicy selects it (so the drop NETFILTER_DROP has another cause)")
            .count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("policy: egress from default/curl-demo")
            .count(),
        1,
        "{stdout}"
    );

    // Without them (manifests/rbac.yaml less networkpolicies and
    // namespaces): said once, and the trace goes on.
    env.sandbox
        .add_user(User::with_rules(
            "oncall",
            vec![
                Rule::new(&["get", "list"], &[""], &["pods"]),
                Rule::new(&["list"], &[""], &["services"]),
                Rule::new(&["get"], &[""], &["namespaces"]),
                Rule::new(&["create", "list", "delete"], &["batch"], &["jobs"])
                    .in_namespace("podtrace"),
                Rule::new(&["get", "list", "delete"], &[""], &["pods"]).in_namespace("podtrace"),
                Rule::new(&["get"], &[""], &["pods/log"]).in_namespace("podtrace"),
                Rule::new(&["list"], &[""], &["events"]).in_namespace("podtrace"),
            ],
        ))
        .unwrap();
    let mut cmd = env.plugin();
    cmd.args([
        "--context",
        "oncall",
        "curl-demo",
        "nginx-demo",
        "--duration",
        "2s",
    ]);
    let out = run(cmd, Duration::from_secs(60)).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("drops cannot be explained by NetworkPolicy: watching")
            .count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(
        stderr.contains(
            "is forbidden (needs list and watch on networkpolicies and namespaces); tracing on"
        ),
        "{stderr}"
    );
    assert_eq!(
        stdout.matches("reason=NETFILTER_DROP").count(),
        4,
        "traced on:\n{stdout}"
    );
    assert!(!stdout.contains("policy:"), "{stdout}");
    env.assert_nothing_left().await;
}
