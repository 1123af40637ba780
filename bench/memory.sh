#!/usr/bin/env bash
# Memory of apitoken_exporter at 10,000 tokens with env-var secrets and one label per
# token, for one or more binaries side by side. Prints a table. See bench/README.md.
#
#   bench/memory.sh                                               # target/release/apitoken_exporter
#   MEM_BINS="/work/base/target/release/apitoken_exporter target/release/apitoken_exporter" \
#       MEM_RUNS=3 bench/memory.sh                                # before/after, median of 3
#   MEM_HEAP=massif bench/memory.sh                               # plus live heap under massif
#
# Knobs (environment): MEM_BINS, MEM_TOKENS, MEM_RUNS, MEM_INTERVAL, MEM_SCRAPES,
# MEM_HEAP, MEM_ENV (extra KEY=VALUE for the exporter, e.g. MALLOC_ARENA_MAX=1),
# MEM_CORE_SUT, MEM_CORE_LOAD, MEM_KEEP=1. Nothing is built: build the binaries first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
helper_pid=""

cleanup() {
    # Only what this script started (the helper stops the processes it started).
    if [[ -n "$helper_pid" ]] && kill -0 "$helper_pid" 2>/dev/null; then
        kill -TERM "$helper_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$helper_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$helper_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in python3 taskset; do
    command -v "$tool" >/dev/null || { echo "memory.sh: needs $tool" >&2; exit 1; }
done
if (($(nproc) < 2)); then
    echo "memory.sh: needs 2 cores (one for the exporter, one for the stand-in server)" >&2
    exit 1
fi
# Relative binary paths are relative to the repository, like the default.
cd "$(dirname "$here")"
python3 "$here/memory.py" &
helper_pid=$!
wait "$helper_pid"
status=$?
helper_pid=""
exit "$status"
