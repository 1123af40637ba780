#!/usr/bin/env python3
"""Helper for tests/e2e/alerting_e2e.sh (python3 stdlib only).

Sub-commands:
  free-ports N                      print N distinct free TCP ports on 127.0.0.1
  wait-http URL TIMEOUT [PID]       poll URL until it answers 200 (bounded; gives up
                                    early once process PID has exited)
  rewrite-rules SRC DST FOR GRACE   copy a rule file with every non-zero `for:` set to FOR
                                    and ApiTokenRevokedStillAccepted's grace after the
                                    revocation (`... revoked_timestamp_seconds > 900`) set to
                                    GRACE seconds; fails when either is not found
  webhook PORT OUT MAX_SECONDS      Alertmanager webhook receiver: appends each POSTed
                                    payload as one JSON line to OUT; exits after MAX_SECONDS
  check PROM_URL WEBHOOK_OUT DASHBOARD_DIR TIMEOUT
                                    the assertions; prints one line per check and a final
                                    "N passed, M failed"; exit 1 if anything failed

`check` also reads the environment: E2E_TEAM_WEBHOOK_OUT (the team receiver's JSON lines),
E2E_TARGETS_FILE (Prometheus' file_sd targets of the job), E2E_REPLICA (a second exporter
with the same config, added to the targets for the HA case), E2E_FOR_SECONDS (the shortened
`for:`), E2E_LOG_DIR and E2E_T0; and for the scenario `apitoken-sim --scenario alerts-2026`
(sim/src/bin/apitoken-sim.rs), which a third exporter watches and a second Prometheus
(same job name, same rules, same Alertmanager) scrapes: E2E_SCENARIO_PROM (that
Prometheus), E2E_SCENARIO_EXPORTER (host:port), E2E_SCENARIO_STILL_WORKS_FOR (seconds a
revoked token keeps working), E2E_REVOKED_GRACE (the rewritten 900 s grace) and
E2E_SCENARIO_SECRETS_FILE (the scenario's secrets, one a line, which must appear nowhere).

Everything talks to 127.0.0.1 only.
"""

import datetime
import glob
import http.server
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK = "127.0.0.1"

# ---------------------------------------------------------------- the demo's tokens
# What `apitoken_exporter demo` produces (README: Quick start and Metrics; src/demo.rs).
# demo-org-admin-key: the implicit token watching the organization's admin key
VALID_TOKENS = ["jira-valid", "jira-service-account", "confluence-valid", "bitbucket-valid", "admin-valid", "demo-org-admin-key", "github-valid", "gitlab-valid"]

# (alertname, token) pairs that must reach the webhook.
EXPECTED_ALERTS = [
    ("ApiTokenExpired", "jira-expired"),
    ("ApiTokenInvalid", "jira-expired"),
    ("ApiTokenAnonymousFallback", "jira-anonymous"),
    ("ApiTokenIdentityMismatch", "confluence-mismatch"),
    ("ApiTokenExpiringCritical", "jira-expiring"),
    # the demo gives the unreachable admin key 25 days: the only token in the warning band
    ("ApiTokenExpiringSoon", "admin-unreachable"),
    ("ApiTokenRevokedStillAccepted", "jira-revoked"),
    ("ApiTokenProbeFailing", "bitbucket-ratelimited"),
    ("ApiTokenProbeFailing", "admin-unreachable"),
]

# The team every configured demo token carries (custom label on apitoken_info); the routing
# case sends it to its own receiver.
DEMO_TEAM = "demo"

# Alerts that must not fire at all while the demo runs normally.
FORBIDDEN_ALERTNAMES = ["ApiTokenExporterDown", "ApiTokenExporterConfigReloadFailed"]

ALL_TOKENS = {
    "jira-valid": "jira",
    "jira-expiring": "jira",
    "jira-expired": "jira",
    "jira-revoked": "jira",
    "jira-anonymous": "jira",
    "jira-service-account": "jira",
    "confluence-valid": "confluence",
    "confluence-mismatch": "confluence",
    "bitbucket-valid": "bitbucket",
    "bitbucket-ratelimited": "bitbucket",
    "admin-valid": "atlassian_admin",
    "admin-unreachable": "atlassian_admin",
    "demo-org-admin-key": "atlassian_admin",
    "github-valid": "github",
    "gitlab-valid": "gitlab",
}

# Organization inventory alerts the demo's organization must raise (label org="demo-org"):
# a key expiring in 5 days, tokens expiring within 14 days, tokens unused for > 90 days.
EXPECTED_ORG_ALERTS = [
    "AtlassianAdminApiKeyExpiringSoon",
    "AtlassianOrgTokenExpiringSoon",
    "AtlassianOrgTokenUnused",
]

# PromQL (instant) -> (low, high) inclusive bounds every returned sample must satisfy, or
# None for "must be absent". `time()`-relative bounds are loose: probes are seconds old.
METRIC_CONTRACT = [
    ('apitoken_valid{token="jira-valid"}', (1, 1)),
    ('apitoken_anonymous_fallback{token="jira-valid"}', (0, 0)),
    ('apitoken_identity_mismatch{token="jira-valid"}', (0, 0)),
    ('apitoken_probe_success{token="jira-valid"}', (1, 1)),
    ('apitoken_days_until_expiry{token="jira-valid"}', (198, 201)),
    ('apitoken_expiry_timestamp_seconds{token="jira-valid"} - time()', (198 * 86400, 201 * 86400)),
    ('apitoken_days_until_expiry{token="jira-expiring"}', (4, 6)),
    ('apitoken_valid{token="jira-expiring"}', (1, 1)),
    ('apitoken_valid{token="jira-expired"}', (0, 0)),
    ('apitoken_anonymous_fallback{token="jira-expired"}', (0, 0)),
    ('apitoken_days_until_expiry{token="jira-expired"}', (-4, -2)),
    ('apitoken_valid{token="jira-revoked"}', (1, 1)),
    ('time() - apitoken_revoked_timestamp_seconds{token="jira-revoked"}', (3000, 4500)),
    ('apitoken_revoked_timestamp_seconds{token="jira-valid"}', None),
    ('apitoken_valid{token="jira-anonymous"}', (0, 0)),
    ('apitoken_anonymous_fallback{token="jira-anonymous"}', (1, 1)),
    ('apitoken_valid{token="confluence-valid"}', (1, 1)),
    ('apitoken_days_until_expiry{token="confluence-valid"}', (255, 275)),
    ('apitoken_valid{token="confluence-mismatch"}', (1, 1)),
    ('apitoken_identity_mismatch{token="confluence-mismatch"}', (1, 1)),
    ('apitoken_valid{token="bitbucket-valid"}', (1, 1)),
    ('apitoken_scope_info{token="bitbucket-valid",scope="read:user:bitbucket"}', (1, 1)),
    ('apitoken_info{token="bitbucket-valid",credential_type="api_token",auth="basic"}', (1, 1)),
    # the service account: OAuth 2.0 client credentials through the gateway site
    ('apitoken_valid{token="jira-service-account"}', (1, 1)),
    ('apitoken_info{token="jira-service-account",auth="oauth2",account_id="712020:d3m0-service-account"}', (1, 1)),
    ('apitoken_lifetime_seconds{token="jira-expiring"}', (360 * 86400, 370 * 86400)),
    ('apitoken_days_until_expiry{token="bitbucket-valid"}', None),
    ('apitoken_expiry_timestamp_seconds{token="bitbucket-valid"}', None),
    ('apitoken_probe_success{token="bitbucket-ratelimited"}', (0, 0)),
    ('apitoken_valid{token="bitbucket-ratelimited"}', None),
    ('apitoken_probe_errors_total{token="bitbucket-ratelimited",reason="rate_limited"}', (1, 1e9)),
    ('apitoken_valid{token="admin-valid"}', (1, 1)),
    ('apitoken_days_until_expiry{token="admin-valid"}', (58, 61)),
    ('apitoken_probe_success{token="admin-unreachable"}', (0, 0)),
    ('apitoken_valid{token="admin-unreachable"}', None),
    ('apitoken_days_until_expiry{token="admin-unreachable"}', (24, 26)),
    ('apitoken_probe_errors_total{token="admin-unreachable",reason="connect"}', (1, 1e9)),
    ('apitoken_probe_interval_seconds{token!="bitbucket-ratelimited"}', (15, 15)),
    # effective interval: backing off for the simulator's Retry-After: 120
    ('apitoken_probe_interval_seconds{token="bitbucket-ratelimited"}', (120, 120)),
    ('time() - apitoken_last_probe_timestamp_seconds', (-1, 60)),
    ('apitoken_last_valid_timestamp_seconds{token="jira-valid"} - time()', (-60, 1)),
    ('apitoken_probe_duration_seconds', (0, 15)),
    ('apitoken_probes_total{token="jira-valid",result="valid"}', (1, 1e9)),
    ('apitoken_probes_total{token="confluence-mismatch",result="mismatch"}', (1, 1e9)),
    ('apitoken_probes_total{token="jira-anonymous",result="anonymous"}', (1, 1e9)),
    ('apitoken_probes_total{token="jira-expired",result="rejected"}', (1, 1e9)),
    ('apitoken_probes_total{token="admin-unreachable",result="error"}', (1, 1e9)),
    ('apitoken_exporter_build_info', (1, 1)),
    ('apitoken_exporter_config_last_reload_successful', (1, 1)),
    ('apitoken_exporter_tokens', (14, 14)),  # configured tokens; the implicit one is not counted
    ('apitoken_org_inventory_success{org="demo-org"}', (1, 1)),
    ('time() - apitoken_org_inventory_last_success_timestamp_seconds{org="demo-org"}', (-1, 120)),
    ('count(apitoken_org_token_last_active_timestamp_seconds{org="demo-org"})', (250, 400)),
    ('count(apitoken_org_api_key_expiry_timestamp_seconds{org="demo-org"})', (3, 3)),
    ('apitoken_info{token="jira-expiring",expiry_source="org_inventory"}', (1, 1)),
]

# Per-token series that must exist for every demo token (README: Metrics).
PER_TOKEN_METRICS = [
    "apitoken_probe_success",
    "apitoken_last_probe_timestamp_seconds",
    "apitoken_probe_duration_seconds",
    "apitoken_probe_interval_seconds",
    "apitoken_info",
]

# The dashboard's stat panels, by title, and the value the demo must show.
EXPECTED_STATS = {
    "Valid": 10,  # jira-valid, jira-expiring, jira-revoked, jira-service-account, confluence-valid, bitbucket-valid, admin-valid, demo-org-admin-key, github-valid, gitlab-valid
    "Expiring < 30d": 2,  # jira-expiring (5 days), admin-unreachable (25 days)
    "Expired": 1,  # jira-expired
    "Anonymous fallback": 1,  # jira-anonymous
    "Identity mismatch": 1,  # confluence-mismatch
    "Rejected": 1,  # jira-expired
    "Probe failing": 2,  # bitbucket-ratelimited, admin-unreachable
    "Tokens": 15,  # 14 configured + the implicit demo-org-admin-key
    "Exporter up": 1,
    "Config reload": 1,
    "Configured tokens": 14,
}

# ---------------------------------------------------------------- the scenario
# What `apitoken-sim --scenario alerts-2026` (sim/src/bin/apitoken-sim.rs) and the exporter
# config that alerting_e2e.sh writes for it produce; scraped by a Prometheus of its own.
SCENARIO_ORG = "e2e-org"
SCENARIO_TEAM = "e2e-scenario"
SCENARIO_FLIP = "e2e-flip-anonymous"
# token -> its inventory entry (org_token_id)
SCENARIO_REVOKED = {"e2e-revoked-blocked": "tok-blocked", "e2e-revoked-deleted": "tok-deleted"}
SCENARIO_CONTROL = "e2e-linked-valid"
SCENARIO_ADMIN_KEY = f"{SCENARIO_ORG}-admin-key"
# token -> exactly the alerts that must reach the webhook for it (no others may). A revoked
# token raises ApiTokenInvalid too once it finally stops working (the lag is measured then).
SCENARIO_ALERTS = {
    SCENARIO_FLIP: {"ApiTokenAnonymousFallback"},
    "e2e-revoked-blocked": {"ApiTokenRevokedStillAccepted", "ApiTokenInvalid"},
    "e2e-revoked-deleted": {"ApiTokenRevokedStillAccepted", "ApiTokenInvalid"},
    SCENARIO_CONTROL: set(),
    SCENARIO_ADMIN_KEY: set(),
}

# Metrics the rules and dashboards use when they exist (lifetimes, creation times) but
# that the exporter does not emit yet. A dashboard expression may return no data only if it
# reads one of them and Prometheus has no series of it; once the exporter emits it, the
# expression must return data like every other.
OPTIONAL_METRICS = [
    "apitoken_lifetime_seconds",
    "apitoken_org_token_created_timestamp_seconds",
    "apitoken_org_api_key_created_timestamp_seconds",
]

# Grafana variables -> values that make sense in a plain /api/v1/query. Every other
# dashboard variable ($job, $token, $provider, $team, ...) becomes ".*" (its "All").
GRAFANA_SUBSTITUTIONS = [
    (r"\$\{?datasource(:\w+)?\}?", ""),
    (r"\$__rate_interval\b", "1m"),
    (r"\$__interval_ms\b", "15000"),
    (r"\$__interval\b", "15s"),
    (r"\$__range_s\b", "300"),
    (r"\$__range_ms\b", "300000"),
    (r"\$__range\b", "5m"),
    (r"\$\{?([A-Za-z]\w*)(:\w+)?\}?", ".*"),
]


# ---------------------------------------------------------------- small utilities
def http_get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def prom_query(prom, expr):
    """Instant query. Returns (samples, error) where samples is a list of (labels, value)."""
    url = prom.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = http_get_json(url)
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read().decode("utf-8")).get("error", "")
        except ValueError:
            detail = ""
        return None, f"HTTP {err.code}: {detail}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return None, str(err)
    if body.get("status") != "success":
        return None, body.get("error", "query failed")
    data = body["data"]
    if data["resultType"] == "vector":
        return [(s["metric"], float(s["value"][1])) for s in data["result"]], None
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))], None
    return [], f"unexpected result type {data['resultType']}"


def grafana_to_promql(expr):
    for pattern, repl in GRAFANA_SUBSTITUTIONS:
        expr = re.sub(pattern, repl, expr)
    return expr


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   - {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def info(self, text):
        print(f"# {text}", flush=True)


# ---------------------------------------------------------------- sub-commands
def cmd_free_ports(count):
    socks = []
    try:
        for _ in range(int(count)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()
    return 0


def process_alive(pid):
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError, ValueError):
        return False


def cmd_wait_http(url, timeout, pid=None):
    deadline = time.monotonic() + float(timeout)
    last = ""
    while time.monotonic() < deadline:
        if pid is not None and not process_alive(pid):
            print(f"process {pid} exited before {url} answered", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return 0
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.3)
    print(f"timed out after {timeout}s waiting for {url}: {last}", file=sys.stderr)
    return 1


# ApiTokenRevokedStillAccepted's grace after the revocation: both comparisons of
# `apitoken_revoked_timestamp_seconds{...} > 900` (time() since the revocation, and the last
# valid probe after it), in each branch of the rule's expression.
REVOKED_GRACE = re.compile(r"(apitoken_revoked_timestamp_seconds\{[^}]*\}\s*>\s*)(\d+(?:\.\d+)?)\b")


def cmd_rewrite_rules(src, dst, new_for, grace):
    """Shorten every non-zero `for:` so the e2e does not wait 30 minutes, and
    ApiTokenRevokedStillAccepted's 900 s grace after a revocation so that an inventory
    revocation fires within the run; the shipped file is only read. Fails loudly when a
    pattern is not found, so that a change of the rules cannot make the e2e vacuous."""
    out, rewritten = [], 0
    grace_since, grace_valid = 0, 0
    with open(src, encoding="utf-8") as f:
        for line in f:
            # `for: 1h` or `for: "1h"` (the rendered file quotes its strings)
            m = re.match(r'^(\s*for:\s*)("?)([^"\s]+)("?)(\s*)$', line)
            if m and not re.fullmatch(r"0+[smhdwy]?", m.group(3)):
                line = f"{m.group(1)}{m.group(2)}{new_for}{m.group(4)}{m.group(5)}"
                rewritten += 1
            line, n = REVOKED_GRACE.subn(lambda g: g.group(1) + str(grace), line)
            if n and "time()" in line:
                grace_since += n
            elif n and "apitoken_last_valid_timestamp_seconds" in line:
                grace_valid += n
            elif n:
                print(f"unexpected revocation comparison in {src}: {line.strip()}", file=sys.stderr)
                return 1
            out.append(line)
    if rewritten == 0:
        print(f"no `for:` found in {src}", file=sys.stderr)
        return 1
    if grace_since == 0 or grace_valid == 0:
        print(f"ApiTokenRevokedStillAccepted's grace (`time() - apitoken_revoked_timestamp_seconds"
              f"{{...}} > N` and `apitoken_last_valid_timestamp_seconds{{...}} - ... "
              f"apitoken_revoked_timestamp_seconds{{...}} > N`) not found in {src} (found "
              f"{grace_since} and {grace_valid}): update REVOKED_GRACE in {sys.argv[0]}",
              file=sys.stderr)
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.writelines(out)
    print(f"rewrote {rewritten} for: durations to {new_for} and {grace_since + grace_valid} "
          f"revocation graces to {grace}s")
    return 0


def cmd_webhook(port, out_path, max_seconds):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, 10 * 1024 * 1024))
            try:
                payload = json.loads(body.decode("utf-8"))
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            with open(out_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(payload) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, fmt, *args):
            pass

    server = http.server.HTTPServer((LOOPBACK, int(port)), Handler)
    server.timeout = 1
    deadline = time.monotonic() + float(max_seconds)
    # Bounded: the receiver stops by itself even if nobody kills it.
    while time.monotonic() < deadline:
        server.handle_request()
    server.server_close()
    return 0


def received_alerts(path):
    alerts = []
    if not os.path.exists(path):
        return alerts
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                alerts.extend(json.loads(line).get("alerts", []))
    return alerts


def firing_pairs(alerts):
    return {(a["labels"].get("alertname"), a["labels"].get("token")): a
            for a in alerts if a.get("status") == "firing"}


def dashboard_targets(path):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)

    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(dash.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel, target["expr"]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            yield {"title": f"variable ${var['name']}", "type": "variable"}, query


def label_values_to_promql(query):
    """label_values(metric{sel}, label) -> count by (label) (metric{sel})."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
    if not m:
        return None
    return f"count by ({m.group(2)}) ({m.group(1)})"


def cmd_check(prom, webhook_out, dashboard_dir, timeout):
    report = Report()
    timeout = float(timeout)
    started = time.monotonic()

    # 1. Prometheus scrapes the exporter.
    deadline = time.monotonic() + 30
    up = None
    while time.monotonic() < deadline:
        up, _ = prom_query(prom, 'up{job="apitoken-exporter"} == 1')
        if up:
            break
        time.sleep(1)
    report.check(bool(up), 'Prometheus scrapes job "apitoken-exporter" (up == 1)')

    # 2. Every expected alert reaches the webhook (bounded wait). (The scenario's are
    # waited for in its own section, 9: waiting for them here would delay the demo's
    # checks below, some of which are bound to the demo's start.)
    deadline = started + timeout
    pairs = {}
    while time.monotonic() < deadline:
        pairs = firing_pairs(received_alerts(webhook_out))
        org_firing = {a["labels"].get("alertname") for a in received_alerts(webhook_out)
                      if a.get("status") == "firing" and a["labels"].get("org") == "demo-org"}
        if all(p in pairs for p in EXPECTED_ALERTS) and set(EXPECTED_ORG_ALERTS) <= org_firing:
            break
        time.sleep(1)
    report.info(f"waited {time.monotonic() - started:.0f}s for alerts; received firing: "
                + ", ".join(f"{a}/{t}" for a, t in sorted(pairs, key=str)))
    for alertname, token in EXPECTED_ALERTS:
        alert = pairs.get((alertname, token))
        ok = alert is not None
        detail = "not received"
        if ok:
            labels, ann = alert["labels"], alert.get("annotations", {})
            problems = []
            if labels.get("provider") != ALL_TOKENS[token]:
                problems.append(f"provider label {labels.get('provider')!r}")
            if labels.get("severity") not in ("warning", "critical"):
                problems.append(f"severity label {labels.get('severity')!r}")
            if token not in ann.get("summary", "") or token not in ann.get("description", ""):
                problems.append("summary/description do not name the token")
            ok, detail = not problems, "; ".join(problems)
        report.check(ok, f"webhook received {alertname} for {token}", detail)

    org_alerts = [a for a in received_alerts(webhook_out)
                  if a.get("status") == "firing" and a["labels"].get("org") == "demo-org"]
    for alertname in EXPECTED_ORG_ALERTS:
        got = [a for a in org_alerts if a["labels"].get("alertname") == alertname]
        ok = bool(got) and all(a["labels"].get("severity") in ("warning", "critical")
                               and "demo-org" in a.get("annotations", {}).get("summary", "")
                               + a.get("annotations", {}).get("description", "")
                               for a in got)
        report.check(ok, f"webhook received {alertname} for org demo-org",
                     "not received" if not got else "severity/annotations do not name the org")
    emails = [a for a in org_alerts if any("@" in v for v in a["labels"].values())]
    report.check(not emails, "no e-mail address in any org alert label", str(emails[:1]))

    # 3. Nothing fires (or is even pending) for the valid tokens, nor for the exporter itself.
    # Give the rules a few more evaluation cycles than the shortened `for:` first.
    time.sleep(6)
    alerts = received_alerts(webhook_out)
    for token in VALID_TOKENS:
        got = sorted({a["labels"].get("alertname") for a in alerts
                      if a["labels"].get("token") == token})
        report.check(not got, f"no alert reached the webhook for {token}", ", ".join(got))
        pending, err = prom_query(prom, f'ALERTS{{token="{token}"}}')
        names = sorted({s[0].get("alertname") for s in pending or []})
        report.check(err is None and not pending, f"no alert pending or firing in Prometheus for {token}",
                     err or ", ".join(names))
    for alertname in FORBIDDEN_ALERTNAMES:
        got = [a for a in alerts if a["labels"].get("alertname") == alertname]
        report.check(not got, f"{alertname} did not fire", f"{len(got)} notifications")

    # 4. The exporter's metrics match the README's Metrics section and the demo description.
    for expr, bounds in METRIC_CONTRACT:
        samples, err = prom_query(prom, expr)
        if err:
            report.check(False, f"metric {expr}", err)
        elif bounds is None:
            report.check(not samples, f"metric {expr} is absent",
                         f"present: {[round(v, 3) for _, v in samples]}")
        elif not samples:
            report.check(False, f"metric {expr} in [{bounds[0]}, {bounds[1]}]", "no data")
        else:
            bad = [(lbl.get("token"), v) for lbl, v in samples if not bounds[0] <= v <= bounds[1]]
            report.check(not bad, f"metric {expr} in [{bounds[0]}, {bounds[1]}]",
                         f"out of range: {bad}")
    for metric in PER_TOKEN_METRICS:
        samples, err = prom_query(prom, f"count by (token, provider) ({metric})")
        got = {(s[0].get("token"), s[0].get("provider")) for s in samples or []}
        missing = sorted(t for t, p in ALL_TOKENS.items() if (t, p) not in got)
        report.check(err is None and not missing, f"{metric} has a series for every demo token",
                     err or f"missing: {missing}")
    samples, err = prom_query(prom, "apitoken_info")
    bad = []
    for lbl, _ in samples or []:
        # configured demo tokens carry the custom `team` label; the implicit admin-key
        # token carries `org` instead
        custom = "org" if lbl.get("token") == "demo-org-admin-key" else "team"
        need = ["site", "expiry_source", custom]
        lacking = [k for k in need if not lbl.get(k)]
        if lacking:
            bad.append(f"{lbl.get('token')} lacks {lacking}")
        if lbl.get("expiry_source") not in ("provider", "org_inventory", "config", "created_at", "none"):
            bad.append(f"{lbl.get('token')} expiry_source={lbl.get('expiry_source')!r}")
        if any("@" in v for v in lbl.values()):
            bad.append(f"{lbl.get('token')} has an e-mail address in a label")
    report.check(err is None and samples and not bad,
                 "apitoken_info carries site, expiry_source and the custom team label",
                 err or "; ".join(bad) or "no data")
    for token, source in [("confluence-valid", "created_at"), ("jira-valid", "config"),
                          ("bitbucket-valid", "none"), ("github-valid", "provider"),
                          ("gitlab-valid", "provider")]:
        samples, err = prom_query(prom, f'apitoken_info{{token="{token}"}}')
        got = [s[0].get("expiry_source") for s in samples or []]
        report.check(got == [source], f'apitoken_info{{token="{token}"}} expiry_source="{source}"',
                     err or f"got {got}")

    # 5. Every dashboard expression evaluates, and returns data where the demo has some.
    missing_optional = set()
    for metric in OPTIONAL_METRICS:
        samples, err = prom_query(prom, f"count({metric})")
        if err is None and not samples:
            missing_optional.add(metric)
    if missing_optional:
        report.info("not emitted by the exporter yet (expressions reading them may be empty): "
                    + ", ".join(sorted(missing_optional)))
    stat_values = {}
    for path in sorted(glob.glob(os.path.join(dashboard_dir, "*.json"))):
        name = os.path.basename(path)
        seen = set()
        for panel, raw in dashboard_targets(path):
            if raw in seen:
                continue
            seen.add(raw)
            title = panel.get("title", "?")
            if panel.get("type") == "variable":
                expr = label_values_to_promql(grafana_to_promql(raw))
                if expr is None:
                    report.check(False, f"{name} {title}: unsupported variable query", raw)
                    continue
            else:
                expr = grafana_to_promql(raw)
            if "$" in expr:
                report.check(False, f"{name} [{title}] {raw}", "unsubstituted Grafana variable")
                continue
            samples, err = prom_query(prom, expr)
            waiting_for = sorted(m for m in missing_optional if m in raw)
            if err:
                report.check(False, f"{name} [{title}] {expr}", err)
            elif not samples and waiting_for:
                report.check(True, f"{name} [{title}] {expr} (evaluates; empty until the exporter "
                             f"emits {', '.join(waiting_for)})")
            else:
                report.check(bool(samples), f"{name} [{title}] {expr}", "no data")
                if panel.get("type") == "stat" and len(samples) == 1:
                    stat_values[title] = samples[0][1]

    # 6. The stat panels show what the demo contains.
    for title, want in EXPECTED_STATS.items():
        got = stat_values.get(title)
        report.check(got == want, f"stat panel '{title}' shows {want}", f"got {got}")

    # 7. HA: a second exporter with the same config, scraped as another instance of the job.
    check_replicas(report, prom, webhook_out)

    # 8. Routing: the route on `team` delivered the team's alerts to its own receiver.
    check_team_route(report, os.environ.get("E2E_TEAM_WEBHOOK_OUT"))

    # 9. The scenario: a revocation seen only in the organization inventory, and the flip.
    check_scenario(report, os.environ.get("E2E_SCENARIO_PROM"), webhook_out, started + timeout)

    log_dir = os.environ.get("E2E_LOG_DIR")
    if report.failed and log_dir:
        for name in ("exporter.log", "prometheus.log", "alertmanager.log", "sim.log",
                     "exporter-scenario.log", "prometheus-scenario.log"):
            path = os.path.join(log_dir, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    tail = f.readlines()[-20:]
                print(f"# ----- tail of {name}")
                for line in tail:
                    print("# " + line.rstrip("\n"))
    report.info(f"checks took {time.monotonic() - started:.0f}s")
    t0 = os.environ.get("E2E_T0")
    if t0:
        report.info(f"e2e took {time.time() - float(t0):.0f}s in total")
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 0 if report.failed == 0 else 1


def alert_identities(alerts, alertname, token):
    """The distinct label sets of the firing alerts (alertname, token) among `alerts`."""
    return {tuple(sorted(a["labels"].items())) for a in alerts
            if a.get("status") == "firing" and a["labels"].get("alertname") == alertname
            and a["labels"].get("token") == token}


def check_replicas(report, prom, webhook_out):
    targets, replica = os.environ.get("E2E_TARGETS_FILE"), os.environ.get("E2E_REPLICA")
    if not targets or not replica:
        report.check(False, "HA case: E2E_TARGETS_FILE and E2E_REPLICA are set")
        return
    with open(targets, encoding="utf-8") as f:
        current = json.load(f)
    current[0]["targets"].append(replica)
    with open(targets + ".tmp", "w", encoding="utf-8") as f:
        json.dump(current, f)
    os.replace(targets + ".tmp", targets)
    # Bounded wait until Prometheus has the replica's token and inventory series.
    deadline = time.monotonic() + 60
    ready = False
    while time.monotonic() < deadline and not ready:
        tokens, _ = prom_query(prom, f'count(apitoken_last_probe_timestamp_seconds{{instance="{replica}"}})')
        org, _ = prom_query(prom, f'count(apitoken_org_api_key_expiry_timestamp_seconds{{instance="{replica}"}})')
        ready = bool(tokens) and tokens[0][1] == len(ALL_TOKENS) and bool(org)
        if not ready:
            time.sleep(1)
    report.check(ready, f"HA: Prometheus scrapes the replica {replica} (all {len(ALL_TOKENS)} tokens and the inventory)")
    # Long enough for a per-replica alert of the replica to fire and reach the webhook:
    # `for:`, a few evaluation cycles, Alertmanager's group wait.
    time.sleep(float(os.environ.get("E2E_FOR_SECONDS", "10")) + 10)
    up, _ = prom_query(prom, 'count(up{job="apitoken-exporter"} == 1)')
    report.check(bool(up) and up[0][1] == 2, "HA: both replicas are up", f"got {up}")

    alerts = received_alerts(webhook_out)
    for alertname, token in EXPECTED_ALERTS:
        ids = alert_identities(alerts, alertname, token)
        report.check(len(ids) == 1, f"HA: exactly one {alertname} alert for {token} at the webhook",
                     f"{len(ids)}: " + " | ".join(",".join(f"{k}={v}" for k, v in i if k in ("instance", "pod"))
                                                 or "(no instance)" for i in sorted(ids)))
    # In Prometheus: per-token and org alerts carry no replica label and are not doubled.
    # ApiTokenProbeStale and the exporter alerts are per replica by design.
    per_replica = 'alertname!~"ApiTokenProbeStale|ApiTokenExporter.*"'
    doubled, err = prom_query(prom, f'count by (alertname, token) (ALERTS{{alertstate="firing", token!="", {per_replica}}}) > 1')
    report.check(err is None and not doubled, "HA: no per-token alert fires twice in Prometheus",
                 err or str([s[0] for s in doubled or []]))
    with_instance, err = prom_query(prom, f'ALERTS{{alertstate="firing", instance!="", {per_replica}}}')
    report.check(err is None and not with_instance, "HA: no per-token or org alert carries an instance label",
                 err or str(sorted({s[0].get("alertname") for s in with_instance or []})))
    org_doubled, err = prom_query(
        prom, 'count by (alertname, org, key_id, token_id) (ALERTS{alertstate="firing", org!=""}) > 1')
    report.check(err is None and not org_doubled, "HA: one alert per org key and org token",
                 err or str([s[0] for s in org_doubled or []]))
    for alertname in FORBIDDEN_ALERTNAMES:
        got = [a for a in received_alerts(webhook_out) if a["labels"].get("alertname") == alertname]
        report.check(not got, f"HA: {alertname} did not fire", f"{len(got)} notifications")


def scenario_ready(prom, pairs):
    """The scenario's alerts all reached the webhook and both lags are known."""
    if not all((name, token) in pairs for token, names in SCENARIO_ALERTS.items() for name in names):
        return False
    lags, _ = prom_query(prom, f'apitoken_revocation_lag_seconds{{token=~"{"|".join(SCENARIO_REVOKED)}"}}')
    return len(lags or []) == len(SCENARIO_REVOKED)


def parse_rfc3339(text):
    """Unix seconds of Alertmanager's `startsAt` (nanosecond fractions, `Z` or an offset)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text or "")
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.datetime.fromisoformat(m.group(1) + zone).timestamp()
    return base + (float("0." + m.group(2)) if m.group(2) else 0.0)


def prom_value(prom, expr):
    """The single value of an instant query, or None (no data, several, or an error)."""
    samples, _ = prom_query(prom, expr)
    return samples[0][1] if samples and len(samples) == 1 else None


def check_scenario(report, prom, webhook_out, deadline):
    """apitoken-sim --scenario alerts-2026 (sim/src/bin/apitoken-sim.rs), scraped by its own
    Prometheus with the same rules copy and Alertmanager: a revocation seen only in the
    organization inventory fires ApiTokenRevokedStillAccepted, and the flip fires
    ApiTokenAnonymousFallback and never ApiTokenInvalid."""
    if not prom:
        report.check(False, "scenario: E2E_SCENARIO_PROM is set")
        return
    grace = float(os.environ.get("E2E_REVOKED_GRACE", "5"))
    still_works_for = float(os.environ.get("E2E_SCENARIO_STILL_WORKS_FOR", "30"))
    # Bounded wait (the same E2E_TIMEOUT from the start of the checks; the scenario is
    # usually done long before the demo's checks are).
    waited = time.monotonic()
    while not scenario_ready(prom, firing_pairs(received_alerts(webhook_out))) and time.monotonic() < deadline:
        time.sleep(1)
    report.info(f"waited {time.monotonic() - waited:.0f}s more for the scenario")
    up = prom_value(prom, 'count(up{job="apitoken-exporter"} == 1)')
    report.check(up == 1, "scenario: its Prometheus scrapes the scenario's exporter (up == 1)", f"got {up}")

    # The webhook: exactly the expected alerts per token, with the token's labels.
    alerts = received_alerts(webhook_out)
    pairs = firing_pairs(alerts)
    for token, names in SCENARIO_ALERTS.items():
        for alertname in sorted(names):
            alert = pairs.get((alertname, token))
            problems = ["not received"] if alert is None else []
            if alert is not None:
                labels, ann = alert["labels"], alert.get("annotations", {})
                if labels.get("provider") != "jira" or labels.get("team") != SCENARIO_TEAM:
                    problems.append(f"labels {labels}")
                if labels.get("severity") not in ("warning", "critical"):
                    problems.append(f"severity label {labels.get('severity')!r}")
                if token not in ann.get("summary", "") or token not in ann.get("description", ""):
                    problems.append("summary/description do not name the token")
            report.check(not problems, f"scenario: webhook received {alertname} for {token}",
                         "; ".join(problems))
        got = sorted({a["labels"].get("alertname") for a in alerts if a["labels"].get("token") == token})
        report.check(set(got) == names, f"scenario: no other alert reached the webhook for {token}",
                     f"got {got}, want {sorted(names)}")
    quiet = f'{SCENARIO_CONTROL}|{SCENARIO_ADMIN_KEY}'
    seen, err = prom_query(prom, f'count by (alertname, token) (count_over_time(ALERTS{{token=~"{quiet}"}}[1h]))')
    report.check(err is None and not seen,
                 f"scenario: no alert was ever pending or firing in Prometheus for {SCENARIO_CONTROL} or {SCENARIO_ADMIN_KEY}",
                 err or str([s[0] for s in seen or []]))
    seen, err = prom_query(prom, f'count by (alertname) (count_over_time(ALERTS{{org="{SCENARIO_ORG}"}}[1h]))')
    report.check(err is None and not seen, f"scenario: no org alert for {SCENARIO_ORG}",
                 err or str([s[0] for s in seen or []]))

    # 1. Revoked in the inventory only: the series say so, and the alert fired in the window
    # the rule defines (after the grace, while the credential still worked).
    for token, entry in SCENARIO_REVOKED.items():
        revoked = prom_value(prom, f'apitoken_revoked_timestamp_seconds{{token="{token}", source="org_inventory"}}')
        report.check(revoked is not None,
                     f'scenario: apitoken_revoked_timestamp_seconds{{token="{token}", source="org_inventory"}} is present')
        others, err = prom_query(prom, f'count_over_time(apitoken_revoked_timestamp_seconds{{token="{token}", source!="org_inventory"}}[1h])')
        report.check(err is None and not others,
                     f"scenario: {token} was never revoked by any other source (no revoked_at in the config)",
                     err or str([s[0] for s in others or []]))
        lag = prom_value(prom, f'apitoken_revocation_lag_seconds{{token="{token}"}}')
        low, high = still_works_for - 3, still_works_for + 20
        report.check(lag is not None and low <= lag <= high,
                     f"scenario: apitoken_revocation_lag_seconds{{token=\"{token}\"}} in [{low:g}, {high:g}]",
                     f"got {lag}")
        alert = pairs.get(("ApiTokenRevokedStillAccepted", token))
        starts = parse_rfc3339(alert.get("startsAt")) if alert else None
        ok = starts is not None and revoked is not None and revoked + grace <= starts <= revoked + still_works_for + 5
        report.check(ok, f"scenario: ApiTokenRevokedStillAccepted for {token} started after the {grace:g}s "
                     "grace and before the credential died",
                     f"startsAt {starts}, revoked at {revoked}")
        before = prom_value(prom, f'count(count_over_time(apitoken_org_token_expiry_timestamp_seconds{{org="{SCENARIO_ORG}", token_id="{entry}", status="ALLOWED"}}[1h]))')
        report.check(before == 1, f"scenario: the inventory listed {entry} ALLOWED before the revocation",
                     f"got {before}")
    blocked = prom_value(prom, f'count(apitoken_org_token_expiry_timestamp_seconds{{org="{SCENARIO_ORG}", token_id="tok-blocked", status="BLOCKED"}})')
    report.check(blocked == 1, "scenario: the inventory lists tok-blocked BLOCKED now", f"got {blocked}")
    gone, err = prom_query(prom, f'apitoken_org_token_expiry_timestamp_seconds{{org="{SCENARIO_ORG}", token_id="tok-deleted"}}')
    report.check(err is None and not gone, "scenario: tok-deleted is gone from the inventory",
                 err or str([s[0] for s in gone or []]))
    never, err = prom_query(prom, f'count_over_time(apitoken_revoked_timestamp_seconds{{token=~"{SCENARIO_FLIP}|{SCENARIO_CONTROL}"}}[1h])')
    report.check(err is None and not never, f"scenario: {SCENARIO_FLIP} and {SCENARIO_CONTROL} were never revoked",
                 err or str([s[0] for s in never or []]))
    valid = prom_value(prom, f'min_over_time(apitoken_valid{{token="{SCENARIO_CONTROL}"}}[1h])')
    report.check(valid == 1, f"scenario: {SCENARIO_CONTROL} (linked, its entry ALLOWED) stayed valid", f"got {valid}")

    # 2. The flip: the side probe failed every second request, yet the token stayed
    # "anonymous" across the whole run, and was never called rejected.
    flip = f'token="{SCENARIO_FLIP}"'
    for expr, low, name in [
        (f"min_over_time(apitoken_anonymous_fallback{{{flip}}}[1h])", 1, "apitoken_anonymous_fallback stayed 1 across the run"),
        (f"count_over_time(apitoken_anonymous_fallback{{{flip}}}[1h])", 10, "... over at least 10 samples"),
        (f'apitoken_probe_errors_total{{{flip}, reason="rate_limited"}}', 2, "its side probe was rate-limited (probe errors, reason rate_limited)"),
        (f'apitoken_probes_total{{{flip}, result="anonymous"}}', 2, "its probes concluded anonymous"),
    ]:
        got = prom_value(prom, expr)
        ok = got is not None and got >= low and (low != 1 or got == 1)
        report.check(ok, f"scenario: {SCENARIO_FLIP}: {name} ({expr})", f"got {got}")
    valid = prom_value(prom, f"max_over_time(apitoken_valid{{{flip}}}[1h])")
    report.check(valid == 0, f"scenario: {SCENARIO_FLIP}: apitoken_valid stayed 0", f"got {valid}")
    rejected, err = prom_query(prom, f'apitoken_probes_total{{{flip}, result="rejected"}} > 0')
    report.check(err is None and not rejected, f"scenario: {SCENARIO_FLIP}: no probe concluded rejected",
                 err or str([s[1] for s in rejected or []]))
    invalid, err = prom_query(prom, f'count_over_time(ALERTS{{alertname="ApiTokenInvalid", {flip}}}[1h])')
    report.check(err is None and not invalid,
                 f"scenario: ApiTokenInvalid was never pending or firing in Prometheus for {SCENARIO_FLIP}",
                 err or "it was")

    # 3. The scenario's secrets appear nowhere: logs, configs, webhooks, /metrics, the status
    # page, Prometheus' series.
    check_scenario_secrets(report, prom)


def check_scenario_secrets(report, prom):
    path = os.environ.get("E2E_SCENARIO_SECRETS_FILE")
    if not path:
        report.check(False, "scenario: E2E_SCENARIO_SECRETS_FILE is set")
        return
    with open(path, encoding="utf-8") as f:
        secrets = [line.strip() for line in f if line.strip()]
    texts = {}
    log_dir = os.environ.get("E2E_LOG_DIR", "")
    for name in sorted(glob.glob(os.path.join(log_dir, "*"))):
        if os.path.isfile(name) and os.path.abspath(name) != os.path.abspath(path):
            with open(name, encoding="utf-8", errors="replace") as f:
                texts[os.path.basename(name)] = f.read()
    exporter = os.environ.get("E2E_SCENARIO_EXPORTER")
    for what, url in [("/metrics", f"http://{exporter}/metrics"), ("status page", f"http://{exporter}/"),
                      ("Prometheus series", prom.rstrip("/") + "/api/v1/series?"
                       + urllib.parse.urlencode({"match[]": '{job="apitoken-exporter"}'}))]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                texts[what] = resp.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError) as err:
            texts[what] = ""
            report.check(False, f"scenario: read {what} for the secrets check", str(err))
    leaks = sorted(where for where, text in texts.items() if any(s in text for s in secrets))
    report.check(len(secrets) == 5 and not leaks,
                 f"scenario: no secret in {len(texts)} logs, configs, webhook payloads and pages",
                 f"{len(secrets)} secrets; found in {leaks}")


def check_team_route(report, team_webhook_out):
    if not team_webhook_out:
        report.check(False, "routing: E2E_TEAM_WEBHOOK_OUT is set")
        return
    alerts = received_alerts(team_webhook_out)
    pairs = firing_pairs(alerts)
    for alertname, token in EXPECTED_ALERTS:
        alert = pairs.get((alertname, token))
        report.check(alert is not None and alert["labels"].get("team") == DEMO_TEAM,
                     f'routing: the route on team="{DEMO_TEAM}" delivered {alertname} for {token} to the team receiver',
                     "not received" if alert is None else f"labels {alert['labels']}")
    strays = sorted({(a["labels"].get("alertname"), a["labels"].get("team")) for a in alerts
                     if a["labels"].get("team") != DEMO_TEAM})
    report.check(not strays, "routing: the team receiver got only the team's alerts", str(strays))


def main(argv):
    commands = {
        "free-ports": (cmd_free_ports, 1),
        "wait-http": (cmd_wait_http, (2, 3)),
        "rewrite-rules": (cmd_rewrite_rules, 4),
        "webhook": (cmd_webhook, 3),
        "check": (cmd_check, 4),
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    func, nargs = commands[argv[1]]
    if len(argv) - 2 not in (nargs if isinstance(nargs, tuple) else (nargs,)):
        print(__doc__, file=sys.stderr)
        return 2
    return func(*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
