#!/usr/bin/env bash
# The crash matrix at random moments: SIGKILL to `once` or the daemon at a random
# moment of a stop_server rotation, then a recovery by the daemon or by `once` again;
# every iteration must end with the server running, no duplicate snapshot and nothing
# kept lost. Usage: bench/crash-matrix.sh [ITERATIONS] (default 30); set
# SNAPROTD_CRASH_SEED to repeat a run.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPROTD_CRASH_ITERATIONS=${1:-30} cargo test --locked -q --test crash \
    sigkill_at_random_moments_of_once_and_the_daemon -- --nocapture 2>&1 \
    | grep -E '^(crash matrix|iteration)|panicked|FAILED'
