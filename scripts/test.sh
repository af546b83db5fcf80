#!/usr/bin/env bash
# README command 2: the whole test suite, as CI runs it (as root).
# Lints, unit tests, then integration tests against real kanted daemons.
#
# CI has 2 cores and a time limit, so work that waits overlaps work that
# computes: the test images (debootstrap, mostly downloads) are built
# while the tests compile, and clippy and the fuzz targets (each a build
# of its own: check-mode dependencies, an instrumented workspace) compile
# at the lowest CPU priority while the integration tests, which mostly
# wait on containers, daemons and networks, run. Formatting and the
# engine's call directions are checked first (seconds); clippy's verdict
# comes after the tests and fails the run the same way.
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
# Waits for background job $1 (named $2, log $3): the log's end if it passed, all of it if not.
await() {
  local rc=0
  wait "$1" || rc=$?
  echo ">> $2 (background) ended with $rc:"
  if [ "$rc" = 0 ]; then tail -n 25 "$3"; else cat "$3"; echo "$2 failed" >&2; exit 1; fi
}

step "lint: formatting, engine call directions (clippy runs during the tests)"
cargo fmt --all -- --check
python3 scripts/engine-deps.py   # engine calls go one way (ARCHITECTURE.md, Engine layers)

step build
# With the features the members' dev-dependencies turn on, so that the
# test build below reuses all of this instead of compiling kanted, kante
# and most members a second time (scripts/dev-features.py).
cargo build --workspace --locked --features "$(python3 scripts/dev-features.py)"

step "test images (in the background: busybox, Debian 12, Debian with Docker)"
KANTE=target/debug/kante scripts/images.sh >"$logs/images" 2>&1 &
images=$!
pids+=("$images")

step "build the tests"
cargo test --workspace --locked --no-run
await "$images" "test images" "$logs/images"

step "clippy and the fuzz targets: built in the background at the lowest priority"
# A target directory of its own: the tests' cargo holds target/'s lock.
nice -n 19 env CARGO_TARGET_DIR=target/clippy \
  cargo clippy --workspace --all-targets --locked -- -D warnings >"$logs/clippy" 2>&1 &
clippy=$!
pids+=("$clippy")
nice -n 19 scripts/fuzz.sh 0 >"$logs/fuzz-build" 2>&1 &
fuzz=$!
pids+=("$fuzz")

step "tests (root integration tests run one at a time)"
cargo test --workspace --locked --no-fail-fast -- --test-threads=1

step "clippy (warnings are errors)"
await "$clippy" "clippy" "$logs/clippy"

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
