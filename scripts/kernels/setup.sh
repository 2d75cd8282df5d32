#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what booting the matrix's kernels needs, idempotently: QEMU,
# busybox (virtme-ng's initramfs) and kmod from Debian; virtiofsd from
# crates.io (Debian 12 has no package of it, Debian 13's needs a newer
# glibc); virtme-ng from PyPI in its own virtual environment.
set -euo pipefail
cd "$(dirname "$0")"
. ./common.sh

packages=(qemu-system-x86 busybox-static kmod python3-venv libseccomp-dev libcap-ng-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kernels: installing ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$CACHE/tools/bin/virtiofsd" --version 2>/dev/null | grep -q "$VIRTIOFSD_VERSION"; then
  echo "kernels: building virtiofsd $VIRTIOFSD_VERSION (once; a few minutes)" >&2
  cargo install --quiet --locked --force virtiofsd --version "$VIRTIOFSD_VERSION" --root "$CACHE/tools"
fi

if ! "$CACHE/vng/bin/vng" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
  echo "kernels: installing virtme-ng $VIRTME_NG_VERSION" >&2
  python3 -m venv "$CACHE/vng"
  "$CACHE/vng/bin/pip" install --quiet --disable-pip-version-check "virtme-ng==$VIRTME_NG_VERSION"
fi
echo "kernels: tools ready (qemu, virtiofsd $VIRTIOFSD_VERSION, virtme-ng $VIRTME_NG_VERSION)" >&2
