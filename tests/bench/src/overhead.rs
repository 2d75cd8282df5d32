// SPDX-License-Identifier: Apache-2.0
//! What tracing costs the traced pod: wrk against nginx with each arm, in
//! rotating order within every round, so slow drift on a shared machine
//! (other builds, thermal) falls on every arm alike; each arm is compared
//! with the untraced run of its own round.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::bpfmem::{self, Held};
use crate::cli::Settings;
use crate::testbed::Testbed;
use crate::tracer::{self, Arm, Stopped, Target, Tracer};
use crate::wrk::{self, Workload, WrkResult};

/// One arm under one workload in one round.
#[derive(Serialize, Debug, Clone)]
pub struct Run {
    pub round: u32,
    pub workload: Workload,
    pub arm: Arm,
    pub wrk: Option<WrkResult>,
    pub tracer: Option<Stopped>,
    /// The runner's BPF objects, read while it traced.
    pub held: Option<Held>,
    pub error: Option<String>,
}

/// Lets a tracer's start-up work (allocations, first ring-buffer polls)
/// finish before the load starts.
const SETTLE: Duration = Duration::from_millis(300);

/// The arms of round `round`, rotated so each arm takes each position.
pub fn order(arms: &[Arm], round: u32, workload: usize) -> Vec<Arm> {
    let mut v = arms.to_vec();
    if !v.is_empty() {
        let k = (round as usize + workload) % v.len();
        v.rotate_left(k);
    }
    v
}

pub fn measure(tb: &Testbed, target: &Target, arms: &[Arm], s: &Settings) -> Vec<Run> {
    let url = tb.url();
    let mut runs = Vec::new();
    for round in 0..s.rounds {
        for (wi, &workload) in s.workloads.iter().enumerate() {
            for arm in order(arms, round, wi) {
                let run = one(tb, target, arm, workload, &url, s.seconds, round);
                match (&run.wrk, &run.error) {
                    (Some(w), _) => eprintln!(
                        "bench: round {}/{} {:<10} {:<26} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs",
                        round + 1,
                        s.rounds,
                        workload_short(workload),
                        arm.label(),
                        w.req_per_s,
                        w.p50_us,
                        w.p99_us
                    ),
                    (None, Some(e)) => eprintln!("bench: {} {}: FAILED: {e}", workload_short(workload), arm.label()),
                    _ => {}
                }
                runs.push(run);
            }
        }
    }
    runs
}

pub fn workload_short(w: Workload) -> &'static str {
    match w {
        Workload::KeepAlive => "keep-alive",
        Workload::NewConn => "new-conn",
    }
}

fn one(
    tb: &Testbed,
    target: &Target,
    arm: Arm,
    workload: Workload,
    url: &str,
    seconds: u32,
    round: u32,
) -> Run {
    let mut run = Run {
        round,
        workload,
        arm,
        wrk: None,
        tracer: None,
        held: None,
        error: None,
    };
    let result = (|| -> Result<()> {
        let t = match arm {
            Arm::Untraced => None,
            _ => Some(Tracer::start(arm, target)?),
        };
        std::thread::sleep(SETTLE);
        if let Some(t) = &t {
            if arm.is_runner() || arm == Arm::Bpftrace {
                run.held = Some(bpfmem::held_by(t.pid()));
            }
        }
        let w = wrk::run(&tb.client.netns, workload, url, seconds);
        if let Some(t) = t {
            // Let the tracer drain what the last requests produced.
            std::thread::sleep(Duration::from_millis(200));
            run.tracer = Some(t.stop()?);
        }
        run.wrk = Some(w?);
        Ok(())
    })();
    tracer::clear_scratch(&target.scratch);
    if let Err(e) = result {
        run.error = Some(format!("{e:#}"));
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arm_takes_every_position_across_rounds() {
        let arms = [Arm::Untraced, Arm::Runner, Arm::Bpftrace];
        let firsts: Vec<Arm> = (0..3).map(|r| order(&arms, r, 0)[0]).collect();
        assert_eq!(firsts, arms);
        assert_eq!(
            order(&arms, 1, 1),
            [Arm::Bpftrace, Arm::Untraced, Arm::Runner]
        );
    }
}
