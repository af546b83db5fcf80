#!/usr/bin/env bash
# Builds (or reuses from the cache) the test images, Debian bookworm, Debian
# with docker.io (seed 000's recipe) and busybox, into
# /var/cache/kante/images without importing them anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
KANTE=${KANTE:-target/release/kante}
for recipe in busybox debian/12 debian-docker/12; do
  "$KANTE" image build "$recipe" --no-import
done
