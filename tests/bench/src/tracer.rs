// SPDX-License-Identifier: Apache-2.0
//! The tracers under test: starting one in the node's namespace, timing its
//! ready line, sampling its memory, stopping it, and counting what it said.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use podtrace::runner_args::DEFAULT_SNAPLEN;

use crate::launch;

/// One column of the comparison.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    Untraced,
    /// `podtrace-runner` with its default event set.
    Runner,
    /// `podtrace-runner --packets`: an event per packet as well.
    RunnerPackets,
    /// `podtrace-runner --packets --snaplen 648`: what `kubectl podtrace
    /// --write` asks of every runner (each packet's first bytes copied out
    /// of the kernel, base64 in its JSON line).
    RunnerWrite,
    /// `--before-runner`'s binary with the default event set: the same
    /// rounds before and after a change.
    RunnerBefore,
    /// bpftrace with [`BPFTRACE_SCRIPT`].
    Bpftrace,
    /// tcpdump on the pod's host-side interface, writing to tmpfs.
    Tcpdump,
}

impl Arm {
    pub fn label(self) -> &'static str {
        match self {
            Arm::Untraced => "untraced",
            Arm::Runner => "podtrace-runner",
            Arm::RunnerPackets => "podtrace-runner --packets",
            Arm::RunnerWrite => "podtrace-runner --packets --snaplen 648 (--write)",
            Arm::RunnerBefore => "podtrace-runner (before)",
            Arm::Bpftrace => "bpftrace",
            Arm::Tcpdump => "tcpdump",
        }
    }

    pub fn is_runner(self) -> bool {
        matches!(
            self,
            Arm::Runner | Arm::RunnerPackets | Arm::RunnerWrite | Arm::RunnerBefore
        )
    }
}

/// bpftrace's equivalent of the runner's socket-level default set, on the
/// same tracepoints, filtered in the kernel to the pod IP (`$1`, the IPv4
/// address as the kernel stores it). It prints a line per event, as the
/// runner writes one per event. What it cannot do that the runner does:
/// attach at tc/tcx (no per-packet view at the veth, no SYN/FIN/RST packet
/// events, no in-kernel per-flow counters read out at exit), name drop
/// reasons (it prints the number), compute handshake RTT or connection
/// duration and bytes without extra maps, scope to a pod's namespace, or
/// report ring-buffer loss in its output stream.
pub const BPFTRACE_SCRIPT: &str = r#"
BEGIN { printf("READY\n"); }
tracepoint:sock:inet_sock_set_state
/ args->family == 2 &&
  (((struct sock *)args->skaddr)->__sk_common.skc_rcv_saddr == $1 ||
   ((struct sock *)args->skaddr)->__sk_common.skc_daddr == $1) /
{
  printf("%llu state %d->%d %s:%d %s:%d pid=%d comm=%s\n", nsecs, args->oldstate, args->newstate,
         ntop(args->saddr), args->sport, ntop(args->daddr), args->dport, pid, comm);
}
tracepoint:tcp:tcp_retransmit_skb,
tracepoint:tcp:tcp_send_reset,
tracepoint:tcp:tcp_receive_reset
/ args->skaddr != 0 &&
  (((struct sock *)args->skaddr)->__sk_common.skc_rcv_saddr == $1 ||
   ((struct sock *)args->skaddr)->__sk_common.skc_daddr == $1) /
{
  $sk = (struct sock *)args->skaddr;
  printf("%llu %s %s:%d %s:%d\n", nsecs, probe, ntop($sk->__sk_common.skc_rcv_saddr),
         $sk->__sk_common.skc_num, ntop($sk->__sk_common.skc_daddr),
         bswap($sk->__sk_common.skc_dport));
}
tracepoint:skb:kfree_skb
{
  $skb = (struct sk_buff *)args->skbaddr;
  $ip = (struct iphdr *)($skb->head + $skb->network_header);
  if (args->protocol == 0x0800 && ($ip->saddr == $1 || $ip->daddr == $1)) {
    printf("%llu drop reason=%d %s -> %s\n", nsecs, args->reason, ntop($ip->saddr), ntop($ip->daddr));
  }
}
"#;

/// Where and what to trace.
#[derive(Debug, Clone)]
pub struct Target {
    /// `/run/netns/NAME` of the node the pod runs on.
    pub node_netns: PathBuf,
    pub node_name: String,
    pub pod_ip: Ipv4Addr,
    /// The pod's host-side interface, in the node's namespace.
    pub host_if: String,
    pub runner: PathBuf,
    /// `--before-runner`, when given.
    pub before_runner: Option<PathBuf>,
    /// A tmpfs directory for the bpftrace script and tcpdump's capture.
    pub scratch: PathBuf,
}

impl Target {
    /// The command line that starts `arm` (`None` for untraced).
    pub fn command_line(&self, arm: Arm) -> Option<Vec<String>> {
        let ip = self.pod_ip.to_string();
        let line: Vec<String> = match arm {
            Arm::Untraced => return None,
            Arm::Runner | Arm::RunnerPackets | Arm::RunnerWrite | Arm::RunnerBefore => {
                let binary = match (arm, &self.before_runner) {
                    (Arm::RunnerBefore, Some(before)) => before,
                    (Arm::RunnerBefore, None) => return None,
                    _ => &self.runner,
                };
                let mut l = vec![
                    binary.display().to_string(),
                    "--pod-ip".into(),
                    ip,
                    "--node-name".into(),
                    self.node_name.clone(),
                ];
                if matches!(arm, Arm::RunnerPackets | Arm::RunnerWrite) {
                    l.push("--packets".into());
                }
                if arm == Arm::RunnerWrite {
                    l.extend(["--snaplen".into(), DEFAULT_SNAPLEN.to_string()]);
                }
                l
            }
            Arm::Bpftrace => vec![
                "bpftrace".into(),
                "-B".into(),
                "line".into(),
                self.scratch.join("podtrace.bt").display().to_string(),
                // The address as a u32 in host order of its network-order bytes.
                u32::from_ne_bytes(self.pod_ip.octets()).to_string(),
            ],
            Arm::Tcpdump => vec![
                "tcpdump".into(),
                "-n".into(),
                "-i".into(),
                self.host_if.clone(),
                "-w".into(),
                self.scratch.join("capture.pcap").display().to_string(),
                "host".into(),
                ip,
            ],
        };
        Some(line)
    }
}

/// What a tracer wrote, counted as it went.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Counts {
    /// Lines on stdout.
    pub lines: u64,
    /// Runner lines by `type`.
    pub by_type: BTreeMap<String, u64>,
    /// Sum of the runner's `lost` lines (bpftrace: its `Lost N events`).
    pub lost: u64,
    /// The first line of each runner `type`, as written: what the events
    /// looked like (e.g. which drop reason fired).
    pub first_by_type: BTreeMap<String, String>,
    /// The runner's `summary` line, as written.
    #[serde(skip)]
    pub summary: Option<String>,
    /// tcpdump's closing statistics.
    pub captured: Option<u64>,
    pub dropped_by_kernel: Option<u64>,
    /// Last lines of stderr, for error messages.
    #[serde(skip)]
    pub stderr_tail: Vec<String>,
}

/// The JSON `type` of a runner line, without parsing the whole line (the
/// reader must keep up with the tracer on a busy 2-core machine).
pub fn line_type(line: &str) -> Option<&str> {
    let rest = &line[line.find("\"type\"")? + 6..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The `count` of a runner `lost` line.
pub fn lost_count(line: &str) -> u64 {
    let Some(i) = line.find("\"count\"") else {
        return 0;
    };
    let rest = line[i + 7..]
        .trim_start()
        .trim_start_matches(':')
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

impl Counts {
    fn stdout_line(&mut self, arm: Arm, line: &str) {
        self.lines += 1;
        if arm.is_runner() {
            if let Some(t) = line_type(line) {
                if !self.first_by_type.contains_key(t) && !matches!(t, "summary" | "ready") {
                    self.first_by_type.insert(t.to_owned(), line.to_owned());
                }
                *self.by_type.entry(t.to_owned()).or_default() += 1;
                match t {
                    "lost" => self.lost += lost_count(line),
                    "summary" => self.summary = Some(line.to_owned()),
                    _ => {}
                }
            }
        } else if let Some(n) = line
            .strip_prefix("Lost ")
            .and_then(|r| r.strip_suffix(" events"))
        {
            // bpftrace's own note that its perf buffer overflowed.
            self.lost += n.trim().parse::<u64>().unwrap_or(0);
        }
    }

    /// Adds counts of a later part of the same stream.
    fn add(&mut self, later: Counts) {
        self.lines += later.lines;
        for (t, n) in later.by_type {
            *self.by_type.entry(t).or_default() += n;
        }
        self.lost += later.lost;
        for (t, l) in later.first_by_type {
            self.first_by_type.entry(t).or_insert(l);
        }
        if later.summary.is_some() {
            self.summary = later.summary;
        }
    }

    fn stderr_line(&mut self, line: &str) {
        let first = |s: &str| s.split_whitespace().next().and_then(|n| n.parse().ok());
        if line.ends_with("packets captured") {
            self.captured = first(line);
        } else if line.ends_with("packets dropped by kernel") {
            self.dropped_by_kernel = first(line);
        }
        if self.stderr_tail.len() >= 20 {
            self.stderr_tail.remove(0);
        }
        self.stderr_tail.push(line.to_owned());
    }

    /// Events: runner lines that are not control lines; any bpftrace line
    /// but its ready marker.
    pub fn events(&self, arm: Arm) -> u64 {
        if arm.is_runner() {
            self.by_type
                .iter()
                .filter(|(t, _)| {
                    !matches!(
                        t.as_str(),
                        "hello" | "ready" | "lost" | "summary" | "warning"
                    )
                })
                .map(|(_, n)| n)
                .sum()
        } else if arm == Arm::Tcpdump {
            self.captured.unwrap_or(0)
        } else {
            self.lines.saturating_sub(1)
        }
    }
}

/// Memory of a process from `/proc/PID/status`, in KiB: (VmRSS, VmHWM).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resident KiB of the process's mappings of BPF maps, from `smaps`.
pub fn bpf_mmap_rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return 0;
    };
    let mut in_bpf = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if in_bpf {
                total += kib
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
        {
            // A mapping's header line: `start-end perms offset dev inode [path]`.
            in_bpf = line.ends_with("anon_inode:bpf-map");
        }
    }
    total
}

/// User and system CPU seconds of a process, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm, which may itself hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after comm.
    Some((
        f.get(11)?.parse::<f64>().ok()? / hz,
        f.get(12)?.parse::<f64>().ok()? / hz,
    ))
}

#[derive(Default)]
struct Shared {
    counts: Counts,
    ready_at: Option<Instant>,
    hello_at: Option<Instant>,
    rss_samples: Vec<(Instant, u64)>,
}

/// A running tracer. Killed on drop if not stopped.
pub struct Tracer {
    pub arm: Arm,
    child: Child,
    /// Spawn to ready line.
    pub ready_after: Duration,
    /// Spawn to the runner's `hello` line (its first), if it wrote one.
    pub hello_after: Option<Duration>,
    shared: Arc<Mutex<Shared>>,
    readers: Vec<JoinHandle<()>>,
    sampling: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
    /// CPU time of the tracer (user, system) when it became ready.
    cpu_at_ready: (f64, f64),
    ready_at: Instant,
}

/// A stopped tracer's figures.
#[derive(Serialize, Debug, Clone)]
pub struct Stopped {
    pub arm: Arm,
    pub ready_ms: f64,
    pub hello_ms: Option<f64>,
    /// VmHWM just before the stop signal.
    pub peak_rss_kib: u64,
    /// Median VmRSS over the second half of the run.
    pub steady_rss_kib: u64,
    /// Of the RSS at the stop: pages of BPF maps mapped into the process
    /// (a ring buffer's data area is mapped twice). This is kernel memory the
    /// tracer also sees, so it is counted in its RSS and in the maps' memlock.
    pub bpf_mmap_rss_kib: u64,
    pub counts: Counts,
    pub clean_exit: bool,
    /// CPU seconds (user, system) the tracer process used between its
    /// ready line and the stop signal, and that window's length.
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub window_s: f64,
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

impl Tracer {
    /// Starts `arm` (not untraced) and waits for its ready line.
    pub fn start(arm: Arm, target: &Target) -> Result<Tracer> {
        Tracer::start_with(arm, target, &[])
    }

    /// [`Tracer::start`] with extra arguments (diagnostic variants).
    pub fn start_with(arm: Arm, target: &Target, extra: &[&str]) -> Result<Tracer> {
        let mut line = target
            .command_line(arm)
            .context("the untraced arm has no tracer")?;
        line.extend(extra.iter().map(|a| (*a).to_owned()));
        if arm == Arm::Bpftrace {
            fs::write(target.scratch.join("podtrace.bt"), BPFTRACE_SCRIPT)
                .context("write the bpftrace script")?;
        }
        let mut cmd = Command::new(&line[0]);
        cmd.args(&line[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let _ns = launch::in_netns(&mut cmd, &target.node_netns, arm == Arm::Bpftrace)?;
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("start {}", line[0]))?;
        drop(_ns);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let readers = vec![
            reader(
                child.stdout.take().expect("piped"),
                shared.clone(),
                arm,
                true,
                target.scratch.join(format!("stdout-{}.jsonl", child.id())),
            ),
            reader(
                child.stderr.take().expect("piped"),
                shared.clone(),
                arm,
                false,
                PathBuf::new(),
            ),
        ];
        let sampling = Arc::new(AtomicBool::new(true));
        let mut tracer = Tracer {
            arm,
            child,
            ready_after: Duration::ZERO,
            hello_after: None,
            shared,
            readers,
            sampling: sampling.clone(),
            sampler: None,
            cpu_at_ready: (0.0, 0.0),
            ready_at: started,
        };
        let deadline = started + READY_TIMEOUT;
        loop {
            // Copy out, so the lock is released before the branch locks again.
            let (ready_at, hello_at) = {
                let s = tracer.shared.lock().unwrap();
                (s.ready_at, s.hello_at)
            };
            if let Some(at) = ready_at {
                tracer.ready_after = at - started;
                tracer.hello_after = hello_at.map(|h| h - started);
                tracer.ready_at = at;
                tracer.cpu_at_ready = cpu_seconds(tracer.child.id()).unwrap_or_default();
                break;
            }
            if tracer.child.try_wait()?.is_some() || Instant::now() > deadline {
                std::thread::sleep(Duration::from_millis(50));
                let tail = tracer.shared.lock().unwrap().counts.stderr_tail.join("\n");
                bail!(
                    "{} did not print its ready line within {READY_TIMEOUT:?}: {tail}",
                    arm.label()
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let (pid, shared) = (tracer.child.id(), tracer.shared.clone());
        tracer.sampler = Some(std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory_kib(pid) {
                    shared
                        .lock()
                        .unwrap()
                        .rss_samples
                        .push((Instant::now(), rss));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
        Ok(tracer)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the tracer as a user would (SIGINT), waits for it to write its
    /// summary and exit, and returns its figures.
    pub fn stop(mut self) -> Result<Stopped> {
        let peak = memory_kib(self.pid()).map_or(0, |(_, hwm)| hwm);
        let bpf_mmap = bpf_mmap_rss_kib(self.pid());
        let cpu = cpu_seconds(self.pid()).unwrap_or(self.cpu_at_ready);
        let window_s = self.ready_at.elapsed().as_secs_f64();
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own unreaped child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut clean = false;
        loop {
            if let Some(status) = self.child.try_wait()? {
                clean = status.success();
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let shared = self.shared.lock().unwrap();
        // Steady: the second half of the samples, after start-up allocation.
        let samples = &shared.rss_samples;
        let half: Vec<f64> = samples[samples.len() / 2..]
            .iter()
            .map(|(_, kib)| *kib as f64)
            .collect();
        let steady = crate::stats::Spread::of(&half).map_or(0, |s| s.median as u64);
        let peak = peak.max(samples.iter().map(|(_, k)| *k).max().unwrap_or(0));
        Ok(Stopped {
            arm: self.arm,
            ready_ms: self.ready_after.as_secs_f64() * 1e3,
            hello_ms: self.hello_after.map(|h| h.as_secs_f64() * 1e3),
            peak_rss_kib: peak,
            steady_rss_kib: steady,
            bpf_mmap_rss_kib: bpf_mmap,
            counts: shared.counts.clone(),
            clean_exit: clean,
            cpu_user_s: cpu.0 - self.cpu_at_ready.0,
            cpu_sys_s: cpu.1 - self.cpu_at_ready.1,
            window_s,
        })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads one of a tracer's streams. Line by line until the ready line (its
/// time is a figure); after that, stdout is copied in large chunks to a
/// file on tmpfs, as a container runtime copies a pod's stdout to its log,
/// and counted only once the tracer has exited. Parsing every line while
/// the load runs would put this benchmark's own CPU on the 2 cores the
/// traced pod uses, and charge it to the tracer (tcpdump, which writes to
/// a file, would pay nothing of the kind).
fn reader(
    stream: impl Read + Send + 'static,
    shared: Arc<Mutex<Shared>>,
    arm: Arm,
    stdout: bool,
    spool: PathBuf,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, stream);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            let now = Instant::now();
            let mut s = shared.lock().unwrap();
            if s.ready_at.is_none() && is_ready(arm, stdout, l) {
                s.ready_at = Some(now);
            }
            if stdout && s.hello_at.is_none() && line_type(l) == Some("hello") {
                s.hello_at = Some(now);
            }
            if stdout {
                s.counts.stdout_line(arm, l);
            } else {
                s.counts.stderr_line(l);
            }
            if stdout && s.ready_at.is_some() {
                break;
            }
        }
        // Ready: spool the rest unparsed, count it after the tracer exits.
        let copied = fs::File::create(&spool).and_then(|mut f| std::io::copy(&mut r, &mut f));
        if let Err(e) = copied {
            let tail = &mut shared.lock().unwrap().counts.stderr_tail;
            tail.push(format!(
                "bench: spooling stdout to {}: {e}",
                spool.display()
            ));
            // Drain, so the tracer never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        if let Ok(f) = fs::File::open(&spool) {
            let mut counts = Counts::default();
            for l in BufReader::new(f).lines().map_while(std::io::Result::ok) {
                counts.stdout_line(arm, l.trim_end());
            }
            shared.lock().unwrap().counts.add(counts);
        }
        let _ = fs::remove_file(&spool);
    })
}

/// Each tracer's ready marker.
fn is_ready(arm: Arm, stdout: bool, line: &str) -> bool {
    match arm {
        a if a.is_runner() => stdout && line_type(line) == Some("ready"),
        Arm::Bpftrace => stdout && line == "READY",
        Arm::Tcpdump => !stdout && line.contains("listening on"),
        _ => false,
    }
}

/// Removes what a tracer left in the scratch directory (tcpdump's capture).
pub fn clear_scratch(dir: &Path) {
    let _ = fs::remove_file(dir.join("capture.pcap"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_type_and_lost_count_without_parsing() {
        assert_eq!(line_type(r#"{"type":"ready","node":"a"}"#), Some("ready"));
        assert_eq!(
            line_type(r#"{"time":"x", "type" : "accept"}"#),
            Some("accept")
        );
        assert_eq!(line_type("READY"), None);
        assert_eq!(lost_count(r#"{"type":"lost","count":42}"#), 42);
        assert_eq!(lost_count(r#"{"type":"lost"}"#), 0);
    }

    #[test]
    fn counts_events_and_tcpdump_statistics() {
        let mut c = Counts::default();
        for l in [
            r#"{"type":"hello"}"#,
            r#"{"type":"ready"}"#,
            r#"{"type":"accept"}"#,
            r#"{"type":"close"}"#,
            r#"{"type":"lost","count":3}"#,
        ] {
            c.stdout_line(Arm::Runner, l);
        }
        assert_eq!(c.events(Arm::Runner), 2);
        assert_eq!(c.lost, 3);
        c.stderr_line("1234 packets captured");
        c.stderr_line("7 packets dropped by kernel");
        assert_eq!((c.captured, c.dropped_by_kernel), (Some(1234), Some(7)));
    }

    #[test]
    fn bpftrace_gets_the_pod_ip_as_the_kernel_stores_it() {
        let t = Target {
            node_netns: "/run/netns/x".into(),
            node_name: "n".into(),
            pod_ip: Ipv4Addr::new(127, 0, 0, 1),
            host_if: "veth".into(),
            runner: "/r".into(),
            before_runner: None,
            scratch: "/dev/shm/s".into(),
        };
        let l = t.command_line(Arm::Bpftrace).unwrap();
        assert_eq!(
            l.last().unwrap(),
            &u32::from_ne_bytes([127, 0, 0, 1]).to_string()
        );
        assert!(t.command_line(Arm::Untraced).is_none());
        assert!(t
            .command_line(Arm::RunnerPackets)
            .unwrap()
            .contains(&"--packets".to_string()));
        let write = t.command_line(Arm::RunnerWrite).unwrap().join(" ");
        assert!(write.ends_with("--packets --snaplen 648"), "{write}");
        assert!(!t
            .command_line(Arm::Runner)
            .unwrap()
            .iter()
            .any(|a| a.starts_with("--") && a != "--pod-ip" && a != "--node-name"));
    }
}
