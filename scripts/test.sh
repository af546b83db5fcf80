#!/usr/bin/env bash
# README command 2: the whole test suite, as CI runs it (as root).
# Lints, unit tests, then integration tests against real kanted daemons.
#
# CI has 2 cores and a time limit, so work that waits overlaps work that
# computes: the test images (debootstrap, mostly downloads) are built
# once `kante` (their builder) is, while the rest and the tests compile,
# and clippy and the fuzz targets (clippy beside the build in target/, the
# fuzz targets an instrumented build of their own) compile in an idle CPU
# cgroup (background_cgroup) while the integration tests, which mostly wait
# on containers, daemons and networks, run. The test binaries are run by
# scripts/run-tests.py, not `cargo test`, so that cargo's lock on target/
# is free for clippy. Formatting and the engine's call directions are
# checked first (seconds); clippy's verdict comes after the tests and fails
# the run the same way.
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
background=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$logs"
  if [ -n "$background" ]; then
    # Everything in it is a background build of this run (cargo's children
    # too, which killing cargo leaves running): ended, then the group.
    local left i
    for i in $(seq 50); do
      left="$(cat "$background/cgroup.procs" 2>/dev/null || true)"
      [ -n "$left" ] || break
      kill -9 $left 2>/dev/null || true
      sleep 0.1
    done
    rmdir "$background" 2>/dev/null || true
  fi
}
trap cleanup EXIT
# An idle CPU cgroup for the background builds; its path. Its tasks run
# only on CPU time nothing else wants, and any other task that wakes up
# preempts them at once (cpu.idle, as SCHED_IDLE for a whole group).
# `nice` is not enough: the scheduler shares the CPU between groups first
# (each container's cgroup, the session's autogroup), nice only orders
# tasks inside one group, and a nice-19 build still delays every wake-up
# of the tests' daemons and containers by a time slice. Measured on seed
# 000's recipe test (tests/site_recipes.rs) beside the fuzz build: 311 s
# at nice 19, 113 s in this cgroup, 110 s with nothing beside it.
background_cgroup() {
  local cg
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then        # cgroup v2
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control \
      || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    cg=/sys/fs/cgroup/ci-background
  elif [ -d /sys/fs/cgroup/cpu ]; then                     # v1 or hybrid
    cg=/sys/fs/cgroup/cpu/ci-background
  else
    return 1
  fi
  mkdir -p "$cg" && echo 1 >"$cg/cpu.idle" || return 1
  echo "$cg"
}
# Runs "$@" in the background cgroup (at nice 19 too, for other schedulers).
in_background() {
  [ -z "$background" ] || echo "$BASHPID" >"$background/cgroup.procs"
  exec nice -n 19 "$@"
}

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

# With the features the members' dev-dependencies turn on, so that the
# test build below reuses kante and its dependencies instead of compiling
# them a second time (scripts/dev-features.py).
features="$(python3 scripts/dev-features.py)"
step "build kante (the image builder) first"
# --workspace keeps the features of the whole build, so the rest reuses it.
cargo build --workspace --locked --features "$features" --bin kante

step "test images (in the background while the rest builds: busybox, Debian 12, Debian with Docker)"
# From scratch on a fresh machine (debootstrap and apt from Debian's
# mirror, zstd) they take about 4 minutes (234 s measured on a quiet
# machine, longer beside a build): started here they overlap the build.
KANTE=target/debug/kante scripts/images.sh >"$logs/images" 2>&1 &
images=$!
pids+=("$images")

step "build the rest and the tests"
# One cargo run for the binaries (kanted, kante, … which the integration
# tests start) and the tests (`--tests`: as `cargo test --no-run` builds
# them, which alone builds no kanted): no pause between a build and a test
# build while one crate links alone. The list of test binaries (JSON on
# stdout) is what run-tests.py runs.
cargo build --workspace --locked --features "$features" --bins --tests \
  --message-format=json-render-diagnostics >"$logs/tests.json"
await "$images" "test images" "$logs/images"

step "clippy and the fuzz targets: built in the background at the lowest priority"
background="$(background_cgroup)" || echo "no CPU cgroup for the background builds: nice only" >&2
# In target/, beside the build: its build scripts and proc macros are
# reused (a target directory of its own cost 891 s of CPU, this 192 s).
(in_background cargo clippy --workspace --all-targets --locked -- -D warnings) \
  >"$logs/clippy" 2>&1 &
clippy=$!
pids+=("$clippy")
(in_background scripts/fuzz.sh 0) >"$logs/fuzz-build" 2>&1 &
fuzz=$!
pids+=("$fuzz")

step "tests (root integration tests run one at a time)"
# Every binary runs even after one fails (as cargo's --no-fail-fast).
scripts/run-tests.py "$logs/tests.json" --test-threads=1

step "clippy (warnings are errors)"
await "$clippy" "clippy" "$logs/clippy"

step "doc tests"
# With the build's features: without them cargo resolves the members'
# features differently and compiled kante-engine, -http, … again (3+ min).
cargo test --workspace --locked --features "$features" --doc

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
