#!/usr/bin/env bash
# Static checks of the shipped alert rules and dashboards (both rendered from mixin/):
#   1. promtool check rules   alerts/apitoken.rules.yml
#   2. promtool test rules    alerts/apitoken.rules.test.yml
#   3. promtool test rules    alerts/pins.test.yml (every alert's `for:` pinned, and the cases
#                             each alert must not fire for; docs/testing-alerts.md)
#   4. promtool test rules    mixin/tests/custom-config.test.yml, against the rules rendered
#                             with mixin/tests/custom-config.jsonnet (another job name and
#                             routing label)
#   5. structure of every dashboards/*.json (python3 stdlib)
# Exits non-zero if any check fails. A missing promtool or jsonnet is a failure, never a
# skip: scripts/install-test-deps.sh installs them first. (scripts/render-mixin.sh --check,
# a step of its own in scripts/test.sh, checks that the committed files are the mixin's.)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

passed=0
failed=0
result() { # name, exit status
  if [ "$2" -eq 0 ]; then
    echo "ok   - $1"
    passed=$((passed + 1))
  else
    echo "FAIL - $1"
    failed=$((failed + 1))
  fi
}

if ! bash scripts/install-test-deps.sh; then
  echo "FAIL - scripts/install-test-deps.sh could not install promtool and jsonnet" >&2
  exit 1
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL - promtool not found on PATH" >&2
  exit 1
fi

promtool check rules alerts/apitoken.rules.yml
result "promtool check rules alerts/apitoken.rules.yml" $?

# promtool resolves rule_files relative to the test file.
promtool test rules alerts/apitoken.rules.test.yml
result "promtool test rules alerts/apitoken.rules.test.yml" $?

promtool test rules alerts/pins.test.yml
result "promtool test rules alerts/pins.test.yml" $?

custom="$(mktemp -d)"
trap 'rm -rf "$custom"' EXIT
bash scripts/render-mixin.sh --out "$custom" --config "$(cat mixin/tests/custom-config.jsonnet)" >/dev/null \
  && cp mixin/tests/custom-config.test.yml "$custom/alerts/" \
  && promtool test rules "$custom/alerts/custom-config.test.yml"
result "promtool test rules mixin/tests/custom-config.test.yml (rules rendered with another job name)" $?

shopt -s nullglob
dashboards=(dashboards/*.json)
if [ "${#dashboards[@]}" -eq 0 ]; then
  result "dashboards/*.json present" 1
fi
for dash in "${dashboards[@]}"; do
  python3 - "$dash" <<'PY'
import json
import sys

path = sys.argv[1]
problems = []
try:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
except (OSError, ValueError) as err:
    print(f"{path}: not valid JSON: {err}")
    sys.exit(1)

if not isinstance(dash, dict):
    print(f"{path}: top level is not an object")
    sys.exit(1)
if not dash.get("uid"):
    problems.append("uid is not set")
if not dash.get("title"):
    problems.append("title is not set")
if not isinstance(dash.get("schemaVersion"), int):
    problems.append("schemaVersion is missing")

variables = dash.get("templating", {}).get("list", [])
ds_vars = [v for v in variables if v.get("name") == "datasource"]
if not ds_vars:
    problems.append("templating variable 'datasource' is missing")
elif ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
    problems.append("variable 'datasource' must be type datasource, query prometheus")


def all_panels(panels):
    # Rows may nest their panels (collapsed rows keep them in row["panels"]).
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def uses_variable(ds):
    # Either the object form {"type": "prometheus", "uid": "${datasource}"} or the legacy string.
    if isinstance(ds, dict):
        return ds.get("uid") in ("${datasource}", "$datasource")
    return ds in ("${datasource}", "$datasource")


seen_ids = {}
panels = list(all_panels(dash.get("panels", [])))
if not panels:
    problems.append("no panels")
for panel in panels:
    pid = panel.get("id")
    name = f"panel id={pid} {panel.get('title')!r}"
    if pid is None:
        problems.append(f"{name}: no id")
    elif pid in seen_ids:
        problems.append(f"{name}: duplicate id (also {seen_ids[pid]!r})")
    else:
        seen_ids[pid] = panel.get("title")
    if not str(panel.get("title", "")).strip():
        problems.append(f"{name}: no title")
    if panel.get("type") != "row" and "datasource" in panel and not uses_variable(panel["datasource"]):
        problems.append(f"{name}: panel datasource is {panel['datasource']!r}, not ${{datasource}}")
    for target in panel.get("targets", []):
        if not uses_variable(target.get("datasource")):
            problems.append(
                f"{name} target {target.get('refId')}: datasource is "
                f"{target.get('datasource')!r}, not ${{datasource}}")
        if not str(target.get("expr", "")).strip():
            problems.append(f"{name} target {target.get('refId')}: empty expr")
    if panel.get("type") not in ("row", "text") and not panel.get("targets"):
        problems.append(f"{name}: no targets")

for problem in problems:
    print(f"{path}: {problem}")
sys.exit(1 if problems else 0)
PY
  result "dashboard structure $dash" $?
done

echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
