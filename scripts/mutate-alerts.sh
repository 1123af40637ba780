#!/usr/bin/env bash
# Mutation check of the alert tests (docs/testing-alerts.md): breaks alerts/apitoken.rules.yml
# on purpose, in a temporary copy, one mutation at a time, and runs
# `promtool test rules alerts/pins.test.yml` against each broken copy. A mutation is caught
# when promtool fails AND the failing tests include the one named for it below. Prints, per
# mutation, the tests that failed. Exits 0 only if every mutation was caught.
#
# The mixin and the committed rules are never touched. Needs promtool and python3
# (scripts/install-test-deps.sh installs promtool).
#
# Usage: scripts/mutate-alerts.sh [-v]     (-v: also print promtool's output for each mutant)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
verbose=0
[ "${1:-}" = "-v" ] && verbose=1

RULES=alerts/apitoken.rules.yml
PINS=alerts/pins.test.yml
for f in "$RULES" "$PINS"; do
  [ -f "$f" ] || { echo "mutate-alerts: $f not found" >&2; exit 2; }
done
command -v promtool >/dev/null 2>&1 || { echo "mutate-alerts: promtool not on PATH (scripts/install-test-deps.sh)" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# mutate NAME ALERT REGEX REPLACEMENT > rules: applies the Python regex (multi-line mode) to
# the rule of ALERT only; fails unless it matches at least once. REPLACEMENT "" deletes.
mutate() {
  python3 - "$RULES" "$2" "$3" "$4" <<'PY'
import re
import sys

path, alert, pattern, replacement = sys.argv[1:5]
text = open(path, encoding="utf-8").read()
# Rules start at `      - alert: "Name"`; split keeping the markers.
parts = re.split(r'(?m)^(?=      - alert: ")', text)
hits = 0
for i, part in enumerate(parts):
    if part.startswith(f'      - alert: "{alert}"\n'):
        parts[i], n = re.subn(pattern, replacement, part, flags=re.M)
        hits += n
if hits == 0:
    sys.exit(f"mutation matched nothing in rule {alert}: {pattern}")
sys.stdout.write("".join(parts))
PY
}

# Failing test names in promtool's output (`    name: <test name>,`).
failed_tests() {
  sed -n 's/^    name: \(.*\),$/\1/p' "$1" | sort -u
}

# Baseline: the unmutated rules must pass, or every mutation would look caught.
mkdir -p "$tmp/base"
cp "$RULES" "$PINS" "$tmp/base/"
if ! promtool test rules "$tmp/base/pins.test.yml" >"$tmp/base/out" 2>&1; then
  cat "$tmp/base/out"
  echo "mutate-alerts: $PINS fails on the unmutated rules; fix that first" >&2
  exit 2
fi

caught=0
missed=0
# id | alert | description | regex | replacement | expected failing tests (prefixes, ';'-separated)
mutations=(
  'M1|ApiTokenExpired|for: 5m -> 1h|^(\s*for: )"5m"$|\1"1h"|pin ApiTokenExpired for 5m:'
  'M2|ApiTokenExpiringCritical|for: 15m -> 1h|^(\s*for: )"15m"$|\1"1h"|pin ApiTokenExpiringCritical for 15m:'
  'M3|AtlassianOrgTokenExpiringSoon|the "> time()" guard removed|^\s*and apitoken_org_token_expiry_timestamp_seconds\{[^}]*\} > time\(\)\n||AtlassianOrgTokenExpiringSoon does not fire for an already-expired org token'
  'M4|AtlassianOrgTokenUnused|the BLOCKED/REVOKED status filter removed|, status!~"[^"]*"||AtlassianOrgTokenUnused does not fire for a BLOCKED org token;AtlassianOrgTokenUnused does not fire for a REVOKED org token'
)
for m in "${mutations[@]}"; do
  IFS='|' read -r id alert what regex repl expected <<<"$m"
  dir="$tmp/$id"
  mkdir -p "$dir"
  cp "$PINS" "$dir/"
  echo "== $id $alert: $what"
  if ! mutate "$id" "$alert" "$regex" "$repl" >"$dir/apitoken.rules.yml"; then
    echo "   NOT APPLIED (the rules changed shape; update this script)"
    missed=$((missed + 1))
    continue
  fi
  diff -u "$RULES" "$dir/apitoken.rules.yml" | sed -n 's/^\([-+][^-+]\)/   \1/p'
  # A mutant promtool rejects outright would be caught for the wrong reason.
  if ! promtool check rules "$dir/apitoken.rules.yml" >"$dir/check" 2>&1; then
    cat "$dir/check"
    echo "   INVALID MUTANT (promtool check rules rejects it)"
    missed=$((missed + 1))
    continue
  fi
  promtool test rules "$dir/pins.test.yml" >"$dir/out" 2>&1
  rc=$?
  [ "$verbose" -eq 1 ] && sed 's/^/   | /' "$dir/out"
  failing="$(failed_tests "$dir/out")"
  ok=1
  [ "$rc" -ne 0 ] || ok=0
  IFS=';' read -ra wants <<<"$expected"
  for want in "${wants[@]}"; do
    if ! grep -qF -- "$want" <<<"$failing"; then
      ok=0
      echo "   expected a failure of: $want"
    fi
  done
  if [ -n "$failing" ]; then
    while IFS= read -r t; do echo "   failed: $t"; done <<<"$failing"
  fi
  if [ "$ok" -eq 1 ]; then
    echo "   CAUGHT"
    caught=$((caught + 1))
  else
    echo "   MISSED (promtool test rules $PINS: exit $rc)"
    missed=$((missed + 1))
  fi
done

echo "mutate-alerts: $caught caught, $missed missed of ${#mutations[@]}"
[ "$missed" -eq 0 ]
