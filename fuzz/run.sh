#!/usr/bin/env bash
# Builds the fuzz targets with cargo-fuzz (libFuzzer, AddressSanitizer,
# debug assertions) and runs each for a fixed number of inputs, starting
# from the committed corpus in corpus/<target>/. What libFuzzer finds goes
# to a scratch directory, never into the committed corpus; a crash or a
# timeout stops the script with the input saved under artifacts/<target>/.
#
#   fuzz/run.sh [RUNS [TARGET...]]     RUNS defaults to 100000; all targets
#
# Needs `cargo install cargo-fuzz`. The toolchain may be stable: the script
# sets RUSTC_BOOTSTRAP=1 for the -Z flags cargo-fuzz passes to rustc.
set -euo pipefail
cd "$(dirname "$0")"

runs=${1:-100000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(alert_jsonl collapsed_lines hub_child_bytes)
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "run.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== $target: $runs runs"
    # -timeout: one input taking 10 s is a hang. The first corpus directory
    # receives new inputs; the committed one is only read.
    status=0
    cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -runs="$runs" -timeout=10 -print_final_stats=1 >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)' \
        "$scratch/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$scratch/$target.log" >&2
        echo "run.sh: $target failed (exit $status); the input is under artifacts/$target/" >&2
        exit "$status"
    fi
done
