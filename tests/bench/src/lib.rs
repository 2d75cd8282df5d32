// SPDX-License-Identifier: Apache-2.0
//! `podtrace-bench`: what tracing a pod costs, measured honestly.
//!
//! nginx in a network-namespace pod, wrk (and our own fixed-rate
//! [`loadgen`]) in another, and each tracer in turn on the node: none,
//! `podtrace-runner` (default and `--packets`), bpftrace with an equivalent
//! script, tcpdump. [`suite::run`] measures every figure the benchmark issue
//! asks for and [`report::markdown`] writes the page `docs/benchmarks.md`.

pub mod bpfmem;
pub mod cli;
pub mod clicost;
pub mod launch;
pub mod loadgen;
pub mod loss;
pub mod overhead;
pub mod profile;
pub mod report;
pub mod startup;
pub mod stats;
pub mod suite;
pub mod testbed;
pub mod tracer;
pub mod wrk;
