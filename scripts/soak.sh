#!/usr/bin/env bash
# Load and soak (docs/reliability.md): 10,000 tokens against the simulator with ~1 % failing
# in rotating ways, 50 clients scraping for 60 s, a reload every second (two alternating
# configs) and token files rotated on disk. Release build; takes ~3 minutes plus the build.
# Prints the figures (RSS start/end, scrape p50/p99, oldest probe age) and fails on a
# broken invariant. All traffic stays on 127.0.0.1. SOAK_SECONDS=600 scripts/soak.sh runs a
# longer load phase (at most 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked --release --test it -- --ignored --nocapture soak:: "$@"
