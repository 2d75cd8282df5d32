// SPDX-License-Identifier: Apache-2.0
//! Time from starting a tracer to its ready line, over many starts,
//! interleaved between tracers so they share the machine's mood.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::tracer::{self, Arm, Target, Tracer};

#[derive(Serialize, Debug, Clone, Default)]
pub struct ReadyTimes {
    /// Milliseconds from spawn to ready line, per start.
    pub ms: BTreeMap<Arm, Vec<f64>>,
    /// Peak RSS (KiB) of an idle tracer, per start.
    pub idle_peak_kib: BTreeMap<Arm, Vec<u64>>,
    /// Milliseconds from spawn to the runner's first (`hello`) line.
    pub runner_hello_ms: Vec<f64>,
    /// Diagnostic variants of the runner (label → ready ms), e.g. its legacy
    /// clsact attach instead of tcx.
    pub variants: BTreeMap<String, Vec<f64>>,
    pub errors: Vec<String>,
}

/// A runner variant: label and extra arguments.
pub type Variant = (&'static str, &'static [&'static str]);

pub fn measure(target: &Target, arms: &[Arm], variants: &[Variant], starts: u32) -> ReadyTimes {
    let mut r = ReadyTimes::default();
    for i in 0..starts {
        for &(label, extra) in variants {
            match Tracer::start_with(Arm::Runner, target, extra).and_then(Tracer::stop) {
                Ok(s) => r
                    .variants
                    .entry(label.to_owned())
                    .or_default()
                    .push(s.ready_ms),
                Err(e) => r.errors.push(format!("{label} start {}: {e:#}", i + 1)),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for &arm in arms {
            match Tracer::start(arm, target).and_then(Tracer::stop) {
                Ok(stopped) => {
                    if let Some(h) = stopped.hello_ms.filter(|_| arm.is_runner()) {
                        r.runner_hello_ms.push(h);
                    }
                    r.ms.entry(arm).or_default().push(stopped.ready_ms);
                    r.idle_peak_kib
                        .entry(arm)
                        .or_default()
                        .push(stopped.peak_rss_kib);
                }
                Err(e) => r
                    .errors
                    .push(format!("{} start {}: {e:#}", arm.label(), i + 1)),
            }
            tracer::clear_scratch(&target.scratch);
            // Let the previous tracer's detach finish (RCU, link teardown).
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (arm, v) in &r.ms {
        if let Some(s) = crate::stats::Spread::of(v) {
            eprintln!(
                "bench: ready {:<26} median {:>7.1} ms  ({:.1}–{:.1}, n={})",
                arm.label(),
                s.median,
                s.min,
                s.max,
                s.n
            );
        }
    }
    r
}
