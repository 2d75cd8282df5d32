// SPDX-License-Identifier: Apache-2.0
//! Shared core of kubectl-podtrace.
//!
//! - [`event`]: the JSON-lines wire schema between `podtrace-runner` and the
//!   `kubectl-podtrace` plugin (the only definition of it).
//! - behind the `bpf` feature (Linux): the skeletons compiled from `bpf/` and
//!   a safe loader over them.

pub mod event;
