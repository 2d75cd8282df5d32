#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the whole test suite (what CI runs). Needs root: the tests build
# network namespaces and load eBPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the tests need root (network namespaces, eBPF): sudo $0" >&2
  exit 1
fi
bash scripts/install-deps.sh
# House style is part of the suite: formatted, and no clippy warning.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
# Release shape: the runner must build as a fully static binary for its
# container image (manifests/runner.Containerfile uses this script).
bash scripts/build-runner-static.sh >/dev/null
echo "test.sh: the static podtrace-runner builds (no shared libraries)" >&2
cargo test --workspace --locked -- --test-threads=2
# The runner's scenarios again on Debian's 5.10, 6.1 and 6.12 kernels, in
# QEMU guests (docs/kernels.md).
bash scripts/kernels/matrix.sh
