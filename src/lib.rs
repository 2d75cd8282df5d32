// SPDX-License-Identifier: Apache-2.0
//! Shared core of kubectl-podtrace.
//!
//! - [`event`]: the JSON-lines wire schema between `podtrace-runner` and the
//!   `kubectl-podtrace` plugin (the only definition of it).
//! - [`flows`]: per-flow totals, and the rule that merges what several
//!   observers saw of one flow.
//! - behind the `bpf` feature (Linux): the skeletons compiled from `bpf/`
//!   ([`bpf`]), the loader over them ([`tracer`]), the conversion of kernel
//!   events into the schema ([`decode`], [`drop_reason`], read from the
//!   kernel's BTF by [`btf`]), probing what the kernel offers ([`features`]) and finding pods'
//!   interfaces and namespaces on the node ([`discover`], [`netlink`]).

#[cfg(feature = "bpf")]
pub mod abi;
pub mod dns;
pub mod event;
pub mod flows;
pub mod render;
pub mod runner_args;

#[cfg(feature = "bpf")]
pub mod bpf;
#[cfg(feature = "bpf")]
pub mod btf;
#[cfg(feature = "bpf")]
pub mod caps;
#[cfg(feature = "bpf")]
pub mod decode;
#[cfg(feature = "bpf")]
pub mod discover;
#[cfg(feature = "bpf")]
pub mod drop_reason;
#[cfg(feature = "bpf")]
pub mod features;
#[cfg(feature = "bpf")]
pub(crate) mod icmp;
#[cfg(feature = "bpf")]
pub mod netlink;
#[cfg(feature = "bpf")]
pub mod tracer;
