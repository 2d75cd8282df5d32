#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The kernel matrix: runs the runner's scenario tests (job-runner/tests/
# trace/, handshake.rs, payload.rs, icmp.rs and dns.rs) on the host's kernel
# and in a guest booted from each of Debian's cloud kernels, one after the
# other; prints a table (boot and test time, passed/failed per kernel) and
# the support table docs/kernels.md shows (target/kernels/table.md;
# --update-docs writes it into docs/kernels.md).
# Logs go to target/kernels/NAME.log. Exits non-zero when a test failed on
# any kernel. Arguments after `--` go to the test binaries (e.g. a filter).
# Usage: scripts/kernels/matrix.sh [--update-docs] [SERIES...] [-- TEST-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/kernels/common.sh

update_docs=0
series=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case $1 in
    --update-docs) update_docs=1 ;;
    *) series+=("$1") ;;
  esac
  shift
done
[ "${1:-}" = "--" ] && shift
[ ${#series[@]} -gt 0 ] || series=(host "${KERNEL_SERIES[@]}")

bash scripts/kernels/setup.sh
guests=()
for s in "${series[@]}"; do [ "$s" = host ] || guests+=("$s"); done
[ ${#guests[@]} -eq 0 ] || bash scripts/kernels/fetch.sh "${guests[@]}"
# The scenario test binaries: trace (lifecycle, drops, filters, cleanup,
# over IPv4 and IPv6), handshake (lost SYN|ACK, connect errors, a dropped
# SYN), payload (packet bytes copied in the kernel for --write), icmp
# (ICMP errors on the flows they quote) and dns (queries and answers from
# the port-53 bytes, against dnsmasq).
built=$(cargo test --locked -p podtrace-runner --test trace --test handshake --test payload --test icmp --test dns --no-run 2>&1)
bins=()
for t in trace handshake payload icmp dns; do
  b=$(sed -n "s/^ *Executable tests\/$t\(\.rs\|\/main\.rs\) (\(.*\))$/\2/p" <<<"$built")
  [ -x "$b" ] || { echo "kernels: could not find the $t test binary" >&2; exit 1; }
  bins+=("$(realpath "$b")")
done
# The guests run the release runner that ships in the container image: a
# debug build starts several times slower under emulation.
runner=$(realpath "$(bash scripts/build-runner-static.sh)")

failed=0
rows=()
total_start=$(date +%s)
for s in "${series[@]}"; do
  out=$(realpath -m "target/kernels/$s")
  rm -rf "$out"
  mkdir -p "$out"
  log="target/kernels/$s.log"
  start=$(date +%s)
  set +e
  if [ "$s" = host ]; then
    echo "kernels: running the runner's scenarios on the host ($(uname -r))" >&2
    PODTRACE_MATRIX_OUT=$out PODTRACE_TEST_RUNNER=$runner bash scripts/kernels/scenarios.sh "${bins[@]}" -- "$@" 2>&1 | tee "$log"
  else
    echo "kernels: running the runner's scenarios on $s ($(cut -d' ' -f2 "$CACHE/kernels/$s/VERSION"))" >&2
    PODTRACE_VM_SHARE=$out bash scripts/kernels/boot.sh "$s" \
      env PODTRACE_MATRIX_OUT="$out" PODTRACE_TEST_RUNNER="$runner" bash scripts/kernels/scenarios.sh "${bins[@]}" -- "$@" 2>&1 | tee "$log"
  fi
  rc=${PIPESTATUS[0]}
  set -e
  wall=$(($(date +%s) - start))
  boot=$(sed -n 's/^vm: .* up after \([0-9.]*\) s$/\1/p' "$log" | head -1)
  passed=$(grep -c '^test .* \.\.\. ok$' "$log" || true)
  fails=$(grep -c '^test .* \.\.\. FAILED$' "$log" || true)
  tests=$(sed -n 's/^test result: .* finished in \([0-9.]*\)s$/\1/p' "$log" | awk '{ t += $1 } END { if (NR) print t }')
  release=$(uname -r)
  [ "$s" = host ] || release=$(cut -d' ' -f3 "$CACHE/kernels/$s/VERSION")
  rows+=("$(printf '%-6s %-26s %7s %8s %8s %7s %7s' "$s" "$release" "${boot:--}" "${tests:-?}" "$wall" "$passed" "$fails")")
  [ "$rc" -eq 0 ] || failed=1
done
echo
printf '%-6s %-26s %7s %8s %8s %7s %7s\n' kernel release "boot/s" "tests/s" "wall/s" passed failed
printf '%s\n' "${rows[@]}"
echo "kernels: the matrix took $(($(date +%s) - total_start)) s"
for s in "${series[@]}"; do
  grep '^test .* \.\.\. FAILED$' "target/kernels/$s.log" | sed "s/^/$s: /" || true
done

bash scripts/kernels/table.sh target/kernels >target/kernels/table.md
if [ $update_docs -eq 1 ]; then
  # Between the markers in docs/kernels.md.
  awk -v table=target/kernels/table.md '
    /<!-- matrix:begin -->/ { print; while ((getline l < table) > 0) print l; skip = 1; next }
    /<!-- matrix:end -->/ { skip = 0 }
    !skip' docs/kernels.md >target/kernels/kernels.md
  mv target/kernels/kernels.md docs/kernels.md
  echo "kernels: docs/kernels.md updated" >&2
fi
exit $failed
