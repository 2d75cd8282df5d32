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
# The runner's image, built offline from the static binary (no shared
# libraries); the sandbox tests and the demo run the runner from it.
# sed reads to the end: head would exit after one line and SIGPIPE the
# script (rc 141 under pipefail) when it writes its second.
image_archive=$(bash scripts/build-image.sh | sed -n 1p)
size=$(podman image inspect --format '{{.Size}}' "ghcr.io/podtrace/podtrace-runner:v$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)")
if [ "$size" -ge $((5 * 1024 * 1024)) ]; then
  echo "test.sh: the runner image is $size bytes uncompressed, over the 5 MiB target" >&2
  exit 1
fi
echo "test.sh: runner image $image_archive ($size bytes uncompressed)" >&2
export PODTRACE_RUNNER_IMAGE_ARCHIVE="$PWD/$image_archive"
# The release shape, on a throwaway version: plugin archive + sha256, the
# krew manifest filled from them (validated), the runner archive + digest.
bash scripts/release.sh 0.0.0-ci >/dev/null
cargo test --workspace --locked -- --test-threads=2
# The runner's scenarios again on Debian's 5.10, 6.1 and 6.12 kernels, in
# QEMU guests (docs/kernels.md: about 11 minutes on an idle machine).
bash scripts/kernels/matrix.sh
