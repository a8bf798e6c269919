#!/usr/bin/env bash
# Short fuzzing pass for CI: builds the fuzz targets (cargo-fuzz, libFuzzer) and runs each for
# a fixed time, failing on any crash, failed check or hang. See docs/robustness.md, "Fuzzing".
#
#   tests/fuzz/run.sh                          # all five targets, the times below
#   tests/fuzz/run.sh peer_messages            # some of them
#   FUZZ_SECONDS=300 tests/fuzz/run.sh         # every target for 300 s (a longer local pass)
#
# None of the targets links cairn-store: the three that exercise the server's decoding link
# cairn-wire, so the cold build of all five takes about 40 s more than that of log_recovery and
# mvcc_model alone (cairn-store would add four minutes). The decoders run 25,000-300,000
# inputs/s and get 6 s; the two storage models, at 850-3,800 inputs/s, get 12 s. A CI pass is a
# smoke test that every target still builds and runs clean; the long runs are local.
#
# cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage) to rustc; RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. No sanitizer (-s none): the code under test is safe Rust,
# and the debug assertions and overflow checks of the fuzz build stay on.
set -uo pipefail
cd "$(dirname "$0")/../.."
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never

# Seconds per target in CI.
declare -A budget=(
  [log_recovery]=12
  [mvcc_model]=12
  [request_validation]=6
  [peer_messages]=6
  [http_gateway]=6
)
targets=("$@")
((${#targets[@]})) || targets=(log_recovery mvcc_model request_validation peer_messages http_gateway)
for target in "${targets[@]}"; do
  [[ -v budget[$target] ]] || { echo "fuzz: unknown target $target"; exit 2; }
done

skip() {
  echo "######################################################################"
  echo "### FUZZING SKIPPED: $1"
  echo "######################################################################"
  exit 0
}

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || skip "cargo-fuzz could not be installed"
fi

fuzz=(--fuzz-dir tests/fuzz --sanitizer none)

echo "fuzz: building ${targets[*]}"
start=$SECONDS
cargo fuzz build "${fuzz[@]}" || { echo "fuzz: build failed"; exit 1; }
echo "fuzz: built in $((SECONDS - start)) s"

passed=0 failed=0
for target in "${targets[@]}"; do
  seconds=${FUZZ_SECONDS:-${budget[$target]}}
  echo "fuzz: running $target for $seconds s"
  start=$SECONDS
  # -timeout: one input running longer than 10 s is a hang, reported like a crash.
  if cargo fuzz run "${fuzz[@]}" "$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    >"tests/fuzz/$target.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "tests/fuzz/$target.log" || true
    echo "fuzz: $target passed in $((SECONDS - start)) s"
    passed=$((passed + 1))
  else
    tail -n 120 "tests/fuzz/$target.log"
    echo "fuzz: $target FAILED; the input is under tests/fuzz/artifacts/$target/"
    failed=$((failed + 1))
  fi
done
echo "fuzz targets: $passed passed, $failed failed"
((failed == 0))
