// SPDX-License-Identifier: Apache-2.0
//! Where the runner's cost goes: kernel time per BPF program (with
//! `kernel.bpf_stats_enabled`, only for this step — the counters are not
//! free) next to the runner's own user and system CPU, under each workload.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::bpfmem::{self, BpfStats, Object};
use crate::testbed::Testbed;
use crate::tracer::{Arm, Target, Tracer};
use crate::wrk::{self, Workload, WrkResult};

#[derive(Serialize, Debug, Clone)]
pub struct Profile {
    pub arm: Arm,
    pub workload: Workload,
    pub seconds: f64,
    pub wrk: WrkResult,
    /// Per program: runs and nanoseconds during the load (deltas).
    pub progs: Vec<Object>,
    pub runner_user_s: f64,
    pub runner_sys_s: f64,
    /// The window the runner's CPU time covers (ready to stop).
    pub runner_window_s: f64,
    pub events: u64,
    pub lost: u64,
}

impl Profile {
    /// Share of one core spent in BPF programs.
    pub fn bpf_core_share(&self) -> f64 {
        self.progs.iter().map(|p| p.run_time_ns).sum::<u64>() as f64 / 1e9 / self.seconds
    }
    /// Share of one core the runner process used.
    pub fn runner_core_share(&self) -> f64 {
        (self.runner_user_s + self.runner_sys_s) / self.runner_window_s.max(1e-9)
    }
}

pub fn measure(
    tb: &Testbed,
    target: &Target,
    arms: &[Arm],
    workloads: &[Workload],
    seconds: u32,
) -> Result<Vec<Profile>> {
    let _stats = BpfStats::enable()?;
    let mut out = Vec::new();
    for &arm in arms {
        for &workload in workloads {
            let t = Tracer::start(arm, target)?;
            std::thread::sleep(Duration::from_millis(300));
            let before = bpfmem::held_by(t.pid()).progs;
            let start = std::time::Instant::now();
            let w = wrk::run(&tb.client.netns, workload, &tb.url(), seconds);
            let after = bpfmem::held_by(t.pid()).progs;
            let secs = start.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(200));
            let stopped = t.stop()?;
            let progs = after
                .into_iter()
                .map(|mut p| {
                    if let Some(b) = before.iter().find(|b| b.id == p.id) {
                        p.run_cnt -= b.run_cnt.min(p.run_cnt);
                        p.run_time_ns -= b.run_time_ns.min(p.run_time_ns);
                    }
                    p
                })
                .collect();
            out.push(Profile {
                arm,
                workload,
                seconds: secs,
                wrk: w?,
                progs,
                runner_user_s: stopped.cpu_user_s,
                runner_sys_s: stopped.cpu_sys_s,
                runner_window_s: stopped.window_s,
                events: stopped.counts.events(arm),
                lost: stopped.counts.lost,
            });
        }
    }
    Ok(out)
}
