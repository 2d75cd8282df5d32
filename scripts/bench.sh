#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Benchmarks: what tracing a pod costs, podtrace-runner side by side with
# bpftrace and tcpdump. Builds the release binaries, then runs the suite,
# which rewrites docs/benchmarks.md. Needs root.
#   sudo scripts/bench.sh            # full run, about 10 minutes
#   sudo scripts/bench.sh --quick    # smoke run, under a minute
# Other flags go to podtrace-bench (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench.sh: the benchmark builds network namespaces and loads eBPF: sudo $0 $*" >&2
  exit 1
fi
bash scripts/install-deps.sh
# A target dir of its own, so benchmarking never waits on (or invalidates) a dev build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/bench}"
cargo build --release -p podtrace-bench
# The tracer and the plugin are measured if they build; the suite says which were not.
cargo build --release -p podtrace-runner || echo "bench.sh: podtrace-runner did not build; measuring the baselines only" >&2
cargo build --release -p kubectl-podtrace || echo "bench.sh: kubectl-podtrace did not build; no plugin figures" >&2
exec "$CARGO_TARGET_DIR/release/podtrace-bench" "$@"
