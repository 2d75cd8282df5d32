#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds podtrace-runner as a fully static binary (libbpf, libelf, zlib and
# glibc linked in; no dynamic dependency), for the runner's container image.
# Prints the binary's path. Usage: scripts/build-runner-static.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# Debian keeps libelf.a and libz.a in the multiarch directory, which rustc
# does not search by itself. The runner uses no NSS, so static glibc is safe.
LIBBPF_SYS_LIBRARY_PATH="/usr/lib/$multiarch" \
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release -p podtrace-runner --features static --target "$triple" >&2
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target/$triple/release/podtrace-runner"
if readelf -d "$bin" | grep -q NEEDED; then
  echo "build-runner-static: $bin still needs shared libraries:" >&2
  readelf -d "$bin" | grep NEEDED >&2
  exit 1
fi
out=${1:-$bin}
[ "$out" = "$bin" ] || cp "$bin" "$out"
echo "$out"
