// SPDX-License-Identifier: Apache-2.0
//! The highest event rate the runner sustains with nothing lost: step the
//! rate of new connections (default event set) and of keep-alive requests
//! (`--packets`, where every packet is an event), and compare what the
//! runner reported with what the kernel counted on its own.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::Settings;
use crate::loadgen::{Mode, Outcome};
use crate::testbed::Testbed;
use crate::tracer::{Arm, Target, Tracer};

/// One rate step.
#[derive(Serialize, Debug, Clone)]
pub struct Step {
    pub arm: Arm,
    pub mode: Mode,
    pub target_rate: u32,
    pub load: Option<Outcome>,
    /// What the kernel counted: TCP passive opens in the pod (connections),
    /// or packets through its host-side veth (`--packets`).
    pub truth: u64,
    /// Matching runner events: `accept`, or `packet`.
    pub seen: u64,
    /// The runner's `lost` lines, summed.
    pub lost: u64,
    /// The generator reached at least 90% of the target rate.
    pub rate_reached: bool,
    pub complete: bool,
    pub error: Option<String>,
}

impl Step {
    /// Events per second the runner had to handle in this step.
    pub fn truth_rate(&self) -> f64 {
        let secs = self.load.as_ref().map_or(0.0, |l| l.elapsed_s);
        if secs > 0.0 {
            self.truth as f64 / secs
        } else {
            0.0
        }
    }
}

/// Veth counters also count the odd ARP/neighbour packet the runner
/// rightly ignores (it reports IP packets); allow that many per step.
const NON_IP_ALLOWANCE: u64 = 8;

/// Steps `rates` up until the runner loses something or the generator
/// cannot reach the rate.
pub fn step(tb: &Testbed, target: &Target, arm: Arm, rates: &[u32], s: &Settings) -> Vec<Step> {
    let mode = if arm == Arm::RunnerPackets {
        Mode::KeepAlive
    } else {
        Mode::Connect
    };
    let mut steps = Vec::new();
    for &rate in rates {
        let st = one(tb, target, arm, mode, rate, s.step_seconds);
        let (rate_reached, complete) = (st.rate_reached, st.complete);
        eprintln!(
            "bench: loss {:<26} {:>6}/s target, {:>8.0}/s achieved: kernel {} runner {} lost {}{}",
            arm.label(),
            rate,
            st.load.as_ref().map_or(0.0, |l| l.achieved_rate),
            st.truth,
            st.seen,
            st.lost,
            st.error
                .as_deref()
                .map(|e| format!(" ERROR {e}"))
                .unwrap_or_default()
        );
        steps.push(st);
        if !complete || !rate_reached {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    steps
}

fn one(tb: &Testbed, target: &Target, arm: Arm, mode: Mode, rate: u32, seconds: f64) -> Step {
    let mut st = Step {
        arm,
        mode,
        target_rate: rate,
        load: None,
        truth: 0,
        seen: 0,
        lost: 0,
        rate_reached: false,
        complete: false,
        error: None,
    };
    let r = (|| -> Result<()> {
        let truth = || match mode {
            Mode::NewConn | Mode::Connect => tb.passive_opens(),
            Mode::KeepAlive => tb.veth_packets(),
        };
        let tracer = Tracer::start(arm, target)?;
        let before = truth()?;
        let load = loadgen(tb, mode, rate, seconds);
        let after = truth()?;
        std::thread::sleep(Duration::from_millis(300));
        let stopped = tracer.stop()?;
        let load = load?;
        st.truth = after - before;
        let key = match mode {
            Mode::NewConn | Mode::Connect => "accept",
            Mode::KeepAlive => "packet",
        };
        st.seen = stopped.counts.by_type.get(key).copied().unwrap_or(0);
        st.lost = stopped.counts.lost;
        st.rate_reached = load.achieved_rate >= 0.9 * f64::from(rate);
        let allowance = if mode == Mode::KeepAlive {
            NON_IP_ALLOWANCE
        } else {
            0
        };
        st.complete = st.lost == 0 && st.seen + allowance >= st.truth;
        st.load = Some(load);
        Ok(())
    })();
    if let Err(e) = r {
        st.error = Some(format!("{e:#}"));
    }
    st
}

/// Runs `podtrace-bench loadgen` inside the client pod.
pub fn loadgen(tb: &Testbed, mode: Mode, rate: u32, seconds: f64) -> Result<Outcome> {
    let exe = std::env::current_exe().context("find our own binary")?;
    let mode_arg = match mode {
        Mode::NewConn => "new-conn",
        Mode::KeepAlive => "keep-alive",
        Mode::Connect => "connect",
    };
    let out = podtrace_netns::run(
        tb.client
            .netns
            .command(&exe.display().to_string())
            .args(["loadgen", "--target"])
            .arg(format!("{}:{}", tb.server.ip, crate::testbed::PORT))
            .args(["--rate", &rate.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .args(["--mode", mode_arg]),
    )?;
    serde_json::from_slice(&out.stdout).context("parse the load generator's result")
}

/// The highest rate of events (per second, as the kernel counted them)
/// with nothing lost and nothing missing, and whether a step failed.
pub fn best(steps: &[Step]) -> (Option<&Step>, Option<&Step>) {
    let ok = steps
        .iter()
        .filter(|s| s.complete && s.error.is_none())
        .max_by(|a, b| a.truth_rate().total_cmp(&b.truth_rate()));
    let failed = steps.iter().find(|s| !s.complete || s.error.is_some());
    (ok, failed)
}
