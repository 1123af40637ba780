#!/usr/bin/env bash
# The full soak (docs/reliability.md), the test target `tests/soak/main.rs` (`test = false`:
# `cargo test` does not run it). Release build; three phases, one at a time, each with
# 10,000 tokens probed every 30 s against the simulator:
#   1. load: ~1 % failing in rotating ways, 50 gzip and 10 plain scrapers for 60 s, a reload
#      every second (two alternating configs), token files rotated on disk;
#   2. bcrypt flood: --web.config.file with a bcrypt user, 100 clients on wrong passwords,
#      one authorised scraper, 60 s;
#   3. status-page flood: 30 clients looping on GET /, one scraper, 60 s.
# Prints each phase's figures (RSS, scrape p50/p99, probe cadence, oldest probe age) and
# fails on a broken invariant. All traffic stays on 127.0.0.1. Takes ~6 minutes plus the
# build. SOAK_SECONDS=600 lengthens the load phase and SOAK_FLOOD_SECONDS each flood
# (10 to 3600). Extra arguments go to the test binary (e.g. a phase name as a filter).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked --release --test soak -- --nocapture --test-threads=1 "$@"
