#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds a release locally, for this platform (linux/amd64):
#   - the runner's OCI archive and its digest (scripts/build-image.sh);
#   - the plugin, with its default image pinned by that digest, packed as
#     kubectl-podtrace_vVERSION_linux_amd64.tar.gz, and its sha256;
#   - the krew manifest filled from them, validated by the manifest test.
# Everything goes to target/release-vVERSION/. Other platforms are cross
# builds of the plugin: see docs/release.md.
#
# Usage: scripts/release.sh VERSION      (e.g. 0.1.0; CI uses a throwaway one)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: $0 VERSION (e.g. 0.1.0)}
version=${version#v}
case "$version" in
  *[!0-9A-Za-z.-]* | "") echo "release: $version is not a version (digits, letters, . and -)" >&2; exit 2 ;;
esac
out=target/release-v$version
rm -rf "$out"
mkdir -p "$out"

repo=ghcr.io/podtrace/podtrace-runner
mapfile -t built < <(bash scripts/build-image.sh --version "$version" --out "$out")
archive=${built[0]} digest=${built[1]}
image="$repo:v$version@$digest"
echo "release: runner image $image" >&2

# The plugin: nothing it needs at run time beyond the binary.
PODTRACE_DEFAULT_IMAGE="$image" cargo build --locked --release -p kubectl-podtrace >&2
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
pinned=$("$target/release/kubectl-podtrace" version)
case "$pinned" in
  *"$digest"*) ;;
  *) echo "release: the plugin does not name $digest as its image: $pinned" >&2; exit 1 ;;
esac
name=kubectl-podtrace_v${version}_linux_amd64.tar.gz
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$target/release/kubectl-podtrace" LICENSE "$stage/"
tar -C "$stage" --owner=0 --group=0 --mtime=@0 -czf "$out/$name" kubectl-podtrace LICENSE
sha=$(sha256sum "$out/$name" | cut -d' ' -f1)
echo "$sha  $name" >"$out/$name.sha256"

# The krew manifest: the template's description, this version, the one
# platform built here.
crate=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
{
  sed -n '/^  platforms:/q;p' manifests/krew/podtrace.yaml | sed "s/v$crate/v$version/g"
  cat <<YAML
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: amd64
      uri: https://github.com/podtrace/kubectl-podtrace/releases/download/v$version/$name
      sha256: "$sha"
      bin: kubectl-podtrace
      files:
        - from: kubectl-podtrace
          to: .
        - from: LICENSE
          to: .
YAML
} >"$out/podtrace.yaml"
PODTRACE_KREW_MANIFEST="$PWD/$out/podtrace.yaml" PODTRACE_KREW_VERSION="v$version" \
  cargo test --locked -q -p kubectl-podtrace --test manifests krew_manifest >&2
(cd "$out" && sha256sum -c "$name.sha256" >&2)

echo "release v$version in $out:" >&2
echo "  $out/$name (sha256 $sha)" >&2
echo "  $out/podtrace.yaml (krew manifest)" >&2
echo "  $archive (runner image $image)" >&2
