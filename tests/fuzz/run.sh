#!/usr/bin/env bash
# Short fuzzing pass for CI: builds the fuzz targets (cargo-fuzz, libFuzzer) and runs each for
# a fixed time, failing on any crash, failed check or hang. See docs/robustness.md, "Fuzzing".
#
#   tests/fuzz/run.sh                         # log_recovery and mvcc_model, 25 s each
#   FUZZ_SECONDS=300 tests/fuzz/run.sh log_recovery mvcc_model request_validation \
#     peer_messages http_gateway
#
# CI runs the two targets that build without cairn-store: request_validation, peer_messages
# and http_gateway link all of it (tonic, openraft, hyper), which costs several more minutes of
# build from cold.
#
# cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage) to rustc; RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. No sanitizer (-s none): the code under test is safe Rust,
# and the debug assertions and overflow checks of the fuzz build stay on.
set -uo pipefail
cd "$(dirname "$0")/../.."
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never

seconds=${FUZZ_SECONDS:-25}
targets=("$@")
((${#targets[@]})) || targets=(log_recovery mvcc_model)

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

# Only the crates the chosen targets need (see the features in tests/fuzz/Cargo.toml).
features=(--no-default-features --features mvcc)
for target in "${targets[@]}"; do
  [[ $target == request_validation || $target == peer_messages || $target == http_gateway ]] &&
    features=()
done
fuzz=(--fuzz-dir tests/fuzz --sanitizer none "${features[@]}")

echo "fuzz: building ${targets[*]}"
start=$SECONDS
cargo fuzz build "${fuzz[@]}" || { echo "fuzz: build failed"; exit 1; }
echo "fuzz: built in $((SECONDS - start)) s"

passed=0 failed=0
for target in "${targets[@]}"; do
  echo "fuzz: running $target for $seconds s"
  # -timeout: one input running longer than 10 s is a hang, reported like a crash.
  if cargo fuzz run "${fuzz[@]}" "$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    >"tests/fuzz/$target.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "tests/fuzz/$target.log" || true
    passed=$((passed + 1))
  else
    tail -n 120 "tests/fuzz/$target.log"
    echo "fuzz: $target FAILED; the input is under tests/fuzz/artifacts/$target/"
    failed=$((failed + 1))
  fi
done
echo "fuzz targets: $passed passed, $failed failed"
((failed == 0))
