// SPDX-License-Identifier: Apache-2.0
//! Support for the end-to-end tests: finding the built binaries, running the
//! real `kubectl podtrace …` through kubectl's plugin discovery, and reading
//! its JSON lines with bounded waits.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use podtrace_sandbox::ChildLines;
use serde_json::Value;

/// The cargo target directory these tests were built into
/// (`target/debug/deps/<test>` → `target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// A workspace binary built next to the tests (`cargo build --workspace`
/// builds them; `cargo test --workspace` does too).
pub fn built_bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// `kubectl podtrace ARGS…` through the real kubectl's plugin discovery:
/// the plugin's directory goes first on PATH, nothing else points at it.
pub fn kubectl_podtrace(kubeconfig: &Path, args: &[&str]) -> Command {
    let plugin = built_bin("kubectl-podtrace");
    let dir = plugin.parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("kubectl");
    cmd.arg("podtrace")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG");
    cmd
}

/// `kubectl podtrace` running, its stdout lines read as JSON with bounded
/// waits (a [`ChildLines`]: killed on drop).
pub struct Traced(ChildLines);

impl Deref for Traced {
    type Target = ChildLines;
    fn deref(&self) -> &ChildLines {
        &self.0
    }
}

impl DerefMut for Traced {
    fn deref_mut(&mut self) -> &mut ChildLines {
        &mut self.0
    }
}

impl Traced {
    pub fn spawn(mut cmd: Command) -> Traced {
        Traced(ChildLines::spawn(&mut cmd).expect("spawn kubectl podtrace"))
    }

    /// When the first line matching `pred` was read, from `started`.
    pub fn first_at(&self, pred: impl Fn(&Value) -> bool) -> Option<Duration> {
        self.seen.iter().zip(&self.seen_at).find_map(|(line, at)| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|v| pred(v))
                .map(|_| *at)
        })
    }

    /// Reads lines until `pred` holds for the JSON objects seen so far, or
    /// `timeout` passes (then panics with everything seen).
    pub fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.json()) {
            if self.0.next_line(deadline).is_none() {
                let why = if Instant::now() >= deadline {
                    format!("timed out after {timeout:?}")
                } else {
                    "output ended".to_owned()
                };
                panic!(
                    "{why} waiting for {what}\n--- stdout:\n{}\n--- stderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                );
            }
        }
    }

    /// Every stdout line that parsed as a JSON object.
    pub fn json(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits (bounded) for the process to exit, collecting the rest of its
    /// output; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match self.0.wait_exit(timeout) {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!(
                "kubectl podtrace did not exit within {timeout:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.seen.join("\n"),
                self.stderr()
            ),
        }
    }
}

/// Lines of `type` `ty`.
pub fn of_type<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == ty).collect()
}

/// Peak resident set (VmHWM) of a live process in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// IDs of the BPF programs a live process holds (program and link file
/// descriptors carry `prog_id:` in their fdinfo).
pub fn bpf_prog_ids(pid: u32) -> Vec<u64> {
    let mut ids = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for fd in fds.flatten() {
        if let Ok(info) = std::fs::read_to_string(fd.path()) {
            ids.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|v| v.trim().parse::<u64>().ok()),
            );
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// IDs of every BPF program loaded in the kernel now.
pub fn loaded_prog_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool prog show");
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// Waits (bounded) until nothing of a trace is left: no Jobs, no pods in
/// `podtrace`, no runner processes or containers, none of `runner_progs`
/// (BPF program ids) loaded, no tc/tcx program of ours on any node.
pub fn assert_nothing_left(sandbox: &podtrace_sandbox::Sandbox, runner_progs: &[u64]) {
    let count = |args: &[&str]| {
        let out = sandbox.kubectl().args(args).output().expect("kubectl get");
        let v: Value = serde_json::from_slice(&out.stdout).expect("kubectl JSON");
        v["items"].as_array().map_or(0, Vec::len)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = count(&["get", "jobs", "-A", "-o", "json"]);
        let pods = count(&["get", "pods", "-n", "podtrace", "-o", "json"]);
        let runners = sandbox.runner_processes();
        let containers = sandbox.runner_container_leftovers();
        if jobs == 0 && pods == 0 && runners.is_empty() && containers.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {jobs} jobs, {pods} pods, runner pids {runners:?}, runner containers \
             {containers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let loaded = loaded_prog_ids();
    let left: Vec<&u64> = runner_progs
        .iter()
        .filter(|id| loaded.contains(id))
        .collect();
    assert!(left.is_empty(), "BPF programs still loaded: {left:?}");
    for node in sandbox.node_names() {
        let ns = format!("{}{node}", sandbox.netns_prefix());
        let net = Command::new("ip")
            .args(["netns", "exec", &ns, "bpftool", "-j", "net", "show"])
            .output()
            .expect("bpftool net show");
        let text = String::from_utf8_lossy(&net.stdout);
        assert!(
            !text.contains("pt_tc_"),
            "a tc/tcx program of ours is still attached on node {node}: {text}"
        );
    }
}
