#!/usr/bin/env bash
# A bounded soak run on loopback: builds examples/soak.rs in release and runs
# it (default 120 s). It starts the app and its clients in one process and
# stops by itself; the summary goes to stdout (results: docs/reliability.md).
#
#   scripts/soak.sh                          # 2 minutes, memory store
#   SOAK_SECONDS=600 scripts/soak.sh         # longer
#   SOAK_SECONDS=5 scripts/soak.sh           # a quick look
#   WXLOGIN_REDIS_URL=redis://127.0.0.1:6379 scripts/soak.sh   # Redis store
#
# Other knobs: SOAK_WORKERS (16 concurrent clients), SOAK_POOL (200
# long-lived sessions), SOAK_WARMUP_SECONDS (half the run, at most 60),
# SOAK_MAX_RSS_GROWTH (10 percent). With Redis, keys go under a fresh
# `wxsoak-*` prefix and expire with their sessions (at most an hour after
# the run for the pooled sessions).
#
# Exit status: 0 pass; 1 an unexpected status or a lost session; 2 a setup
# error; 3 resident memory grew past the limit after warm-up (runs >= 60 s).
set -euo pipefail

cd "$(dirname "$0")/.."
export SOAK_SECONDS="${SOAK_SECONDS:-120}"
cargo build --quiet --release --example soak
exec target/release/examples/soak
