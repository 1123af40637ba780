#!/usr/bin/env bash
# Takes a screenshot of the status page (GET /) of `apitoken_exporter demo`, so you can see
# it without running anything yourself:
#
#   scripts/screenshot-status-page.sh [OUT.png]      (default docs/status-page.png)
#
# Uses ${APITOKEN_EXPORTER_BIN:-target/debug/apitoken_exporter} (run `cargo build` first) and
# Debian's chromium (scripts/install-test-deps.sh installs it). The demo listens on a free
# 127.0.0.1 port and is stopped by PID when the script ends, whatever happens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELPER="$ROOT/tests/e2e/status_page.py"
BIN="${APITOKEN_EXPORTER_BIN:-target/debug/apitoken_exporter}"
OUT="${1:-docs/status-page.png}"

DEMO_PID=""
LOG="$(mktemp)"
cleanup() {
  if [ -n "$DEMO_PID" ]; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
  fi
  rm -f "$LOG"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "screenshot: $BIN not found (cargo build)" >&2; exit 1; }
command -v chromium >/dev/null 2>&1 ||
  { echo "screenshot: chromium not found (bash scripts/install-test-deps.sh)" >&2; exit 1; }

PORT="$(python3 "$HELPER" free-port)"
"$BIN" demo --web.listen-address="127.0.0.1:$PORT" >"$LOG" 2>&1 &
DEMO_PID=$!
# All 12 demo tokens have a result within a few seconds; 30 s bounds a broken build.
if ! python3 "$HELPER" wait-probes "http://127.0.0.1:$PORT/metrics" 12 30 "$DEMO_PID"; then
  tail -n 20 "$LOG" >&2
  exit 1
fi

mkdir -p "$(dirname "$OUT")"
python3 "$HELPER" browser screenshot "http://127.0.0.1:$PORT/" "$OUT" "$LOG"
echo "wrote $OUT"
