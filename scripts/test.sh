#!/usr/bin/env bash
# README command 2: the whole test suite, as CI runs it (as root).
# Lints, unit tests, then integration tests against real kanted daemons.
#
# CI has 2 cores and a time limit, so work that waits overlaps work that
# computes: the test images (debootstrap, mostly downloads) are built
# while the tests compile, and the fuzz targets (an instrumented build of
# their own) compile at the lowest CPU priority while the integration
# tests, which mostly wait on containers, daemons and networks, run.
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
t0=$(date +%s)
step() { echo ">> $1 (at $(( $(date +%s) - t0 )) s)"; }
logs="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup EXIT
# Waits for background job $1 (named $2, log $3); its log is shown either way.
await() {
  local rc=0
  wait "$1" || rc=$?
  echo ">> $2 (background) ended with $rc:"
  tail -n 25 "$3"
  [ "$rc" = 0 ] || { echo "$2 failed" >&2; exit 1; }
}

step lint
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 scripts/engine-deps.py   # engine calls go one way (ARCHITECTURE.md, Engine layers)

step build
cargo build --workspace --locked

step "test images (in the background: busybox, Debian 12, Debian with Docker)"
KANTE=target/debug/kante scripts/images.sh >"$logs/images" 2>&1 &
images=$!
pids+=("$images")

step "build the tests"
cargo test --workspace --locked --no-run
await "$images" "test images" "$logs/images"

step "fuzz targets: build in the background at the lowest priority"
nice -n 19 scripts/fuzz.sh 0 >"$logs/fuzz-build" 2>&1 &
fuzz=$!
pids+=("$fuzz")

step "tests (root integration tests run one at a time)"
cargo test --workspace --locked --no-fail-fast -- --test-threads=1

step "fuzz (every parser of untrusted bytes, a few seconds each: docs/fuzzing.md)"
await "$fuzz" "fuzz build" "$logs/fuzz-build"
scripts/fuzz.sh

# The same tree on a stock Debian 12 (pure cgroup v2, kernel 6.1) under emulation:
# about 2.5 minutes of one core (plus 5 to build the VM's root once), so only when asked.
if [ "${KANTE_CI_DEBIAN_VM:-0}" = 1 ]; then
  step "smoke on an emulated Debian 12 (scripts/debian-vm.sh smoke)"
  scripts/debian-vm.sh smoke
fi
step done
