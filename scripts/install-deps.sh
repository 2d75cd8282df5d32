#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the system packages that building and testing kubectl-podtrace
# need, on Debian or Ubuntu. Idempotent: does nothing when all are present.
set -euo pipefail

packages=(
  clang-16 llvm-16 libelf-dev zlib1g-dev pkg-config make  # BPF build (libbpf-sys, libbpf-cargo)
  bpftool iproute2 nftables iptables                      # attach checks, tc, firewall faults
  nginx-light curl procps                                 # the demo's pods
  dnsmasq-base                                            # the sandbox's cluster DNS
  tcpdump bpftrace wrk hyperfine                          # benchmarks' baselines
  tshark                                                  # reads --write's pcapng in the tests
  python3-venv                                            # the Kubernetes schema validator below
  podman skopeo runc busybox-static                       # images: build, inspect, run (busybox: test images)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (sudo $0)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-deps: needs apt-get (Debian/Ubuntu); install by hand: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  # wireshark-common asks whether non-root users may capture: no (the
  # tests only read files), and no question.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libbpf-cargo and libbpf-sys call plain `clang`; Debian ships clang-16.
if ! command -v clang >/dev/null; then
  ln -sf "$(command -v clang-16)" /usr/local/bin/clang
fi
# Debian's nginx package may start a system nginx on port 80; the pods run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
# The tests and the demo drive the real kubectl (plugin discovery, get, logs).
if ! command -v kubectl >/dev/null; then
  echo "install-deps: kubectl is not on the PATH: install it (https://kubernetes.io/docs/tasks/tools/), any version >= 1.28" >&2
  exit 1
fi
# The minimum Rust is the workspace's rust-version, stated once in Cargo.toml.
rust_min=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is not on the PATH: install Rust >= $rust_min with rustup (https://rustup.rs)" >&2
  exit 1
fi
rust_have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$rust_min" "$rust_have" | sort -V | head -n1)" != "$rust_min" ]; then
  echo "install-deps: Rust $rust_have is older than the $rust_min this workspace needs: rustup update" >&2
  exit 1
fi
# The official schemas' validator, run on `--dry-run` output by the tests
# (kubectl-podtrace/src/jobspec/dry_run.rs). Debian's pip refuses system-wide
# installs, so it gets a venv of its own.
validator_venv=/opt/kubernetes-validate
validator_version=1.37.0
if ! "$validator_venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$validator_version"; then
  echo "install-deps: installing kubernetes-validate $validator_version in $validator_venv" >&2
  /usr/bin/python3 -m venv "$validator_venv"
  "$validator_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validator_version"
fi
echo "install-deps: ok" >&2
