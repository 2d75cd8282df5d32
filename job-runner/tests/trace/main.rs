// SPDX-License-Identifier: Apache-2.0
//! The runner against real kernels, real nginx and real curl in network
//! namespace pods, in both CNI shapes, over IPv4 and IPv6. Needs root (CI
//! runs as root). One test binary (the kernel matrix runs it in guests),
//! a module per subject.

#[path = "../common/mod.rs"]
mod common;

mod cleanup;
mod connections;
mod dual_stack;
mod kernel;
mod loss;
mod scope;
