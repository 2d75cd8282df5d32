#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The kernel matrix: runs the runner's scenario tests (job-runner/tests/
# trace.rs) in a guest booted from each of Debian's cloud kernels, one after
# the other, and prints a table (boot and test time, passed/failed per
# kernel). Logs go to target/kernels/SERIES.log. Exits non-zero when a test
# failed on any kernel. Extra arguments after `--` go to the test binary
# (e.g. a test name filter).
# Usage: scripts/kernels/matrix.sh [SERIES...] [-- TEST-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/kernels/common.sh

series=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do series+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#series[@]} -gt 0 ] || series=("${KERNEL_SERIES[@]}")

bash scripts/kernels/setup.sh
bash scripts/kernels/fetch.sh "${series[@]}"
bin=$(cargo test --locked -p podtrace-runner --test trace --no-run 2>&1 |
  sed -n 's/^ *Executable tests\/trace.rs (\(.*\))$/\1/p')
[ -x "$bin" ] || { echo "kernels: could not find the trace test binary" >&2; exit 1; }
bin=$(realpath "$bin")
# The guests run the release runner that ships in the container image: a
# debug build starts several times slower under emulation.
runner=$(realpath "$(bash scripts/build-runner-static.sh)")
mkdir -p target/kernels

failed=0
rows=()
total_start=$(date +%s)
for s in "${series[@]}"; do
  log="target/kernels/$s.log"
  echo "kernels: running the runner's scenarios on $s ($(cut -d' ' -f2 "$CACHE/kernels/$s/VERSION"))" >&2
  start=$(date +%s)
  set +e
  bash scripts/kernels/boot.sh "$s" env PODTRACE_TEST_RUNNER="$runner" "$bin" --test-threads=2 "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  wall=$(($(date +%s) - start))
  boot=$(sed -n 's/^vm: .* up after \([0-9.]*\) s$/\1/p' "$log" | head -1)
  passed=$(grep -c '^test .* \.\.\. ok$' "$log" || true)
  fails=$(grep -c '^test .* \.\.\. FAILED$' "$log" || true)
  tests=$(sed -n 's/^test result: .* finished in \([0-9.]*\)s$/\1/p' "$log" | head -1)
  rows+=("$(printf '%-6s %-26s %7s %8s %8s %7s %7s' "$s" "$(cut -d' ' -f3 "$CACHE/kernels/$s/VERSION")" \
    "${boot:-?}" "${tests:-?}" "$wall" "$passed" "$fails")")
  [ "$rc" -eq 0 ] || failed=1
done
echo
printf '%-6s %-26s %7s %8s %8s %7s %7s\n' kernel release "boot/s" "tests/s" "wall/s" passed failed
printf '%s\n' "${rows[@]}"
echo "kernels: the matrix took $(($(date +%s) - total_start)) s"
for s in "${series[@]}"; do
  grep '^test .* \.\.\. FAILED$' "target/kernels/$s.log" | sed "s/^/$s: /" || true
done
exit $failed
