// SPDX-License-Identifier: Apache-2.0
//! Test support: runs `podtrace-runner` inside a node namespace and reads
//! its JSON lines with bounded waits.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podtrace::event::{Event, Features, FlowSummary, Hello, Message, Ready, Summary};
pub use podtrace_netns::Family;
use podtrace_netns::{ChildLines, Cluster, Netns, Node, Pod, Shape};
use serde_json::Value;

/// The runner under test: this build's, or the binary `PODTRACE_TEST_RUNNER`
/// names (the kernel matrix runs the release build the container image
/// ships: a debug build starts slower under emulation).
pub fn runner_path() -> String {
    std::env::var("PODTRACE_TEST_RUNNER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_podtrace-runner").to_owned())
}

/// What this kernel offers, as the runner probes it (the kernel matrix
/// runs these tests on kernels with and without each feature).
pub fn kernel_features() -> Features {
    podtrace::features::Kernel::probe().features
}

/// The `--tc-mode`s this kernel can attach with.
pub fn tc_modes() -> &'static [&'static str] {
    if kernel_features().tcx {
        &["tcx", "clsact"]
    } else {
        &["clsact"]
    }
}

pub fn require_root() {
    assert!(
        podtrace_netns::is_root(),
        "these tests load eBPF programs and build namespaces: run as root"
    );
}

/// A runner process in a node's namespace, its lines read through the
/// schema; killed on drop.
pub struct Runner {
    child: ChildLines,
    /// Every line read so far.
    pub seen: Vec<Message>,
    pub pid: u32,
}

impl Runner {
    pub fn start(node: &Node, args: &[&str]) -> Runner {
        Self::start_in(&node.netns, args)
    }

    pub fn start_in(ns: &Netns, args: &[&str]) -> Runner {
        let child = ChildLines::spawn(ns.command(&runner_path()).args(args).env_remove("RUST_LOG"))
            .expect("start podtrace-runner");
        let pid = child.child.id();
        Runner {
            child,
            seen: Vec::new(),
            pid,
        }
    }

    /// Reads one more line before `deadline`: its index in `seen`.
    fn next(&mut self, deadline: Instant) -> Option<usize> {
        let i = self.child.next_line(deadline)?;
        let line = &self.child.seen[i];
        let msg = Message::parse(line)
            .unwrap_or_else(|e| panic!("runner wrote a line outside the schema {line:?}: {e}"));
        self.seen.push(msg);
        Some(self.seen.len() - 1)
    }

    /// Waits for the `ready` line (panics with stderr if the runner dies).
    pub fn ready(&mut self) -> Ready {
        match self.wait_for(Duration::from_secs(20), |m| matches!(m, Message::Ready(_))) {
            Some(Message::Ready(r)) => r.body,
            _ => panic!(
                "runner never got ready; stderr: {:?}; lines: {:?}",
                self.child.stderr(),
                self.seen
            ),
        }
    }

    /// The first line (already read or arriving before `timeout`) that
    /// matches.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return Some(m.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(i) = self.next(deadline) {
            if pred(&self.seen[i]) {
                return Some(self.seen[i].clone());
            }
        }
        None
    }

    /// [`Runner::wait_for`] of an event.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        match self.wait_for(timeout, |m| matches!(m, Message::Event(e) if pred(e))) {
            Some(Message::Event(e)) => Some(e),
            _ => None,
        }
    }

    /// Waits (at most 15 s) until `n` events that match have been read;
    /// panics with what was seen if they do not come.
    pub fn expect_events(&mut self, what: &str, n: usize, pred: impl Fn(&Event) -> bool) {
        let matches = |m: &Message| matches!(m, Message::Event(e) if pred(e));
        let mut count = self.seen.iter().filter(|m| matches(m)).count();
        let deadline = Instant::now() + Duration::from_secs(15);
        while count < n {
            match self.next(deadline) {
                Some(i) => count += usize::from(matches(&self.seen[i])),
                None => panic!(
                    "{count} of {n} {what} within 15 s; stderr: {:?}; saw:\n{}",
                    self.child.stderr(),
                    self.dump()
                ),
            }
        }
    }

    /// Like [`Runner::wait_for`], panicking with what was seen on timeout.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        if let Some(m) = self.wait_for(Duration::from_secs(15), pred) {
            return m;
        }
        let alive = self.child.child.try_wait().ok().flatten().is_none();
        panic!(
            "no {what} within 15 s (runner was {}); stderr: {:?}; saw:\n{}",
            if alive { "running" } else { "gone" },
            self.child.stderr(),
            self.dump()
        )
    }

    /// [`Runner::expect`] of an event.
    pub fn expect_event(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        match self.expect(what, |m| matches!(m, Message::Event(e) if pred(e))) {
            Message::Event(e) => e,
            m => unreachable!("{m:?}"),
        }
    }

    pub fn dump(&self) -> String {
        self.child.seen.join("\n")
    }

    /// [`Runner::stop`] for a runner that must exit 0: its lines.
    pub fn stop_clean(self) -> Vec<Message> {
        let (code, lines, stderr) = self.stop();
        assert_eq!(code, 0, "{stderr}");
        lines
    }

    /// Sends SIGTERM, waits for exit, returns (exit code, all lines, stderr).
    pub fn stop(self) -> (i32, Vec<Message>, String) {
        self.child.signal(libc::SIGTERM);
        self.finish()
    }

    /// Waits (bounded) for the runner to exit on its own.
    pub fn finish(mut self) -> (i32, Vec<Message>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "runner did not exit within 20 s");
            // Reading keeps its stdout pipe from filling up.
            let _ = self.next(Instant::now() + Duration::from_millis(10));
        };
        let drain = Instant::now() + Duration::from_secs(5);
        while self.next(drain).is_some() {}
        self.child.wait_stderr_end(drain);
        (
            status.code().unwrap_or(-1),
            std::mem::take(&mut self.seen),
            self.child.stderr(),
        )
    }
}

/// Loads an nftables ruleset into `ns` (its file named from `prefix`,
/// the cluster's, and `name`).
pub fn nft(ns: &Netns, prefix: &str, name: &str, rules: &str) {
    let file = std::env::temp_dir().join(format!("{prefix}{name}.nft"));
    std::fs::write(&file, rules).unwrap();
    ns.exec("nft", &["-f", file.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&file);
}

/// The events among `lines`.
pub fn events(lines: &[Message]) -> impl Iterator<Item = &Event> {
    lines.iter().filter_map(|m| match m {
        Message::Event(e) => Some(e),
        _ => None,
    })
}

/// Runs curl in `pod` and returns (http code, bytes downloaded).
pub fn curl(pod: &Pod, url: &str, max_s: u32) -> (String, u64) {
    let out = pod.curl(url, max_s).expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    let code = it.next().unwrap_or("").to_owned();
    let size = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (code, size)
}

/// Runs `f` on a thread that lives in `ns` (setns affects only that thread).
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns(2) on a namespace fd; affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A UDP socket bound to `ip:port` inside `ns`, answering nothing.
pub fn udp_listener(ns: &Netns, ip: IpAddr, port: u16) -> UdpSocket {
    in_netns(ns, move || UdpSocket::bind((ip, port)).expect("bind udp"))
        .join()
        .unwrap()
}

/// Sends one datagram from inside `ns`.
pub fn udp_send(ns: &Netns, to: std::net::SocketAddr, payload: &'static [u8]) {
    in_netns(ns, move || {
        let any: IpAddr = if to.is_ipv6() {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        let s = UdpSocket::bind((any, 0)).expect("bind");
        s.send_to(payload, to).expect("send");
    })
    .join()
    .unwrap();
}

/// `http://IP:PORT/` (brackets around an IPv6 address).
pub fn http_url(ip: IpAddr, port: u16) -> String {
    format!("http://{}/", SocketAddr::new(ip, port))
}

/// Runs a command, returning stdout (empty on failure).
pub fn sh(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// IDs of the BPF programs process `pid` holds open (from its fdinfo:
/// Debian's bpftool cannot show pids).
pub fn bpf_prog_ids_of(pid: u32) -> Vec<u64> {
    bpf_ids_of(pid, "prog_id:")
}

/// IDs of the BPF maps process `pid` holds (from its fdinfo).
pub fn bpf_map_ids_of(pid: u32) -> Vec<u64> {
    bpf_ids_of(pid, "map_id:")
}

fn bpf_ids_of(pid: u32, field: &str) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// How many bytes the pipe on process `pid`'s stdout holds (F_GETPIPE_SZ
/// through a reopened /proc/PID/fd/1, which for a pipe is the same pipe).
pub fn stdout_pipe_bytes(pid: u32) -> i32 {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/{pid}/fd/1"))
        .expect("reopen the runner's stdout pipe");
    // SAFETY: F_GETPIPE_SZ on an fd we own; no memory is passed.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ) }
}

/// `bpftool -j OBJ show|dump id ID`, parsed.
pub fn bpftool_json(obj: &str, verb: &str, id: u64) -> Value {
    let out = sh(Command::new("bpftool").args(["-j", obj, verb, "id", &id.to_string()]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bpftool {obj} {verb} {id}: {e}: {out}"))
}

/// Whether a BPF program with this ID still exists.
pub fn bpf_prog_exists(id: u64) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What tc and bpftool show attached to `iface` in `ns` (empty: nothing).
pub fn attached_to(ns: &Netns, iface: &str) -> String {
    let mut all = String::new();
    for dir in ["ingress", "egress"] {
        all += &sh(ns.command("tc").args(["filter", "show", "dev", iface, dir]));
    }
    let net = sh(ns
        .command("bpftool")
        .args(["-j", "net", "show", "dev", iface]));
    if let Ok(v) = serde_json::from_str::<Value>(&net) {
        for entry in v.as_array().into_iter().flatten() {
            for key in ["tc", "tcx", "xdp"] {
                if let Some(a) = entry[key].as_array() {
                    if !a.is_empty() {
                        all += &format!("{key}: {a:?}\n");
                    }
                }
            }
        }
    }
    all
}

/// The `hello` line among a runner's lines.
pub fn hello_of(lines: &[Message]) -> &Hello {
    lines
        .iter()
        .find_map(|m| match m {
            Message::Hello(h) => Some(&h.body),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no hello line in {lines:?}"))
}

/// The `summary` line among a stopped runner's lines.
pub fn summary_of(lines: &[Message]) -> &Summary {
    lines
        .iter()
        .find_map(|m| match m {
            Message::Summary(s) => Some(&s.body),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no summary line in {lines:?}"))
}

/// The first flow of `summary` that `pred` accepts.
pub fn flow_where(summary: &Summary, pred: impl Fn(&FlowSummary) -> bool) -> &FlowSummary {
    summary
        .flows
        .iter()
        .find(|f| pred(f))
        .unwrap_or_else(|| panic!("no such flow in {summary:?}"))
}

/// `field` summed over every flow of `summary`.
pub fn total(summary: &Summary, field: impl Fn(&FlowSummary) -> u64) -> u64 {
    summary.flows.iter().map(field).sum()
}

/// One node of `shape` with a server and a client pod on it, named as
/// given. Dropped in reverse order: pods, node, then the cluster.
pub fn one_node_two_pods(
    shape: Shape,
    server: &str,
    client: &str,
) -> (Cluster, Arc<Node>, Pod, Pod) {
    one_node_two_pods_in(Cluster::new().unwrap(), shape, server, client)
}

/// [`one_node_two_pods`] in `family` (a dual-stack cluster for IPv6).
pub fn one_node_two_pods_of(
    family: Family,
    shape: Shape,
    server: &str,
    client: &str,
) -> (Cluster, Arc<Node>, Pod, Pod) {
    let cluster = match family {
        Family::V4 => Cluster::new(),
        Family::V6 => Cluster::dual_stack(),
    };
    one_node_two_pods_in(cluster.unwrap(), shape, server, client)
}

fn one_node_two_pods_in(
    cluster: Cluster,
    shape: Shape,
    server: &str,
    client: &str,
) -> (Cluster, Arc<Node>, Pod, Pod) {
    let node = cluster.add_node("node", shape).unwrap();
    let server = cluster.add_pod("node", server).unwrap();
    let client = cluster.add_pod("node", client).unwrap();
    (cluster, node, server, client)
}
