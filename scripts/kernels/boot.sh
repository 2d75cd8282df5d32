#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Boots one of the matrix's kernels under QEMU (TCG) with virtme-ng, the
# host's filesystem shared read-only through virtiofs (writes go to a tmpfs
# overlay), runs COMMAND in the guest from the repository's directory, streams
# its output, and exits with its status.
# Usage: scripts/kernels/boot.sh SERIES COMMAND [ARG...]
# Environment: PODTRACE_VM_TIMEOUT (seconds, default 1200) bounds the guest;
# PODTRACE_VM_SHARE names a host directory the guest may write (same path).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
repo=$(cd "$here/../.." && pwd)

[ $# -ge 2 ] || { echo "usage: $0 SERIES COMMAND [ARG...]" >&2; exit 2; }
series=$1; shift
kdir="$CACHE/kernels/$series"
[ -f "$kdir/VERSION" ] || { echo "kernels: $series is not downloaded: run scripts/kernels/fetch.sh $series" >&2; exit 2; }
vmlinuz=$(echo "$kdir"/vmlinuz-*)

# What the guest writes back: its output and the command's status. A
# directory the guest may write (virtme-ng's --rwdir, same path in both).
out=$(mktemp -d /tmp/podtrace-vm.XXXXXX)
cleanup() { [ -n "${vng_pid:-}" ] && kill "$vng_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT
{
  echo '#!/bin/sh'
  echo "exec >$out/log 2>&1"
  echo "echo \"vm: \$(uname -r) up after \$(cut -d' ' -f1 /proc/uptime) s\""
  # The modules the harness and the runner need (Debian builds them as
  # modules; the kernel would also load most on demand), and br_netfilter,
  # which Kubernetes nodes load so that bridged pod traffic meets the
  # node's firewall.
  echo "modprobe -a veth sch_ingress cls_bpf bridge br_netfilter nf_tables || echo 'vm: a module is missing'"
  echo "cd $(printf %q "$repo")"
  printf '%q ' "$@"; echo
  echo "echo \$? >$out/rc.tmp && mv $out/rc.tmp $out/rc"
} >"$out/run.sh"
chmod +x "$out/run.sh"
: >"$out/log"

# Nested KVM hangs on these machines; TCG is slower but boots these kernels
# in seconds. Without udev in the guest, virtme-ng cannot hand back the
# script's status, hence the files above.
start=$(date +%s)
share=()
[ -z "${PODTRACE_VM_SHARE:-}" ] || share=(--rwdir "$(realpath "$PODTRACE_VM_SHARE")")
timeout "${PODTRACE_VM_TIMEOUT:-1200}" vng --run "$vmlinuz" --disable-kvm --cpus 2 --memory 2G \
  --rwdir "$out" "${share[@]}" --exec "$out/run.sh" >"$out/console" 2>&1 &
vng_pid=$!
tail -n +1 -f --pid="$vng_pid" "$out/log"
wait "$vng_pid" || true
vng_pid=
wall=$(($(date +%s) - start))
if [ ! -f "$out/rc" ]; then
  echo "kernels: the $series guest ended without the command's status after $wall s; its console:" >&2
  tail -n 40 "$out/console" >&2
  exit 125
fi
rc=$(cat "$out/rc")
echo "vm: $series done in $wall s (status $rc)" >&2
exit "$rc"
