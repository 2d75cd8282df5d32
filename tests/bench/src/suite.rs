// SPDX-License-Identifier: Apache-2.0
//! The whole run: set up, measure each figure, write the page.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::{Part, Settings};
use crate::clicost::{self, CliCost};
use crate::loss::{self, Step};
use crate::overhead::{self, Run};
use crate::profile::{self, Profile};
use crate::report;
use crate::startup::{self, ReadyTimes};
use crate::testbed::Testbed;
use crate::tracer::Arm;
use crate::wrk::{self, Workload};

/// Where the run happened.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Machine {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub mem_gib: f64,
    /// 1-minute load average when the run started: how shared the machine was.
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub versions: BTreeMap<String, String>,
}

/// Every measurement of a run.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Results {
    pub machine: Machine,
    pub quick: bool,
    pub rounds: u32,
    pub seconds: u32,
    pub starts: u32,
    pub arms: Vec<Arm>,
    /// Why the runner arms are missing, when they are.
    pub runner_note: Option<String>,
    pub commands: BTreeMap<String, String>,
    pub overhead: Vec<Run>,
    pub ready: ReadyTimes,
    pub loss: Vec<Step>,
    pub profiles: Vec<Profile>,
    pub cli: CliCost,
    pub errors: Vec<String>,
    pub duration_s: f64,
}

pub fn run(s: &Settings) -> Result<Results> {
    anyhow::ensure!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the benchmark builds network namespaces and loads eBPF: run it as root (sudo)"
    );
    let began = std::time::Instant::now();
    let mut r = Results {
        machine: machine(),
        quick: s.quick,
        rounds: s.rounds,
        seconds: s.seconds,
        starts: s.starts,
        ..Results::default()
    };
    let runner_ok = s.runner.is_file();
    if !runner_ok {
        r.runner_note = Some(format!(
            "runner not built: {} does not exist (build it with `cargo build --release -p podtrace-runner`)",
            s.runner.display()
        ));
        eprintln!("bench: {}", r.runner_note.as_deref().unwrap_or_default());
    }
    let mut arms = vec![Arm::Untraced];
    if runner_ok {
        arms.extend([Arm::Runner, Arm::RunnerPackets, Arm::RunnerWrite]);
        if s.before_runner.is_some() {
            arms.push(Arm::RunnerBefore);
        }
    }
    if s.baselines {
        arms.extend([Arm::Bpftrace, Arm::Tcpdump]);
    }
    r.arms = arms.clone();
    let tracers: Vec<Arm> = arms
        .iter()
        .copied()
        .filter(|a| *a != Arm::Untraced)
        .collect();

    let tb = Testbed::new().context("set up the pods")?;
    let target = tb.target(s.runner.clone(), s.before_runner.clone());
    let url = tb.url();
    for w in Workload::ALL {
        r.commands.insert(
            format!("wrk ({})", overhead::workload_short(w)),
            format!("wrk {}", wrk::args(w, &url, s.seconds).join(" ")),
        );
    }
    for &a in &tracers {
        if let Some(l) = target.command_line(a) {
            r.commands.insert(a.label().to_owned(), l.join(" "));
        }
    }

    if s.runs(Part::Overhead) {
        eprintln!(
            "bench: overhead, {} round(s) × {} arm(s) × {} workload(s) × {} s",
            s.rounds,
            arms.len(),
            s.workloads.len(),
            s.seconds
        );
        r.overhead = overhead::measure(&tb, &target, &arms, s);
    }

    if s.runs(Part::Ready) {
        eprintln!("bench: ready time, {} start(s) per tracer", s.starts);
        let ready_arms: Vec<Arm> = tracers
            .iter()
            .copied()
            .filter(|a| !matches!(a, Arm::RunnerPackets | Arm::RunnerWrite))
            .collect();
        // The runner's legacy tc attach, for comparison with tcx (whose attach
        // waits for RCU grace periods), when this runner has the switch.
        let clsact: &[startup::Variant] =
            &[("podtrace-runner --tc-mode clsact", &["--tc-mode", "clsact"])];
        let variants = if runner_ok && runner_has_flag(&s.runner, "--tc-mode") {
            clsact
        } else {
            &[]
        };
        r.ready = startup::measure(&target, &ready_arms, variants, s.starts);
        r.errors.extend(r.ready.errors.iter().cloned());
    }

    if runner_ok && s.runs(Part::Loss) {
        eprintln!("bench: highest rate with nothing lost");
        r.loss = loss::step(&tb, &target, Arm::Runner, &s.conn_rates, s);
        r.loss.extend(loss::step(
            &tb,
            &target,
            Arm::RunnerPackets,
            &s.request_rates,
            s,
        ));
    }
    if runner_ok && !s.quick && s.runs(Part::Profile) {
        eprintln!("bench: profile (kernel.bpf_stats_enabled) of the runner");
        let arms = [Arm::Runner, Arm::RunnerPackets, Arm::RunnerWrite];
        match profile::measure(&tb, &target, &arms, &s.workloads, 4) {
            Ok(p) => r.profiles = p,
            Err(e) => r.errors.push(format!("profile: {e:#}")),
        }
    }
    drop(tb);

    if s.runs(Part::Cli) {
        eprintln!("bench: plugin start-up (hyperfine) and sizes");
        r.cli = clicost::measure(&s.plugin, &s.runner, if s.quick { 5 } else { 40 });
    }
    r.errors.extend(r.overhead.iter().filter_map(|run| {
        run.error.as_ref().map(|e| {
            format!(
                "{} {}: {e}",
                overhead::workload_short(run.workload),
                run.arm.label()
            )
        })
    }));
    r.errors.extend(r.loss.iter().filter_map(|st| {
        st.error
            .as_ref()
            .map(|e| format!("loss {} {}/s: {e}", st.arm.label(), st.target_rate))
    }));
    r.machine.loadavg_end = loadavg();
    r.duration_s = began.elapsed().as_secs_f64();

    let page = report::markdown(&r);
    if let Some(out) = &s.output {
        fs::write(out, &page).with_context(|| format!("write {}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    } else {
        println!("{page}");
    }
    if let Some(j) = &s.json {
        fs::write(j, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("write {}", j.display()))?;
    }
    Ok(r)
}

fn runner_has_flag(runner: &std::path::Path, flag: &str) -> bool {
    Command::new(runner)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|_| "not installed".into())
}

fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mem_kib: f64 = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0.0);
    let mut versions = BTreeMap::new();
    for (name, args) in [
        ("wrk", &["-v"][..]),
        ("nginx", &["-v"][..]),
        ("bpftrace", &["--version"][..]),
        ("tcpdump", &["--version"][..]),
        ("hyperfine", &["--version"][..]),
        ("bpftool", &["version"][..]),
    ] {
        versions.insert(name.to_owned(), first_line(name, args));
    }
    Machine {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        kernel: first_line("uname", &["-r"]),
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib: mem_kib / 1024.0 / 1024.0,
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
        versions,
    }
}
