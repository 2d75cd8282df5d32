// SPDX-License-Identifier: Apache-2.0
//! The results page (`docs/benchmarks.md`), a pure function of the results,
//! and the verdict on each of the targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::loss;
use crate::overhead::{workload_short, Run};
use crate::stats::Spread;
use crate::suite::Results;
use crate::tracer::Arm;
use crate::wrk::{Workload, WrkResult};

/// A figure of one arm relative to the untraced run of the same round and
/// workload, over all rounds.
pub fn ratio(
    runs: &[Run],
    workload: Workload,
    arm: Arm,
    f: impl Fn(&WrkResult) -> f64,
) -> Option<Spread> {
    let find = |round: u32, a: Arm| {
        runs.iter()
            .find(|r| r.round == round && r.workload == workload && r.arm == a)
            .and_then(|r| r.wrk.as_ref())
    };
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.workload == workload && r.arm == arm)
        .filter_map(|r| Some(f(r.wrk.as_ref()?) / f(find(r.round, Arm::Untraced)?)))
        .collect();
    Spread::of(&v)
}

fn absolute(
    runs: &[Run],
    workload: Workload,
    arm: Arm,
    f: impl Fn(&WrkResult) -> f64,
) -> Option<Spread> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.workload == workload && r.arm == arm)
        .filter_map(|r| r.wrk.as_ref().map(&f))
        .collect();
    Spread::of(&v)
}

fn tracer_runs(runs: &[Run], arm: Arm) -> impl Iterator<Item = &crate::tracer::Stopped> {
    runs.iter()
        .filter(move |r| r.arm == arm)
        .filter_map(|r| r.tracer.as_ref())
}

/// Verdict on one target.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// Not measured in this run (e.g. the runner was not built).
    NotMeasured,
}

impl Verdict {
    fn of(ok: Option<bool>) -> Verdict {
        match ok {
            Some(true) => Verdict::Pass,
            Some(false) => Verdict::Miss,
            None => Verdict::NotMeasured,
        }
    }
    fn text(self) -> &'static str {
        match self {
            Verdict::Pass => "**pass**",
            Verdict::Miss => "**MISS**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

/// Peak RSS target: 12 MB.
const PEAK_RSS_LIMIT_KIB: f64 = 12e6 / 1024.0;

pub fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    let pct = |s: Option<Spread>| s.map_or("–".into(), |s| format!("{:.1}%", s.median * 100.0));
    for (w, floor) in [(Workload::KeepAlive, 0.98), (Workload::NewConn, 0.95)] {
        let rps = |a| ratio(&r.overhead, w, a, |x| x.req_per_s);
        let ours = rps(Arm::Runner);
        out.push(Check {
            target: format!(
                "{} req/s with runner ≥ {:.0}% of untraced",
                workload_short(w),
                floor * 100.0
            ),
            measured: pct(ours),
            verdict: Verdict::of(ours.map(|s| s.median >= floor)),
        });
        for other in [Arm::Bpftrace, Arm::Tcpdump] {
            let theirs = rps(other);
            out.push(Check {
                target: format!(
                    "{} req/s: runner better than {}",
                    workload_short(w),
                    other.label()
                ),
                measured: format!("{} vs {}", pct(ours), pct(theirs)),
                verdict: Verdict::of(ours.zip(theirs).map(|(o, t)| o.median > t.median)),
            });
        }
        // A change's before and after in the same rounds.
        let before = rps(Arm::RunnerBefore);
        if before.is_some() {
            out.push(Check {
                target: format!(
                    "{} req/s: runner no slower than before (within 2 points)",
                    workload_short(w)
                ),
                measured: format!("{} vs {}", pct(ours), pct(before)),
                verdict: Verdict::of(ours.zip(before).map(|(o, b)| o.median >= b.median - 0.02)),
            });
        }
        // Both write every packet's bytes: the capture against the capture.
        let (write, tcpdump) = (rps(Arm::RunnerWrite), rps(Arm::Tcpdump));
        out.push(Check {
            target: format!(
                "{} req/s: runner --write better than tcpdump -w",
                workload_short(w)
            ),
            measured: format!("{} vs {}", pct(write), pct(tcpdump)),
            verdict: Verdict::of(write.zip(tcpdump).map(|(o, t)| o.median > t.median)),
        });
    }
    let ready = |a: Arm| r.ready.ms.get(&a).and_then(|v| Spread::of(v));
    let (ours, bt) = (ready(Arm::Runner), ready(Arm::Bpftrace));
    out.push(Check {
        target: "ready < 50 ms (median)".into(),
        measured: ours.map_or("–".into(), |s| format!("{:.1} ms", s.median)),
        verdict: Verdict::of(ours.map(|s| s.median < 50.0)),
    });
    out.push(Check {
        target: "ready ≥ 5× faster than bpftrace".into(),
        measured: ours.zip(bt).map_or("–".into(), |(o, b)| {
            format!("{:.1}×", b.median / o.median)
        }),
        verdict: Verdict::of(ours.zip(bt).map(|(o, b)| b.median >= 5.0 * o.median)),
    });
    let peak = [Arm::Runner, Arm::RunnerPackets, Arm::RunnerWrite]
        .into_iter()
        .flat_map(|a| tracer_runs(&r.overhead, a).map(|t| t.peak_rss_kib))
        .chain(
            r.ready
                .idle_peak_kib
                .get(&Arm::Runner)
                .into_iter()
                .flatten()
                .copied(),
        )
        .max();
    out.push(Check {
        target: "peak RSS < 12 MB (runner, any run)".into(),
        measured: peak.map_or("–".into(), |k| {
            format!("{:.1} MB", k as f64 * 1024.0 / 1e6)
        }),
        verdict: Verdict::of(peak.map(|k| (k as f64) < PEAK_RSS_LIMIT_KIB)),
    });
    let conn: Vec<_> = r
        .loss
        .iter()
        .filter(|s| s.arm == Arm::Runner)
        .cloned()
        .collect();
    let (best, failed) = loss::best(&conn);
    let reached_20k = conn
        .iter()
        .any(|s| s.target_rate >= 20_000 && s.rate_reached && s.complete);
    let highest_generated = conn
        .iter()
        .filter_map(|s| s.load.as_ref().map(|l| l.achieved_rate))
        .fold(0.0, f64::max);
    out.push(Check {
        target: "zero lost at 20k new conn/s (or the highest rate generated)".into(),
        measured: match (best, failed) {
            (_, Some(f)) => format!(
                "loss/miss at {}/s: kernel {} vs runner {} + lost {}",
                f.target_rate, f.truth, f.seen, f.lost
            ),
            (Some(b), None) => format!(
                "nothing lost up to {:.0} conn/s (highest generated {:.0}/s)",
                b.truth_rate(),
                highest_generated
            ),
            (None, None) => "–".into(),
        },
        verdict: if conn.is_empty() {
            Verdict::NotMeasured
        } else if reached_20k || failed.is_none() {
            // Without a failure every step up to the generator's limit was clean.
            Verdict::of(Some(failed.is_none()))
        } else {
            Verdict::Miss
        },
    });
    out
}

fn spread_pct(s: Option<Spread>) -> String {
    s.map_or("–".into(), |s| {
        format!(
            "{:.1}% ({:.1}–{:.1})",
            s.median * 100.0,
            s.min * 100.0,
            s.max * 100.0
        )
    })
}

fn mb(kib: f64) -> String {
    format!("{:.1} MB", kib * 1024.0 / 1e6)
}

pub fn markdown(r: &Results) -> String {
    let mut p = String::new();
    let m = &r.machine;
    let _ = writeln!(p, "# Benchmarks: what tracing costs the traced pods\n");
    let _ = writeln!(
        p,
        "_Generated by `podtrace-bench` (tests/bench) on {}{}; do not edit by hand — rerun `sudo scripts/bench.sh`._\n",
        m.date,
        if r.quick { " in **--quick** smoke mode (figures are not meaningful)" } else { "" }
    );
    let _ = writeln!(p, "## Machine\n");
    let _ = writeln!(
        p,
        "- kernel {}, {} × {}, {:.0} GiB",
        m.kernel, m.cpus, m.cpu, m.mem_gib
    );
    let _ = writeln!(
        p,
        "- load average at start {} / at end {} (the machine may be shared: ratios within a round are what count)",
        m.loadavg_start, m.loadavg_end
    );
    let tools: Vec<String> = m
        .versions
        .iter()
        .map(|(k, v)| format!("{k}: `{v}`"))
        .collect();
    let _ = writeln!(p, "- {}", tools.join("; "));
    let _ = writeln!(
        p,
        "- {} round(s), {} s of load per arm and workload, {} start(s) per tracer for ready time; whole run {:.0} s\n",
        r.rounds, r.seconds, r.starts, r.duration_s
    );
    if let Some(n) = &r.runner_note {
        let _ = writeln!(p, "> **{n}** — the runner's rows are missing.\n");
    }

    let _ = writeln!(p, "## Targets\n");
    let _ = writeln!(p, "| target | measured | verdict |\n|---|---|---|");
    for c in checks(r) {
        let _ = writeln!(
            p,
            "| {} | {} | {} |",
            c.target,
            c.measured,
            c.verdict.text()
        );
    }

    let _ = writeln!(p, "\n## Cost to the traced pod\n");
    let _ = writeln!(
        p,
        "Ratios are to the untraced run of the same round and workload: median (min–max) over rounds. \
         Latency is wrk's (closed loop, {} connections, so it includes queueing at saturation). \
         Tracer CPU is the tracer process's own user+system time while loaded, in % of one core \
         (BPF programs run in the traced pods' context and show up as lower req/s instead). \
         CPU/request is the whole machine's busy CPU time (steal excluded) over the run divided by the \
         requests served: what each request costs the node with the tracer, everything included (BPF, \
         the tracer, the reader of its output), less noisy than req/s. \
         Events are what the tracer wrote per run (tcpdump: packets captured).\n",
        crate::wrk::CONNECTIONS
    );
    for w in Workload::ALL {
        let _ = writeln!(p, "### {}\n", w.label());
        let _ = writeln!(
            p,
            "| arm | req/s | req/s vs untraced | p50 vs untraced | p99 vs untraced | CPU/request vs untraced | tracer CPU | events/run | lost |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &arm in &r.arms {
            let abs = absolute(&r.overhead, w, arm, |x| x.req_per_s);
            let runs: Vec<_> = r
                .overhead
                .iter()
                .filter(|x| x.workload == w && x.arm == arm)
                .filter_map(|x| x.tracer.as_ref())
                .collect();
            let cpu = Spread::of(
                &runs
                    .iter()
                    .map(|t| (t.cpu_user_s + t.cpu_sys_s) / t.window_s.max(1e-9) * 100.0)
                    .collect::<Vec<_>>(),
            );
            let events = Spread::of(
                &runs
                    .iter()
                    .map(|t| t.counts.events(arm) as f64)
                    .collect::<Vec<_>>(),
            );
            let lost: u64 = runs
                .iter()
                .map(|t| t.counts.lost + t.counts.dropped_by_kernel.unwrap_or(0))
                .sum();
            let dash = arm == Arm::Untraced;
            let _ = writeln!(
                p,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                arm.label(),
                abs.map_or("–".into(), |s| format!("{:.0}", s.median)),
                if dash {
                    "100%".into()
                } else {
                    spread_pct(ratio(&r.overhead, w, arm, |x| x.req_per_s))
                },
                if dash {
                    "100%".into()
                } else {
                    spread_pct(ratio(&r.overhead, w, arm, |x| x.p50_us))
                },
                if dash {
                    "100%".into()
                } else {
                    spread_pct(ratio(&r.overhead, w, arm, |x| x.p99_us))
                },
                if dash {
                    absolute(&r.overhead, w, arm, |x| x.cpu_us_per_request)
                        .map_or("–".into(), |s| format!("{:.1} µs", s.median))
                } else {
                    spread_pct(ratio(&r.overhead, w, arm, |x| x.cpu_us_per_request))
                },
                cpu.map_or("–".into(), |s| format!("{:.0}%", s.median)),
                events.map_or("–".into(), |s| format!("{:.0}", s.median)),
                if dash { "–".into() } else { lost.to_string() },
            );
        }
        let _ = writeln!(p);
    }

    let _ = writeln!(p, "## Start-up: spawn to ready line\n");
    let _ = writeln!(
        p,
        "Runner: its `ready` line; bpftrace: a `BEGIN` probe's line (`-B line`), printed after all probes attach; \
         tcpdump: `listening on`. Each started in the node's namespace directly (no `ip netns exec` in between), \
         starts interleaved.\n"
    );
    let _ = writeln!(
        p,
        "| tracer | median | min–max | starts | vs runner |\n|---|---:|---:|---:|---:|"
    );
    let runner_med = r
        .ready
        .ms
        .get(&Arm::Runner)
        .and_then(|v| Spread::of(v))
        .map(|s| s.median);
    for (arm, v) in &r.ready.ms {
        if let Some(s) = Spread::of(v) {
            let _ = writeln!(
                p,
                "| {} | {:.1} ms | {:.1}–{:.1} ms | {} | {} |",
                arm.label(),
                s.median,
                s.min,
                s.max,
                s.n,
                runner_med.map_or("–".into(), |rm| format!("{:.1}×", s.median / rm))
            );
        }
    }

    for (label, v) in &r.ready.variants {
        if let Some(s) = Spread::of(v) {
            let _ = writeln!(
                p,
                "| {label} (diagnostic) | {:.1} ms | {:.1}–{:.1} ms | {} | {} |",
                s.median,
                s.min,
                s.max,
                s.n,
                runner_med.map_or("–".into(), |rm| format!("{:.1}×", s.median / rm))
            );
        }
    }
    if let (Some(h), Some(rm)) = (Spread::of(&r.ready.runner_hello_ms), runner_med) {
        let _ = writeln!(
            p,
            "\nRunner: spawn → `hello` (exec, start-up) median {:.1} ms; `hello` → `ready` (load, verify, attach) {:.1} ms.",
            h.median,
            rm - h.median
        );
    }

    let _ = writeln!(p, "\n## Memory\n");
    let _ = writeln!(
        p,
        "Peak: the highest `VmHWM` over every loaded run; steady: median `VmRSS` over the second half of the loaded runs; \
         idle: median `VmHWM` of the start-up runs. \
         BPF map mmaps: the part of the RSS that is BPF maps mapped into the process (from `smaps`) — kernel memory, \
         also counted under the maps' memlock; a ring buffer's data area is mapped twice. Kernel: `memlock` of the BPF programs and maps the tracer holds \
         (from `/proc/PID/fdinfo`; Debian's bpftool cannot attribute objects to pids).\n"
    );
    let _ = writeln!(
        p,
        "| tracer | peak RSS | steady RSS | of which BPF map mmaps | idle peak RSS | BPF programs | BPF maps |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for &arm in r.arms.iter().filter(|a| **a != Arm::Untraced) {
        let runs: Vec<_> = tracer_runs(&r.overhead, arm).collect();
        let peak = runs.iter().map(|t| t.peak_rss_kib).max();
        let steady = Spread::of(
            &runs
                .iter()
                .map(|t| t.steady_rss_kib as f64)
                .collect::<Vec<_>>(),
        );
        let idle = r
            .ready
            .idle_peak_kib
            .get(&arm)
            .and_then(|v| Spread::of(&v.iter().map(|k| *k as f64).collect::<Vec<_>>()));
        let held = r
            .overhead
            .iter()
            .filter(|x| x.arm == arm)
            .find_map(|x| x.held.as_ref());
        let mapped = runs.iter().map(|t| t.bpf_mmap_rss_kib).max();
        let _ = writeln!(
            p,
            "| {} | {} | {} | {} | {} | {} | {} |",
            arm.label(),
            peak.map_or("–".into(), |k| mb(k as f64)),
            steady.map_or("–".into(), |s| mb(s.median)),
            mapped.map_or("–".into(), |k| mb(k as f64)),
            idle.map_or("–".into(), |s| mb(s.median)),
            held.map_or("–".into(), |h| format!(
                "{} ({:.0} KiB)",
                h.progs.len(),
                h.prog_memlock() as f64 / 1024.0
            )),
            held.map_or("–".into(), |h| format!(
                "{} ({:.0} KiB)",
                h.maps.len(),
                h.map_memlock() as f64 / 1024.0
            )),
        );
    }
    if let Some(h) = r
        .overhead
        .iter()
        .filter(|x| x.arm == Arm::Runner)
        .find_map(|x| x.held.as_ref())
    {
        let maps: Vec<String> = h
            .maps
            .iter()
            .map(|m| {
                format!(
                    "`{}` {} {:.0} KiB",
                    m.name,
                    m.kind,
                    m.memlock as f64 / 1024.0
                )
            })
            .collect();
        let _ = writeln!(p, "\nRunner's maps: {}.", maps.join(", "));
    }

    let _ = writeln!(p, "\n## Highest event rate with nothing lost\n");
    let _ = writeln!(
        p,
        "Default event set: new connections at a fixed rate (`podtrace-bench loadgen --mode connect`, open loop: connect, \
         close, wait for the server's FIN — no request, so one nginx worker can accept more per second); ground truth is \
         the kernel's `Tcp: PassiveOpens` in the nginx pod, compared with the runner's `accept` events. \
         `--packets`: keep-alive requests at a fixed rate; ground truth is the veth's rx+tx packet counters, compared \
         with the runner's `packet` events. A step passes when nothing is lost (no `lost` line) and nothing is missing. \
         Stepping stops at the first failure or when the generator cannot reach 90% of the rate.\n"
    );
    let _ = writeln!(
        p,
        "| arm | load | target/s | achieved/s | kernel count | runner events | lost | kernel events/s | result |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for s in &r.loss {
        let _ = writeln!(
            p,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            s.arm.label(),
            match s.mode {
                crate::loadgen::Mode::NewConn => "new conn",
                crate::loadgen::Mode::KeepAlive => "keep-alive req",
                crate::loadgen::Mode::Connect => "connect+close",
            },
            s.target_rate,
            s.load
                .as_ref()
                .map_or("–".into(), |l| format!("{:.0}", l.achieved_rate)),
            s.truth,
            s.seen,
            s.lost,
            s.truth_rate(),
            match (&s.error, s.complete, s.rate_reached) {
                (Some(e), _, _) => format!("error: {}", e.lines().next().unwrap_or_default()),
                (None, true, true) => "ok".into(),
                (None, true, false) => "ok (generator below target)".into(),
                (None, false, _) => "**LOSS**".into(),
            }
        );
    }
    if r.loss.is_empty() {
        let _ = writeln!(p, "| – | not measured | | | | | | | |");
    }

    if !r.profiles.is_empty() {
        let _ = writeln!(p, "\n## Where the runner's cost goes\n");
        let _ = writeln!(
            p,
            "With `kernel.bpf_stats_enabled=1` (only during this step): kernel time in each BPF program during a \
             saturating wrk run, next to the runner process's own CPU. % are of one core.\n"
        );
        let _ = writeln!(
            p,
            "| arm | workload | req/s | events/s | runner CPU | BPF CPU | programs (runs/s, ns/run) |\n|---|---|---:|---:|---:|---:|---|"
        );
        for pr in &r.profiles {
            let mut progs = pr.progs.clone();
            progs.sort_by_key(|o| std::cmp::Reverse(o.run_time_ns));
            let top: Vec<String> = progs
                .iter()
                .filter(|o| o.run_cnt > 0)
                .map(|o| {
                    format!(
                        "`{}` {:.0}/s {:.0} ns",
                        o.name,
                        o.run_cnt as f64 / pr.seconds,
                        o.run_time_ns as f64 / o.run_cnt as f64
                    )
                })
                .collect();
            let _ = writeln!(
                p,
                "| {} | {} | {:.0} | {:.0} | {:.0}% | {:.1}% | {} |",
                pr.arm.label(),
                workload_short(pr.workload),
                pr.wrk.req_per_s,
                pr.events as f64 / pr.runner_window_s.max(1e-9),
                pr.runner_core_share() * 100.0,
                pr.bpf_core_share() * 100.0,
                top.join("; ")
            );
        }
    }

    let _ = writeln!(p, "\n## The plugin on a laptop\n");
    let c = &r.cli;
    let _ = writeln!(p, "| command | median | min–max |\n|---|---:|---:|");
    for t in &c.timings {
        let _ = writeln!(
            p,
            "| `{}` | {:.2} ms | {:.2}–{:.2} ms |",
            portable(&t.command),
            t.median_ms,
            t.min_ms,
            t.max_ms
        );
    }
    let size =
        |b: Option<u64>| b.map_or("not built".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
    let _ = writeln!(
        p,
        "\nRelease binary sizes: kubectl-podtrace {}, podtrace-runner {}.",
        size(c.plugin_bytes),
        size(c.runner_bytes)
    );
    for n in &c.notes {
        let _ = writeln!(p, "\n- {n}");
    }

    let notes = notes(r);
    if !notes.is_empty() {
        let _ = writeln!(p, "\n## Notes computed from this run\n");
        for n in notes {
            let _ = writeln!(p, "- {n}");
        }
    }

    let _ = writeln!(p, "\n## Method\n");
    let _ = writeln!(
        p,
        "- One node namespace (routed, Calico-like), an nginx pod (Debian nginx-light, one worker, no master, access \
         log off, keep-alive on) serving a 1 KiB page from tmpfs, and a load-generator pod on the same node; both \
         reached through their veths. Built with `tests/netns`, removed on exit.\n\
         - Arms run in rotating order within each round (each arm takes each position across rounds), each traced \
         run starting a fresh tracer in the node's namespace and stopping it with SIGINT afterwards.\n\
         - A tracer's stdout (runner, bpftrace) is read line by line only up to its ready line; after that it is \
         copied unparsed, in large chunks, to a file on tmpfs (as a container runtime copies a pod's stdout to its \
         log) and counted after the tracer exits, so this benchmark's own parsing never competes with the traced \
         pod for CPU.\n\
         - bpftrace runs the script in `tests/bench/src/tracer.rs` on the same tracepoints as the runner's socket \
         events (`sock:inet_sock_set_state`, `tcp:tcp_retransmit_skb`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`, \
         `skb:kfree_skb`), filtered in the kernel to the pod IP, a line per event. It cannot attach at tc/tcx, so it \
         has no packet events or per-flow packet/byte counters at the veth; it prints drop reasons as numbers, \
         computes no RTT/duration/bytes, does not scope to the pod's namespace, and does not report its own losses \
         in its output. tracefs is mounted in bpftrace's private mount namespace only.\n\
         - tcpdump captures on the pod's host-side veth to a file on tmpfs, `host POD_IP`, deleted after each run.\n"
    );
    let _ = writeln!(p, "Commands:\n");
    for (k, v) in &r.commands {
        let _ = writeln!(p, "- {k}: `{}`", portable(v));
    }
    if !r.errors.is_empty() {
        let _ = writeln!(p, "\n## Errors during this run\n");
        for e in &r.errors {
            // One line each, short: the full text is in the JSON results.
            let mut e = e.replace('\n', " ");
            if let Some((i, _)) = e.char_indices().nth(300) {
                e.truncate(i);
                e.push('…');
            }
            let _ = writeln!(p, "- {e}");
        }
    }
    p
}

/// Observations the figures support on their own, for whoever acts on a miss.
/// A command line as the report shows it: our binaries by name, not by the
/// path of this machine's build directory, so the report reads the same
/// wherever it was made.
fn portable(command: &str) -> String {
    command
        .split(' ')
        .map(|word| match word.rsplit_once('/') {
            Some((dir, name))
                if word.starts_with('/')
                    && (name.starts_with("podtrace-runner") || name == "kubectl-podtrace")
                    && !dir.is_empty() =>
            {
                name
            }
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn notes(r: &Results) -> Vec<String> {
    let mut out = Vec::new();
    let runner: Vec<_> = tracer_runs(&r.overhead, Arm::Runner)
        .chain(tracer_runs(&r.overhead, Arm::RunnerPackets))
        .chain(tracer_runs(&r.overhead, Arm::RunnerWrite))
        .collect();
    if let Some(t) = runner.iter().max_by_key(|t| t.peak_rss_kib) {
        if t.bpf_mmap_rss_kib > 0 {
            out.push(format!(
                "Runner peak RSS {}: {} of it is BPF map pages mapped into the process (the ring buffer's data area \
                 is mapped twice, so RSS carries twice the ring size); the process's own memory is about {}.",
                mb(t.peak_rss_kib as f64),
                mb(t.bpf_mmap_rss_kib as f64),
                mb(t.peak_rss_kib.saturating_sub(t.bpf_mmap_rss_kib) as f64)
            ));
        }
    }
    let med = |v: Option<&Vec<f64>>| v.and_then(|v| Spread::of(v)).map(|s| s.median);
    if let (Some(tcx), Some(cls)) = (
        med(r.ready.ms.get(&Arm::Runner)),
        med(r.ready.variants.get("podtrace-runner --tc-mode clsact")),
    ) {
        out.push(format!(
            "Runner ready: {tcx:.1} ms with its default attach (tcx on this kernel) vs {cls:.1} ms with \
             `--tc-mode clsact`."
        ));
    }
    for w in Workload::ALL {
        let lost: u64 = r
            .overhead
            .iter()
            .filter(|x| x.workload == w && x.arm.is_runner())
            .filter_map(|x| x.tracer.as_ref())
            .map(|t| t.counts.lost)
            .sum();
        if lost > 0 {
            out.push(format!(
                "The runner reported {lost} lost events under the saturating {} load (sum over its runs).",
                workload_short(w)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::portable;

    #[test]
    fn commands_name_our_binaries_without_the_build_directory() {
        assert_eq!(
            portable("/x/target/bench/release/podtrace-runner --pod-ip 10.1.1.2 --packets"),
            "podtrace-runner --pod-ip 10.1.1.2 --packets"
        );
        assert_eq!(
            portable("/y/release/kubectl-podtrace --help"),
            "kubectl-podtrace --help"
        );
        assert_eq!(
            portable("/tmp/old/podtrace-runner-before --pod-ip 10.1.1.2"),
            "podtrace-runner-before --pod-ip 10.1.1.2"
        );
        assert_eq!(portable("/bin/true"), "/bin/true");
        assert_eq!(
            portable("wrk -c 1 http://10.1.1.2/"),
            "wrk -c 1 http://10.1.1.2/"
        );
    }
}
