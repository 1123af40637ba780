#!/usr/bin/env bash
# Organization inventory at scale: builds the release exporter and the simulator binary,
# then lists the simulator's 250,000-token organization (2,500 pages) with
# per_token_series off and on, and prints pages/s, RSS, the /metrics body size and the gzip
# scrape latency. See bench/README.md, "Organization inventory at scale".
#
#   bench/inventory.sh
#   INV_SKIP_BUILD=1 INV_MODES=false INV_SCRAPES=50 bench/inventory.sh
#
# Knobs (environment): INV_TOKENS (250000), INV_MODES ("false true"), INV_SCRAPES (200),
# INV_SCRAPE_SECS (30), INV_LIST_TIMEOUT (600), INV_SKIP_BUILD=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

if [[ "${INV_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release --locked -p apitoken-exporter -p apitoken-sim \
        --bin apitoken_exporter --bin apitoken-sim
fi
exec python3 "$here/inventory.py"
