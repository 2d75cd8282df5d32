#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the runner's container image offline: the static runner (from
# scripts/build-runner-static.sh) copied onto an empty base with podman, as
# ghcr.io/podtrace/podtrace-runner:vVERSION, exported as an OCI archive.
# Prints the archive's path and the image digest (sha256:…).
#
# Usage: scripts/build-image.sh [--version X.Y.Z] [--out DIR]
#   --version  image tag without the v (default: the workspace version)
#   --out      where the archive goes (default: target/image)
# The build is reproducible (timestamps pinned): the same binary gives the
# same digest.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=target/image
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    *) echo "build-image: unknown argument $1 (usage: $0 [--version X.Y.Z] [--out DIR])" >&2; exit 2 ;;
  esac
done
if ! command -v podman >/dev/null || ! command -v skopeo >/dev/null; then
  echo "build-image: podman and skopeo are needed: run scripts/install-deps.sh" >&2
  exit 1
fi
repo=${PODTRACE_IMAGE_REPO:-ghcr.io/podtrace/podtrace-runner}
image="$repo:v$version"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
bin=$(bash scripts/build-runner-static.sh)
cp "$bin" "$context/podtrace-runner"
strip "$context/podtrace-runner"
# --timestamp pins every date in the image, so the digest depends only on
# the binary; --pull=never: nothing may come from a registry.
podman build --quiet --pull=never --timestamp 0 \
  -f manifests/runner.Containerfile -t "$image" "$context" >/dev/null
mkdir -p "$out"
archive="$out/podtrace-runner-v$version.oci.tar"
rm -f "$archive"
podman save --quiet --format oci-archive -o "$archive" "$image"
# The digest a registry (and kubelet's imageID) reports: the manifest's.
digest=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$archive")
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "$digest" >"$archive.digest"
echo "build-image: $image $digest, $size bytes uncompressed" >&2
echo "$archive"
echo "$digest"
