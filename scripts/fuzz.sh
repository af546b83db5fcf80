#!/usr/bin/env bash
# Builds Kante's fuzz targets (fuzz/, libFuzzer through libfuzzer-sys) and
# runs each for a bounded time: scripts/fuzz.sh [seconds-per-target] [target…]
# (default 5 s each, every target). A crash or a hang fails the run and
# leaves its input in fuzz/artifacts/<target>/. docs/fuzzing.md has the long run.
#
# libFuzzer's coverage instrumentation is passed as rustc flags (the ones
# cargo-fuzz passes with `-s none`); RUSTC_BOOTSTRAP=1 lets libfuzzer-sys
# build on the stable toolchain, the only one CI has.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs="${1:-5}"
shift || true

root="$PWD"
target_dir="${KANTE_FUZZ_TARGET_DIR:-$root/target/fuzz}"
# Coverage instrumentation, for the crates whose parsers the targets feed
# (and the targets' own): their dependencies are neither instrumented nor
# built at opt-level 2 (fuzz/Cargo.toml; why and what it costs:
# docs/fuzzing.md).
coverage=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
)
instrumented=(kante-fuzz kante-api kante-syntax kante-images kante-engine kante-storage
  kante-network kante-site)
# Every crate: the `fuzzing` cfg (hooks the targets call), checks on.
flags=(--cfg fuzzing -Cdebug-assertions -Coverflow-checks)
config=()
list="$(printf '"%s",' "${coverage[@]}")"
for p in "${instrumented[@]}"; do
  config+=(--config "profile.release.package.$p.opt-level=2"
    --config "profile.release.package.$p.rustflags=[${list%,}]")
done
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^kante-fuzz$')
fi

# With an explicit --target, RUSTFLAGS reach the targets' code only, not
# build scripts and proc macros. Per-package rustflags are cargo's
# `profile-rustflags` (unstable: RUSTC_BOOTSTRAP=1 lets cargo take it too);
# none of the instrumented crates has a build script.
host="$(rustc -vV | sed -n 's/^host: //p')"
echo ">> fuzz: build (${#targets[@]} targets)"
start=$(date +%s)
(cd fuzz && RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$target_dir" \
  cargo build -Zprofile-rustflags "${config[@]}" --release --locked --bins --target "$host")
echo ">> fuzz: built in $(( $(date +%s) - start )) s"

[ "$secs" != 0 ] || exit 0  # 0: build only (libFuzzer reads 0 as "forever")
bin="$target_dir/$host/release"
failed=()
# One target's bounded run: its report (stats, or the log's end) to
# $2.out, "ok" or "failed" to $2.rc.
fuzz_one() {
  local t="$1" out="$2" work dict=()
  # The checked-in seeds stay as they are: new finds go to a scratch dir.
  work="$(mktemp -d)"
  mkdir -p "fuzz/artifacts/$t"
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  if "$bin/$t" "$work" "fuzz/corpus/$t" -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" "${dict[@]}" 2>"$work.log"; then
    { grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "$work.log" \
        | tr "\n" " " || true; echo; } >"$out.out"
    echo ok >"$out.rc"
  else
    tail -40 "$work.log" >"$out.out"
    echo failed >"$out.rc"
  fi
  rm -rf "$work" "$work.log"
}

# As many targets at once as there are cores (KANTE_FUZZ_JOBS): each is
# one process, and by now nothing else runs.
jobs_max="${KANTE_FUZZ_JOBS:-$(nproc)}"
results="$(mktemp -d)"
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs_max" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" "$results/$t" &
  running=$((running + 1))
done
wait
for t in "${targets[@]}"; do
  echo ">> fuzz: $t for ${secs}s"
  cat "$results/$t.out" 2>/dev/null || true
  [ "$(cat "$results/$t.rc" 2>/dev/null)" = ok ] || failed+=("$t")
done
rm -rf "$results"
echo ">> fuzz: done in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
