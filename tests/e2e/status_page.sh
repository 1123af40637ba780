#!/usr/bin/env bash
# The status page (GET /) as a person sees it: rendered by headless Chromium, not read as
# bytes.
#
#   1. `apitoken_exporter demo`: one row per token, the state text a person must read for
#      each demo token, a link to /metrics, no <script>, no external asset; a screenshot is
#      a real, non-trivial PNG.
#   2. the exporter with a config whose site URL and token_file path carry HTML: the page
#      shows it as text and the DOM gains no element.
#
# Environment:
#   APITOKEN_EXPORTER_BIN  exporter binary (default target/debug/apitoken_exporter; not built here)
#   E2E_KEEP_TMP=1         keep the temp dir (DOM dumps, screenshot, logs) for debugging
#
# Chromium missing is a failure, not a skip (scripts/install-test-deps.sh installs it).
# Everything listens on 127.0.0.1 only; every process started here is stopped by PID on
# exit (the helper stops each Chromium's own process group itself).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
HELPER="$ROOT/tests/e2e/status_page.py"
BIN="${APITOKEN_EXPORTER_BIN:-target/debug/apitoken_exporter}"
PROBE_WAIT=30

PASSED=0
FAILED=0
PIDS=()
TMP=""

stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 20); do # bounded: 5 s for a graceful exit, then force
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    stop_pid "$pid"
  done
  PIDS=()
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "${E2E_KEEP_TMP:-0}" = "1" ]; then
      echo "# kept $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

summary_and_exit() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}

# A setup failure is reported in the same format as the checks, then the script stops.
setup_fail() {
  fail "setup: $*"
  local log
  for log in "$TMP"/*.log; do
    [ -f "$log" ] || continue
    echo "----- tail of $(basename "$log")"
    tail -n 20 "$log"
  done
  summary_and_exit
}

# Runs a helper check-* subcommand; echoes its lines and adds them to the counts.
run_checks() {
  local out rc
  out="$(python3 "$HELPER" "$@" 2>&1)"
  rc=$?
  [ -n "$out" ] && echo "$out"
  PASSED=$((PASSED + $(grep -c '^ok ' <<<"$out")))
  FAILED=$((FAILED + $(grep -c '^FAIL ' <<<"$out")))
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' <<<"$out"; then
    fail "helper $1 exited $rc without reporting a failure"
  fi
}

# render MODE URL OUT: one Chromium run; one check line.
render() {
  local mode="$1" url="$2" out="$3" err
  if err="$(python3 "$HELPER" browser "$mode" "$url" "$out" "$TMP/chromium.log" 2>&1)"; then
    pass "chromium $mode of $url"
  else
    fail "chromium $mode of $url: $err"
    tail -n 10 "$TMP/chromium.log" 2>/dev/null | sed 's/^/    /'
    return 1
  fi
}

# start_exporter NAME ARGS...: starts the binary in the background, records its PID.
start_exporter() {
  local name="$1"
  shift
  "$BIN" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
}

# ------------------------------------------------------------------ setup
if ! bash scripts/install-test-deps.sh >/dev/null; then
  fail "setup: scripts/install-test-deps.sh failed"
  summary_and_exit
fi
if ! command -v chromium >/dev/null 2>&1; then
  fail "setup: chromium not on PATH after scripts/install-test-deps.sh"
  summary_and_exit
fi
if [ ! -x "$BIN" ]; then
  fail "setup: exporter binary $BIN not found (cargo build, or set APITOKEN_EXPORTER_BIN)"
  summary_and_exit
fi
TMP="$(mktemp -d)"

# ------------------------------------------------------------------ 1. the demo
PORT="$(python3 "$HELPER" free-port)" || setup_fail "could not pick a free port"
DEMO="127.0.0.1:$PORT"
start_exporter demo demo --web.listen-address="$DEMO"
DEMO_PID="${PIDS[-1]}"
if err="$(python3 "$HELPER" wait-probes "http://$DEMO/metrics" 12 "$PROBE_WAIT" "$DEMO_PID" 2>&1)"; then
  pass "demo: /metrics shows a finished probe for all 12 tokens"
else
  setup_fail "demo: $err"
fi

if render dump-dom "http://$DEMO/" "$TMP/demo.dom.html"; then
  run_checks check-demo "$TMP/demo.dom.html"
fi
if render screenshot "http://$DEMO/" "$TMP/demo.png"; then
  run_checks check-png "$TMP/demo.png"
fi
stop_pid "$DEMO_PID"

# ------------------------------------------------------------------ 2. HTML escaping
# Token names are restricted to [A-Za-z0-9_.-], so hostile text comes in through the two
# free-form strings the page shows: the site URL (the URL parser percent-encodes < > ",
# but keeps & and ') and a token_file path, which appears verbatim in the
# credential_unavailable error because the file does not exist.
HOSTILE_FILE="$TMP/<script>alert(1)</script><img src=x onerror=alert(2)>"
SITE_TEXT="&lt;b&gt;'&amp;"
PORT="$(python3 "$HELPER" free-port)" || setup_fail "could not pick a free port"
EXPORTER="127.0.0.1:$PORT"
cat >"$TMP/escaping.yaml" <<EOF
global:
  allow_insecure_http: true
  probe_interval: 3s
  probe_timeout: 2s
tokens:
  - name: hostile-site
    provider: jira
    site: "http://127.0.0.1:1/%3Cscript%3Ealert(3)%3C/script%3E/$SITE_TEXT"
    email: probe@example.com
    token_env: STATUS_PAGE_E2E_TOKEN
  - name: hostile-token-file
    provider: jira
    site: "http://127.0.0.1:1/"
    email: probe@example.com
    token_file: "$HOSTILE_FILE"
EOF
STATUS_PAGE_E2E_TOKEN=not-a-real-token \
  start_exporter escaping --config.file="$TMP/escaping.yaml" --web.listen-address="$EXPORTER"
if err="$(python3 "$HELPER" wait-probes "http://$EXPORTER/metrics" 2 "$PROBE_WAIT" "${PIDS[-1]}" 2>&1)"; then
  pass "escaping: both tokens probed"
else
  setup_fail "escaping: $err"
fi
if render dump-dom "http://$EXPORTER/" "$TMP/escaping.dom.html"; then
  run_checks check-escaping "$TMP/escaping.dom.html" "$HOSTILE_FILE" "$SITE_TEXT"
fi

summary_and_exit
