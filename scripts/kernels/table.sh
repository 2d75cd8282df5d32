#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Writes the kernel support table (markdown) from a matrix run's results in
# target/kernels/: per kernel its release, the hooks its runner attached,
# the features on and off (the `ready` lines features_match_the_kernel
# recorded) and the tests passed. Usage: scripts/kernels/table.sh [DIR]
set -euo pipefail
dir=${1:-target/kernels}
feature_keys=(drop_reasons tcx reset_without_socket skipped_runs recursion_cover error_report)

echo "| kernel | hooks | $(printf '%s | ' "${feature_keys[@]}")scenario tests |"
echo "|---|---|$(printf -- '---|%.0s' "${feature_keys[@]}")---|"
for name in host $(ls "$dir" | grep -E '^[0-9]+\.[0-9]+$' | sort -V); do
  json="$dir/$name/ready.json"
  [ -f "$json" ] || continue
  release=$(sed -n 's/.*"kernel":"\([^"]*\)".*/\1/p' "$json" | head -1)
  ready=$(grep '"type":"ready"' "$json")
  # The hooks: how packets are captured, and how many tracepoint programs.
  kinds=$(sed 's/.*"hooks":\[\([^]]*\)\].*/\1/' <<<"$ready" | grep -o '"kind":"[^"]*"' | cut -d'"' -f4)
  tracepoints=$(grep -c 'tracepoint/' <<<"$kinds" || true)
  packets=$(grep -m1 -o '^tcx\|^tc' <<<"$kinds" || echo none)
  [ "$packets" = tc ] && packets="tc (clsact)"
  row="| $release ($name) | $packets, $tracepoints tracepoint programs |"
  for k in "${feature_keys[@]}"; do
    if grep -q "\"$k\":true" <<<"$ready"; then row+=" on |"; else row+=" **off** |"; fi
  done
  log="$dir/$name.log"
  if [ -f "$log" ]; then
    # Summed over the test binaries.
    row+=" $(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" |
      awk '{ p += $1; f += $2 } END { printf "%d passed, %d failed", p, f }') |"
  else
    row+=" |"
  fi
  echo "$row"
done
