#!/usr/bin/env bash
# End-to-end test of the shipped alert rules and dashboards against the real thing:
#
#   apitoken_exporter demo  <-scrape-  prometheus (rules: a copy of alerts/apitoken.rules.yml
#   (+ a second demo as a           with `for:` and the     -->  alertmanager  -->  webhook
#    replica, added later)          revocation grace shortened)  (route team="demo" -->
#                                                                 team webhook too)
#
# Asserts that the demo's broken tokens raise their alerts at the webhook, that nothing fires
# for the valid tokens, that the exporter's series match the spec, that every PromQL
# expression of dashboards/*.json evaluates (with data) against that Prometheus; then, with a
# second exporter of the same config scraped as another instance of the job (HA), that each
# token still raises exactly one alert, and that an Alertmanager route on `team` delivers the
# team's alerts to its own receiver.
#
# Environment:
#   APITOKEN_EXPORTER_BIN  exporter binary (default target/debug/apitoken_exporter)
#   E2E_TIMEOUT            seconds to wait for the alerts (default 120)
#   E2E_KEEP_TMP=1         keep the temp dir (configs, data, logs) for debugging
#
# Everything listens on 127.0.0.1 only; every process started here is killed by PID on exit.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
HELPER="$ROOT/tests/e2e/alerting_e2e.py"
BIN="${APITOKEN_EXPORTER_BIN:-target/debug/apitoken_exporter}"
TIMEOUT="${E2E_TIMEOUT:-120}"
SHORT_FOR="10s"
# ApiTokenRevokedStillAccepted's 900 s grace after a revocation, in the test copy
REVOKED_GRACE=5
T0=$(date +%s)

PIDS=()
TMP=""
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    # bounded wait (5 s) for a graceful exit, then force
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
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

# A setup failure is reported in the same format as the checks, then the script stops.
setup_fail() {
  echo "FAIL - setup: $*"
  local log
  for log in "$TMP"/*.log; do
    [ -f "$log" ] || continue
    echo "----- tail of $(basename "$log")"
    tail -n 30 "$log"
  done
  echo "0 passed, 1 failed"
  exit 1
}

if ! bash scripts/install-test-deps.sh >/dev/null; then
  echo "FAIL - setup: scripts/install-test-deps.sh failed"
  echo "0 passed, 1 failed"
  exit 1
fi
ALERTMANAGER="$(command -v alertmanager || command -v prometheus-alertmanager || true)"
for tool in prometheus promtool "$ALERTMANAGER"; do
  if [ -z "$tool" ] || ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAIL - setup: ${tool:-alertmanager} not found"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
if [ ! -x "$BIN" ]; then
  echo "FAIL - setup: exporter binary $BIN not found (cargo build, or set APITOKEN_EXPORTER_BIN)"
  echo "0 passed, 1 failed"
  exit 1
fi

TMP="$(mktemp -d /tmp/apitoken-e2e.XXXXXX)"
read -r EXPORTER_PORT EXPORTER2_PORT PROM_PORT AM_PORT WEBHOOK_PORT TEAM_WEBHOOK_PORT \
  < <(python3 "$HELPER" free-ports 6)
[ -n "${TEAM_WEBHOOK_PORT:-}" ] || setup_fail "could not pick free ports"
EXPORTER="127.0.0.1:$EXPORTER_PORT"
EXPORTER2="127.0.0.1:$EXPORTER2_PORT"
PROM="127.0.0.1:$PROM_PORT"
AM="127.0.0.1:$AM_PORT"
WEBHOOK_OUT="$TMP/webhook.jsonl"
TEAM_WEBHOOK_OUT="$TMP/webhook-team.jsonl"
TARGETS="$TMP/targets.json"
echo "# exporters $EXPORTER and $EXPORTER2 (replica), prometheus $PROM, alertmanager $AM," \
  "webhooks 127.0.0.1:$WEBHOOK_PORT and 127.0.0.1:$TEAM_WEBHOOK_PORT (team), tmp $TMP"

# -- webhook receivers (stop by themselves after TIMEOUT + 300 s at the latest)
python3 "$HELPER" webhook "$WEBHOOK_PORT" "$WEBHOOK_OUT" $((TIMEOUT + 300)) >"$TMP/webhook.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" webhook "$TEAM_WEBHOOK_PORT" "$TEAM_WEBHOOK_OUT" $((TIMEOUT + 300)) >"$TMP/webhook-team.log" 2>&1 &
PIDS+=("$!")

# -- exporters: the second runs the same demo (same tokens) and is scraped only from the HA
#    case on, when the checks add it to the targets file
"$BIN" demo --web.listen-address="$EXPORTER" >"$TMP/exporter.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$EXPORTER/metrics" 30 "${PIDS[-1]}" || setup_fail "exporter did not serve /metrics"
"$BIN" demo --web.listen-address="$EXPORTER2" >"$TMP/exporter2.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$EXPORTER2/metrics" 30 "${PIDS[-1]}" || setup_fail "second exporter did not serve /metrics"

# -- alertmanager
mkdir -p "$TMP/alertmanager"
cat >"$TMP/alertmanager.yml" <<EOF
route:
  receiver: webhook
  group_by: [alertname, token]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 4h
  routes:
    # the routing case: the demo tokens' team has its own receiver; with "continue", every
    # alert still reaches the main webhook (the catch-all route below)
    - matchers: ['team="demo"']
      receiver: team-demo
      continue: true
    - receiver: webhook
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:$WEBHOOK_PORT/alerts
        send_resolved: true
  - name: team-demo
    webhook_configs:
      - url: http://127.0.0.1:$TEAM_WEBHOOK_PORT/alerts
        send_resolved: true
EOF
"$ALERTMANAGER" \
  --config.file="$TMP/alertmanager.yml" \
  --storage.path="$TMP/alertmanager" \
  --web.listen-address="$AM" \
  --cluster.listen-address= \
  >"$TMP/alertmanager.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$AM/-/ready" 30 "${PIDS[-1]}" || setup_fail "alertmanager did not become ready"

# -- prometheus, with a test copy of the shipped rules (shorter `for:` and revocation grace)
python3 "$HELPER" rewrite-rules alerts/apitoken.rules.yml "$TMP/apitoken.rules.yml" "$SHORT_FOR" \
  "$REVOKED_GRACE" || setup_fail "could not rewrite the rule file"
promtool check rules "$TMP/apitoken.rules.yml" >"$TMP/promtool.log" 2>&1 \
  || setup_fail "the rewritten rule file does not load"
mkdir -p "$TMP/prometheus"
printf '[{"targets": ["%s"]}]\n' "$EXPORTER" >"$TARGETS"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['$AM']
rule_files:
  - $TMP/apitoken.rules.yml
scrape_configs:
  - job_name: apitoken-exporter
    file_sd_configs:
      - files: ['$TARGETS']
        refresh_interval: 1s
EOF
prometheus \
  --config.file="$TMP/prometheus.yml" \
  --storage.tsdb.path="$TMP/prometheus" \
  --web.listen-address="$PROM" \
  >"$TMP/prometheus.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$PROM/-/ready" 30 "${PIDS[-1]}" || setup_fail "prometheus did not become ready"

# -- the assertions (the helper prints the log tails on failure, the timing, and last the
#    "N passed, M failed" line)
#    Run in the background and `wait`, so a TERM/INT reaches the trap at once.
E2E_T0="$T0" E2E_LOG_DIR="$TMP" E2E_FOR_SECONDS="${SHORT_FOR%s}" \
  E2E_TEAM_WEBHOOK_OUT="$TEAM_WEBHOOK_OUT" E2E_TARGETS_FILE="$TARGETS" E2E_REPLICA="$EXPORTER2" \
  python3 "$HELPER" check "http://$PROM" "$WEBHOOK_OUT" "$ROOT/dashboards" "$TIMEOUT" &
PIDS+=("$!")
wait "$!"
status=$?
unset 'PIDS[${#PIDS[@]}-1]' # reaped: never signal a PID that may have been reused
exit "$status"
