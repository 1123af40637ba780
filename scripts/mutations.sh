#!/usr/bin/env bash
# Mutation checks (docs/testing.md): each mutation is applied to a copy of the repository,
# and the test that claims to catch it must pass on the unmutated copy and fail on the
# mutated one. The working tree is never modified.
#
#   scripts/mutations.sh          # M1, M2 and G
#   scripts/mutations.sh M2       # only M2
#
# The copy lives in target/mutations/repo and builds into target/mutations/target (not the
# main target/: the mutated binary must never replace target/debug/apitoken_exporter). The
# first run compiles the dependencies once; later runs are incremental. Debug builds only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/mutations"
copy="$work/repo"
export CARGO_TARGET_DIR="$work/target"

# Each mutation edits the copy (run in it) and then checks that the edit took: a change of
# the code it expects makes the script fail instead of reporting a vacuous result.

# M1: a dropped Secret is no longer wiped (Drop's body emptied).
test_M1=secrets::dropping_a_secret_wipes_it_before_its_memory_is_freed
mutate_M1() {
  sed -i '/^impl Drop for Secret {/,/^}/{/^ *self\.zeroize();$/d;}' src/secret.rs
  ! grep -q '^ *self\.zeroize();$' src/secret.rs
}

# M2: a reload restarts every token, changed or not.
test_M2=scheduling::reload_keeps_the_schedule_and_state_of_unchanged_tokens
mutate_M2() {
  sed -i 's/\(let restart = self\.new_client || old\.as_ref()\.is_none_or(|o| \*o != new)\);/\1 || true;/' \
    src/scheduler/mod.rs
  grep -q 'is_none_or(|o| \*o != new) || true;$' src/scheduler/mod.rs
}

# G: one gauge of the golden /metrics differs from what the demo serves.
test_G=golden::demo_metrics_match_the_golden_file
mutate_G() {
  sed -i 's/^\(apitoken_valid{token="jira-valid",provider="jira"}\) 1$/\1 0/' tests/it/golden/demo.metrics
  grep -q '^apitoken_valid{token="jira-valid",provider="jira"} 0$' tests/it/golden/demo.metrics
}

ids=("$@")
[ ${#ids[@]} -gt 0 ] || ids=(M1 M2 G)

# A fresh copy of the tracked and the untracked-but-not-ignored files, as they are now.
sync_copy() {
  rm -rf "$copy"
  mkdir -p "$copy"
  (
    cd "$root"
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
      xargs -0 cp --parents -t "$copy"
  )
}

run_test() { # the one test, in the copy; its output in $work/last.log
  (cd "$copy" && cargo test --locked --test it -- --exact "$1" >"$work/last.log" 2>&1)
}

failures=0
for id in "${ids[@]}"; do
  test_var="test_$id"
  if [ -z "${!test_var:-}" ]; then
    echo "unknown mutation $id (known: M1 M2 G)" >&2
    exit 2
  fi
  test="${!test_var}"
  printf '==> %s: %s\n' "$id" "$test"
  sync_copy
  if ! run_test "$test"; then
    echo "    FAIL: the test fails without the mutation (see $work/last.log)"
    failures=$((failures + 1))
    continue
  fi
  if ! (cd "$copy" && "mutate_$id"); then
    echo "    FAIL: the mutation did not apply (has the code changed?)"
    failures=$((failures + 1))
    continue
  fi
  if run_test "$test"; then
    echo "    FAIL: the test still passes with the mutation"
    failures=$((failures + 1))
  else
    echo "    caught: $test failed"
    grep -m1 -A3 "panicked at" "$work/last.log" | tail -n +2 | sed 's/^/    /'
  fi
done
rm -rf "$copy"
if [ "$failures" -gt 0 ]; then
  echo "$failures mutation check(s) failed"
  exit 1
fi
echo "every mutation was caught"
