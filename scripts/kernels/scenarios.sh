#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the runner's scenario test binaries one after the other (on the host
# or in a guest), each with the same test arguments; exits non-zero when any
# failed. Usage: scripts/kernels/scenarios.sh BINARY... [-- TEST-ARGS...]
set -uo pipefail
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
failed=0
for b in "${bins[@]}"; do
  "$b" --test-threads=2 "$@" || failed=1
done
exit $failed
