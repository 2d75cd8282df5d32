#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Downloads Debian's cloud kernels (with BTF) for the kernel matrix and
# unpacks each into the cache: kernels/SERIES/{vmlinuz,VERSION,lib/modules/VER}.
# Uses a private apt configuration (own sources, lists and archives under the
# cache); the machine's apt sources are never touched. apt verifies each
# package against the suite's signed Release file. A series already in the
# cache is reused; `--refresh` fetches the newest of each again.
# Usage: scripts/kernels/fetch.sh [--refresh] [SERIES...]   (default: 5.10 6.1 6.12)
set -euo pipefail
cd "$(dirname "$0")"
. ./common.sh

refresh=0
if [ "${1:-}" = "--refresh" ]; then refresh=1; shift; fi
[ $# -gt 0 ] || set -- "${KERNEL_SERIES[@]}"

apt_dir="$CACHE/apt"
apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
  -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::State::status=$apt_dir/state/status"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
  -o "Debug::NoLocking=true"
  -o "APT::Sandbox::User=root"
)
updated=0
apt_update() {
  [ $updated -eq 1 ] && return
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
  touch "$apt_dir/state/status"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  : >"$apt_dir/sources.list"
  for s in bullseye bullseye-security bookworm bookworm-security trixie trixie-security; do
    case $s in *-security) repo=debian-security ;; *) repo=debian ;; esac
    echo "deb [signed-by=$key] http://deb.debian.org/$repo $s main" >>"$apt_dir/sources.list"
  done
  echo "kernels: updating the private package lists ($apt_dir)" >&2
  apt-get "${apt_opts[@]}" -qq update >&2
  updated=1
}

# The series' cloud-amd64-unsigned packages, newest (by Debian version) first.
packages_of() {
  local series=$1 pattern
  case $series in
    5.10) pattern='^linux-image-5\.10\.[0-9]+-[0-9]+-cloud-amd64-unsigned$' ;;
    6.1) pattern='^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-amd64-unsigned$' ;;
    6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64-unsigned$' ;;
    *) echo "kernels: unknown series $series (known: ${KERNEL_SERIES[*]})" >&2; return 1 ;;
  esac
  apt-cache "${apt_opts[@]}" search --names-only "$pattern" | cut -d' ' -f1 |
    while read -r p; do
      printf '%s %s\n' "$(apt-cache "${apt_opts[@]}" show "$p" | sed -n 's/^Version: //p' | sort -V | tail -1)" "$p"
    done | sort -rV | cut -d' ' -f2
}

for series in "$@"; do
  dest="$CACHE/kernels/$series"
  if [ $refresh -eq 0 ] && [ -f "$dest/VERSION" ]; then
    echo "kernels: $series cached: $(cat "$dest/VERSION")" >&2
    continue
  fi
  apt_update
  work=$(mktemp -d "$CACHE/tmp.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # A suite's list can name a package its pool no longer serves (bullseye's
  # security suite after its end of life): take the newest that downloads.
  deb=
  for pkg in $(packages_of "$series"); do
    if (cd "$work" && apt-get "${apt_opts[@]}" -qq download "$pkg" >&2); then
      deb=$(ls "$work"/*.deb)
      break
    fi
    echo "kernels: $pkg is listed but not served; trying an older one" >&2
  done
  [ -n "$deb" ] || { echo "kernels: no cloud kernel package for $series could be downloaded from Debian" >&2; exit 1; }
  dpkg-deb -x "$deb" "$work/root"
  # Debian 13's packages keep modules in /usr/lib (merged /usr).
  mods=$work/root/lib/modules
  [ -d "$mods" ] || mods=$work/root/usr/lib/modules
  kver=$(ls "$mods")
  mkdir -p "$work/out/lib"
  mv "$mods" "$work/out/lib/"
  # The package's postinst would run depmod; do it here for the guest's modprobe.
  depmod -b "$work/out" "$kver"
  mv "$work/root/boot/vmlinuz-$kver" "$work/out/vmlinuz-$kver"
  echo "$pkg $(dpkg-deb -f "$deb" Version) $kver" >"$work/out/VERSION"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$work/out" "$dest"
  rm -rf "$work"
  trap - EXIT
  echo "kernels: $series ready: $(cat "$dest/VERSION")" >&2
done
