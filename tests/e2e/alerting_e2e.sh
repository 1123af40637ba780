#!/usr/bin/env bash
# End-to-end test of the shipped alert rules and dashboards against the real thing:
#
#   apitoken_exporter demo  <-scrape-  prometheus (rules: a copy of alerts/apitoken.rules.yml
#   (+ a second demo as a           with `for:` and the     -->  alertmanager  -->  webhook
#    replica, added later)          revocation grace shortened)       ^  (route team="demo"
#                                                                     |   --> team webhook too)
#   apitoken-sim --scenario  <-  apitoken_exporter  <-scrape-  prometheus #2 (same job name,
#     alerts-2026                --config.file                 same rules copy)
#
# Asserts that the demo's broken tokens raise their alerts at the webhook, that nothing fires
# for the valid tokens, that the exporter's series match the spec, that every PromQL
# expression of dashboards/*.json evaluates (with data) against that Prometheus; then, with a
# second exporter of the same config scraped as another instance of the job (HA), that each
# token still raises exactly one alert, and that an Alertmanager route on `team` delivers the
# team's alerts to its own receiver.
#
# The scenario (sim/src/bin/apitoken-sim.rs, "--scenario alerts-2026"; docs/testing-alerts.md)
# proves two alerts the demo cannot: ApiTokenRevokedStillAccepted for tokens revoked only in
# the organization inventory (an entry that turns BLOCKED, one that vanishes; no revoked_at in
# the config), and ApiTokenAnonymousFallback for the "flip" (a dead Jira token served as
# anonymous whose side probe is rate-limited every second request). Its own Prometheus keeps
# the demo's Prometheus exactly as it was, so the demo's counts (stat panels, tokens per
# instance, the HA replica's instances) keep their meaning.
#
# Environment:
#   APITOKEN_EXPORTER_BIN  exporter binary (default target/debug/apitoken_exporter)
#   APITOKEN_SIM_BIN       simulator binary (default: apitoken-sim next to the exporter's;
#                          built with cargo when it is missing there)
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
# the scenario: the inventory revokes on its 3rd listing (every 3 s), and the revoked
# tokens keep working for 30 s after that
SCENARIO_INTERVAL="3s"
SCENARIO_REVOKE_ON_LISTING=3
SCENARIO_STILL_WORKS_FOR=30
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
SIM_BIN="${APITOKEN_SIM_BIN:-$(dirname "$BIN")/apitoken-sim}"
if [ ! -x "$SIM_BIN" ] && [ -z "${APITOKEN_SIM_BIN:-}" ]; then
  # `cargo build` builds the exporter only. Selecting both packages builds the simulator's
  # binary with the features the exporter's build already compiled (nothing is rebuilt).
  case "$(cd "$(dirname "$BIN")" 2>/dev/null && pwd)" in
    "$ROOT/target/debug") profile=() ;;
    "$ROOT/target/release") profile=(--release) ;;
    *) profile=(none) ;;
  esac
  if [ "${profile[*]}" != "none" ]; then
    echo "# building $SIM_BIN"
    timeout 1200 cargo build --locked "${profile[@]}" -p apitoken-exporter -p apitoken-sim \
      --bin apitoken-sim >/dev/null 2>&1
  fi
fi
if [ ! -x "$SIM_BIN" ]; then
  echo "FAIL - setup: simulator binary $SIM_BIN not found" \
    "(cargo build -p apitoken-exporter -p apitoken-sim --bin apitoken-sim, or set APITOKEN_SIM_BIN)"
  echo "0 passed, 1 failed"
  exit 1
fi

TMP="$(mktemp -d /tmp/apitoken-e2e.XXXXXX)"
read -r EXPORTER_PORT EXPORTER2_PORT PROM_PORT AM_PORT WEBHOOK_PORT TEAM_WEBHOOK_PORT \
  SIM_PORT SCENARIO_EXPORTER_PORT SCENARIO_PROM_PORT < <(python3 "$HELPER" free-ports 9)
[ -n "${SCENARIO_PROM_PORT:-}" ] || setup_fail "could not pick free ports"
EXPORTER="127.0.0.1:$EXPORTER_PORT"
EXPORTER2="127.0.0.1:$EXPORTER2_PORT"
PROM="127.0.0.1:$PROM_PORT"
AM="127.0.0.1:$AM_PORT"
WEBHOOK_OUT="$TMP/webhook.jsonl"
TEAM_WEBHOOK_OUT="$TMP/webhook-team.jsonl"
TARGETS="$TMP/targets.json"
SIM="127.0.0.1:$SIM_PORT"
SCENARIO_EXPORTER="127.0.0.1:$SCENARIO_EXPORTER_PORT"
SCENARIO_PROM="127.0.0.1:$SCENARIO_PROM_PORT"
echo "# exporters $EXPORTER and $EXPORTER2 (replica), prometheus $PROM, alertmanager $AM," \
  "webhooks 127.0.0.1:$WEBHOOK_PORT and 127.0.0.1:$TEAM_WEBHOOK_PORT (team), tmp $TMP"
echo "# scenario: simulator $SIM, exporter $SCENARIO_EXPORTER, prometheus $SCENARIO_PROM"

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

# -- prometheus #2: the scenario's exporter, as job apitoken-exporter, with the same rules
#    copy and Alertmanager
mkdir -p "$TMP/prometheus-scenario"
cat >"$TMP/prometheus-scenario.yml" <<EOF
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
    static_configs:
      - targets: ['$SCENARIO_EXPORTER']
EOF
prometheus \
  --config.file="$TMP/prometheus-scenario.yml" \
  --storage.tsdb.path="$TMP/prometheus-scenario" \
  --web.listen-address="$SCENARIO_PROM" \
  >"$TMP/prometheus-scenario.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$SCENARIO_PROM/-/ready" 30 "${PIDS[-1]}" \
  || setup_fail "the scenario's prometheus did not become ready"

# -- the scenario: apitoken-sim --scenario alerts-2026 and an exporter with its own config,
#    started once their Prometheus scrapes, so that it sees the inventory before the revocation.
#    Fresh random secrets, handed over in the environment only (never on a command line);
#    the checks make sure none of them shows up anywhere (logs, /metrics, Prometheus,
#    the webhooks).
secret() { python3 -c 'import secrets; print("e2e-" + secrets.token_hex(16))'; }
E2E_ORG_ADMIN_KEY="$(secret)"
E2E_FLIP_TOKEN="$(secret)"
E2E_BLOCKED_TOKEN="$(secret)"
E2E_DELETED_TOKEN="$(secret)"
E2E_LINKED_TOKEN="$(secret)"
SECRETS_FILE="$TMP/scenario-secrets"
(umask 077 && printf '%s\n' "$E2E_ORG_ADMIN_KEY" "$E2E_FLIP_TOKEN" "$E2E_BLOCKED_TOKEN" \
  "$E2E_DELETED_TOKEN" "$E2E_LINKED_TOKEN" >"$SECRETS_FILE")
APITOKEN_SIM_ADMIN_KEY="$E2E_ORG_ADMIN_KEY" APITOKEN_SIM_FLIP_TOKEN="$E2E_FLIP_TOKEN" \
  APITOKEN_SIM_BLOCKED_TOKEN="$E2E_BLOCKED_TOKEN" APITOKEN_SIM_DELETED_TOKEN="$E2E_DELETED_TOKEN" \
  APITOKEN_SIM_LINKED_TOKEN="$E2E_LINKED_TOKEN" \
  "$SIM_BIN" --listen "$SIM" --scenario alerts-2026 --org-id alerts-2026-org \
  --revoke-on-listing "$SCENARIO_REVOKE_ON_LISTING" --still-works-for "$SCENARIO_STILL_WORKS_FOR" \
  --exit-after $((TIMEOUT + 300)) >"$TMP/sim.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$SIM/__sim/stats" 30 "${PIDS[-1]}" || setup_fail "apitoken-sim did not serve"
# README "Configuration" and "Organization inventory"; the sites are path prefixes on the
# simulator: /flip-site allows anonymous access, /closed-site does not.
cat >"$TMP/scenario.yml" <<EOF
global:
  probe_interval: $SCENARIO_INTERVAL
  probe_timeout: 2s
  allow_insecure_http: true
tokens:
  # the flip: dead, served as anonymous, its side probe rate-limited every 2nd request
  - name: e2e-flip-anonymous
    provider: jira
    site: http://$SIM/flip-site
    email: flip@alerts.example
    token_env: E2E_FLIP_TOKEN
    labels: {team: e2e-scenario}
  # revoked in the inventory only: the entry turns BLOCKED, or vanishes
  - name: e2e-revoked-blocked
    provider: jira
    site: http://$SIM/closed-site
    email: blocked@alerts.example
    token_env: E2E_BLOCKED_TOKEN
    org_token_id: tok-blocked
    labels: {team: e2e-scenario}
  - name: e2e-revoked-deleted
    provider: jira
    site: http://$SIM/closed-site
    email: deleted@alerts.example
    token_env: E2E_DELETED_TOKEN
    org_token_id: tok-deleted
    labels: {team: e2e-scenario}
  # the control: linked the same way, its entry stays ALLOWED
  - name: e2e-linked-valid
    provider: jira
    site: http://$SIM/closed-site
    email: linked@alerts.example
    token_env: E2E_LINKED_TOKEN
    org_token_id: tok-linked
    labels: {team: e2e-scenario}
organizations:
  - name: e2e-org
    org_id: alerts-2026-org
    api_key_env: E2E_ORG_ADMIN_KEY
    base_url: http://$SIM
    probe_interval: $SCENARIO_INTERVAL
EOF
E2E_ORG_ADMIN_KEY="$E2E_ORG_ADMIN_KEY" E2E_FLIP_TOKEN="$E2E_FLIP_TOKEN" \
  E2E_BLOCKED_TOKEN="$E2E_BLOCKED_TOKEN" E2E_DELETED_TOKEN="$E2E_DELETED_TOKEN" \
  E2E_LINKED_TOKEN="$E2E_LINKED_TOKEN" \
  "$BIN" --config.file="$TMP/scenario.yml" --web.listen-address="$SCENARIO_EXPORTER" \
  >"$TMP/exporter-scenario.log" 2>&1 &
PIDS+=("$!")
python3 "$HELPER" wait-http "http://$SCENARIO_EXPORTER/metrics" 30 "${PIDS[-1]}" \
  || setup_fail "the scenario's exporter did not serve /metrics"

# -- the assertions (the helper prints the log tails on failure, the timing, and last the
#    "N passed, M failed" line)
#    Run in the background and `wait`, so a TERM/INT reaches the trap at once.
E2E_T0="$T0" E2E_LOG_DIR="$TMP" E2E_FOR_SECONDS="${SHORT_FOR%s}" \
  E2E_TEAM_WEBHOOK_OUT="$TEAM_WEBHOOK_OUT" E2E_TARGETS_FILE="$TARGETS" E2E_REPLICA="$EXPORTER2" \
  E2E_SCENARIO_PROM="http://$SCENARIO_PROM" E2E_SCENARIO_EXPORTER="$SCENARIO_EXPORTER" \
  E2E_SCENARIO_STILL_WORKS_FOR="$SCENARIO_STILL_WORKS_FOR" E2E_REVOKED_GRACE="$REVOKED_GRACE" \
  E2E_SCENARIO_SECRETS_FILE="$SECRETS_FILE" \
  python3 "$HELPER" check "http://$PROM" "$WEBHOOK_OUT" "$ROOT/dashboards" "$TIMEOUT" &
PIDS+=("$!")
wait "$!"
status=$?
unset 'PIDS[${#PIDS[@]}-1]' # reaped: never signal a PID that may have been reused
exit "$status"
