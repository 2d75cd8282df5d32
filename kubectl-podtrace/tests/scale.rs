// SPDX-License-Identifier: Apache-2.0
//! Scale figures (docs/scale.md), a measurement rather than a test: ignored
//! by default, it asserts no timing. A 20-replica Deployment spread over 8
//! sandbox nodes is traced with `deploy/web` by the real runner (its image,
//! under runc); it prints the time from invocation to every runner ready,
//! the plugin's CPU time and peak memory, and the API requests it makes
//! per minute while tracing (the sandbox counts requests per User-Agent).
//!
//!     sudo cargo test -p kubectl-podtrace --test scale -- --ignored --nocapture
//!
//! `PODTRACE_SCALE_TRACE_S` sets how long it traces once ready (default 60).
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podtrace_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-podtrace");
const REPLICAS: usize = 20;
const NODES: usize = 8;

fn kubectl(sb: &Sandbox, args: &[&str]) -> String {
    let o = sb.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// CPU seconds (user + system) and peak RSS (KiB) of a live process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 12th and 13th of them, in clock ticks.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

/// Requests by the plugin (kube-rs's User-Agent; kubectl and the sandbox's
/// own controllers are not counted).
fn plugin_requests(sb: &Sandbox) -> u64 {
    sb.requests_by_agent()
        .iter()
        .filter(|(agent, _)| agent.starts_with("kube-rs") || agent.is_empty())
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored --nocapture (docs/scale.md)"]
async fn twenty_replicas_on_eight_nodes() {
    assert!(podtrace_sandbox::is_root(), "needs root");
    let trace_for = Duration::from_secs(
        std::env::var("PODTRACE_SCALE_TRACE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let runner = Path::new(PLUGIN).with_file_name("podtrace-runner");
    let mut config = SandboxConfig::bare();
    config.nodes = NODES;
    config.runner_bin = Some(runner);
    config.images =
        vec![podtrace_sandbox::runner_image_archive().unwrap_or_else(|e| panic!("{e}"))];
    let sb = Sandbox::start(config).await.expect("sandbox starts");
    let replicas = format!("--replicas={REPLICAS}");
    kubectl(
        &sb,
        &["create", "deployment", "web", "--image=nginx", &replicas],
    );
    kubectl(
        &sb,
        &["rollout", "status", "deployment", "web", "--timeout=120s"],
    );
    let pods: Value = serde_json::from_str(&kubectl(
        &sb,
        &["get", "pods", "-l", "app=web", "-o", "json"],
    ))
    .unwrap();
    let nodes: BTreeSet<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    let before = plugin_requests(&sb);
    let started = Instant::now();
    let mut child = Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(sb.kubeconfig_path())
        .args(["deploy/web", "-o", "json", "--start-timeout", "120s"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("plugin starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .try_for_each(|l| tx.send(l))
    });
    let mut ready = 0;
    let deadline = started + Duration::from_secs(180);
    while ready < nodes.len() {
        assert!(
            Instant::now() < deadline,
            "{ready} of {} ready",
            nodes.len()
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            ready += usize::from(l.contains(r#""type":"ready""#));
        }
    }
    let to_ready = started.elapsed();
    let (cpu_ready, _) = usage(pid);
    let at_ready = plugin_requests(&sb);
    let log_at_ready = sb.requests().len();
    let tracing = Instant::now();
    while tracing.elapsed() < trace_for {
        let _ = rx.recv_timeout(Duration::from_millis(200));
    }
    let (cpu, rss) = usage(pid);
    let during = plugin_requests(&sb) - at_ready;
    // What they were: method and path, a watch told from a list.
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &sb.requests()[log_at_ready..] {
        if r.agent.starts_with("kube-rs") || r.agent.is_empty() {
            let path = r.uri.split('?').next().unwrap_or_default();
            let watch = if r.uri.contains("watch=true") {
                " (watch)"
            } else {
                ""
            };
            *kinds
                .entry(format!("{} {path}{watch}", r.method))
                .or_default() += 1;
        }
    }
    let per_minute = during as f64 * 60.0 / trace_for.as_secs_f64();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = child.wait();
    println!(
        "scale: {REPLICAS} pods on {} nodes: every runner ready {:.2} s after invocation \
         ({} API requests until then); plugin CPU {:.2} s until ready, {:.2} s after {} s of \
         tracing; peak RSS {} KiB; {} API requests while tracing ({per_minute:.1}/min); by \
         agent {:?}; while tracing: {kinds:?}",
        nodes.len(),
        to_ready.as_secs_f64(),
        at_ready - before,
        cpu_ready,
        cpu,
        trace_for.as_secs(),
        rss,
        during,
        sb.requests_by_agent()
    );
    assert_eq!(nodes.len(), NODES, "the replicas cover every node");
    sb.shutdown().await;
}
