#!/usr/bin/env bash
# README command 2: the whole test suite, as CI runs it (as root).
# Lints, unit tests, then integration tests against real kanted daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Everything the tests need is installed above: a test whose prerequisite is
# missing fails instead of skipping (a skip would look like a pass).
export KANTE_REQUIRE_ALL=1
# One build per run: incremental caches only cost disk (they had grown to
# 19 GB in a checkout that ran the suite many times).
export CARGO_INCREMENTAL=0

echo ">> lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 scripts/engine-deps.py   # engine calls go one way (ARCHITECTURE.md, Engine layers)

echo ">> build"
cargo build --workspace --locked
cargo build --release --locked -p kante

echo ">> test images"
KANTE=target/release/kante scripts/images.sh

echo ">> tests (root integration tests run one at a time)"
cargo test --workspace --locked --no-fail-fast -- --test-threads=1

echo ">> fuzz (every parser of untrusted bytes, a few seconds each: docs/fuzzing.md)"
scripts/fuzz.sh

# The same tree on a stock Debian 12 (pure cgroup v2, kernel 6.1) under emulation:
# about 2.5 minutes of one core (plus 5 to build the VM's root once), so only when asked.
if [ "${KANTE_CI_DEBIAN_VM:-0}" = 1 ]; then
  echo ">> smoke on an emulated Debian 12 (scripts/debian-vm.sh smoke)"
  scripts/debian-vm.sh smoke
fi
