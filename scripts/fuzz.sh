#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), starting from its
# seed corpus in fuzz/corpus/<target>, and prints executions and crashes per target.
# Exits non-zero if any target crashed; crash inputs are kept in $FUZZ_WORK/artifacts.
#
#   scripts/fuzz.sh 5        # a smoke (CI: CERTFLEET_FUZZ_SMOKE=1 scripts/test.sh)
#   scripts/fuzz.sh 600      # a long run (BENCHMARKS.md)
#   FUZZ_PROFILE=dev scripts/fuzz.sh 5   # unoptimised: a cold build in about half the time
#
# Only a stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly
# flags (-Zsanitizer, sancov passes). The sanitizer is off (`--sanitizer none`): the crates
# forbid `unsafe`, and what fuzzing looks for here is panics, overflows (debug assertions
# are on) and runaway recursion. fuzz/ is its own workspace with its own target dir.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/certfleet-target}/fuzz}
work=${FUZZ_WORK:-$CARGO_TARGET_DIR/work}
case ${FUZZ_PROFILE:-release} in
    release) profile=() ;;
    dev) profile=(--dev) ;;
    *) echo "fuzz.sh: FUZZ_PROFILE must be release or dev, not '$FUZZ_PROFILE'" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/install" cargo install cargo-fuzz --locked
fi
cd "$root/fuzz"
targets=$(cargo fuzz list)
started=$SECONDS
cargo fuzz build "${profile[@]}" --sanitizer none --debug-assertions >&2
echo "fuzz.sh: built $(echo "$targets" | wc -w) targets in $((SECONDS - started))s" >&2

failed=0
printf '%-18s %12s %8s\n' target executions crashes
for t in $targets; do
    # Only this run's crashes count: an earlier run's (already fixed) are cleared.
    rm -rf "$work/artifacts/$t"
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    log="$work/$t.log"
    status=0
    # New inputs go to the working corpus; the seed corpus in the repo is only read.
    cargo fuzz run "${profile[@]}" --sanitizer none --debug-assertions "$t" "$work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
        -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(find "$work/artifacts/$t" -type f | wc -l)
    printf '%-18s %12s %8s\n' "$t" "${execs:-?}" "$crashes"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        echo "fuzz.sh: $t failed (status $status); see $log and $work/artifacts/$t" >&2
        tail -30 "$log" >&2
    fi
done
exit "$failed"
