#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after another.
#
#   scripts/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh     # longer: 10 minutes each
#   scripts/fuzz.sh token login_body     # only these targets
#   FUZZ_JOBS=4 scripts/fuzz.sh token    # 4 fuzzing processes for one target
#
# For an open-ended run of one target, stop it with Ctrl-C:
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run token corpus/token seeds/token
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). It works on the
# stable toolchain through RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only
# sanitizer flags); a nightly toolchain works too.
#
# Each target starts from the committed seeds in fuzz/seeds/<target> and
# grows its own corpus in fuzz/corpus/<target> (not committed). A crash
# stops that target, leaves the input in fuzz/artifacts/<target>/, and makes
# the script exit non-zero once every target has run. Reproduce one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> artifacts/<target>/crash-...
# then turn it into a regression test in tests/proptest_parsers.rs.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-1}"
all_targets=(token token_header login_body wechat_reply decrypt_json pay_notification)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

echo "== building the fuzz targets"
cargo fuzz build

extra=()
if [ "$jobs" -gt 1 ]; then
    # Parallel workers log to fuzz-N.log in fuzz/.
    extra=(-jobs="$jobs" -workers="$jobs")
fi

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    echo "== fuzz target $target: ${seconds} s"
    log="$(mktemp)"
    if cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" "${extra[@]}" \
        -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    # libFuzzer's own summary: executions, coverage, corpus size.
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' "$log" || true
    if [ "$status" = FAILED ]; then
        tail -n 40 "$log"
    fi
    echo "   corpus: $(find "corpus/$target" -type f | wc -l) inputs; result: $status"
    rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets ran ${seconds} s each without a crash"
