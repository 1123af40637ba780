#!/usr/bin/env bash
# One command: install the tools, build the exporter, run the benchmark, print the table.
#
#   bench/run.sh                                   # full: 3 runs x 100, 1,000, 10,000 tokens
#   BENCH_RUNS=1 BENCH_WINDOW=20 BENCH_SIZES="100 1000" bench/run.sh   # quick pass
#   BENCH_MIXED=1 bench/run.sh       # then the mixed-vendor run (Jira vs Jira+GitHub+GitLab)
#   BENCH_MIXED=only bench/run.sh    # the mixed-vendor run alone (no blackbox, no wrk)
#
# Knobs (environment): BENCH_RUNS, BENCH_WINDOW, BENCH_SIZES, BENCH_INTERVAL,
# BENCH_WRK_SECS, BENCH_WRK_CONNS, BENCH_BB_WARMUP, BENCH_CONCURRENCY, BENCH_CORE_SUT,
# BENCH_CORE_LOAD, BENCH_SKIP_BUILD=1, BENCH_KEEP=1, BENCH_MIXED, BENCH_MIXED_SIZES,
# BENCH_EXPORTER, BENCH_BASELINE (before/after in one run), BENCH_SKIP_BLACKBOX. See
# bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
harness_pid=""
created_policy=0

cleanup() {
    # Only what this script started or created.
    if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
        kill -TERM "$harness_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$harness_pid" 2>/dev/null || true
    fi
    if [[ "$created_policy" == 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# --- 1. tools -------------------------------------------------------------------------
need=()
mixed="${BENCH_MIXED:-0}"
if [[ "$mixed" != only ]]; then
    if [[ "${BENCH_SKIP_BLACKBOX:-0}" != 1 ]]; then
        command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
    fi
    command -v wrk >/dev/null || need+=(wrk)
fi
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "run.sh: need root to install: ${need[*]}" >&2
        exit 1
    fi
    # The Debian package would start a blackbox_exporter service on :9115; a policy-rc.d
    # that answers 101 ("action forbidden") stops that. Removed again if we created it.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [[ "$created_policy" == 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        created_policy=0
    fi
fi
nproc_now=$(nproc)
if ((nproc_now < 2)); then
    echo "run.sh: needs 2 cores (one for the system under test, one for the load); have $nproc_now" >&2
    exit 1
fi

# --- 2. build (others edit src/ concurrently: retry for up to 20 minutes) --------------
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    deadline=$((SECONDS + 1200))
    attempt=1
    while :; do
        log "cargo build --release (attempt $attempt)"
        if (cd "$repo" && timeout 1200 cargo build --release --quiet); then
            break
        fi
        if ((SECONDS + 60 >= deadline)); then
            echo "run.sh: release build still failing after 20 minutes" >&2
            exit 1
        fi
        log "build failed (someone may be mid-edit); retrying in 60 s"
        sleep 60
        attempt=$((attempt + 1))
    done
fi

# --- 3. benchmark ----------------------------------------------------------------------
status=0
for script in bench mixed; do
    case "$script:$mixed" in
        bench:only | mixed:0) continue ;;
    esac
    python3 "$here/$script.py" &
    harness_pid=$!
    wait "$harness_pid" || status=$?
    harness_pid=""
done
exit "$status"
