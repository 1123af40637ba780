#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs the tools the tests need,
# then runs every suite. Any failure fails the whole run; nothing is skipped when a tool
# is missing (the install step fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test tools (Debian packages, pinned PyPI packages)"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "dependency hygiene (cargo deny: licenses, bans, sources)"
bash scripts/deny.sh

step "cargo build"
cargo build --locked

step "cargo test"
cargo test --locked --no-fail-fast

step "monitoring mixin: the committed rules, dashboards and Kubernetes manifests are its output (jsonnet)"
bash scripts/render-mixin.sh --check

step "alert rules and dashboards (promtool check/test rules, dashboard structure)"
bash alerts/check.sh

step "Kubernetes manifests (kubectl kustomize, kubernetes-validate schemas, PrometheusRule and dashboard ConfigMap)"
bash tests/kubernetes/check.sh

for t in tests/e2e/*.sh; do
  step "end-to-end: $t"
  APITOKEN_EXPORTER_BIN="$PWD/target/debug/apitoken_exporter" bash "$t"
done

step "all test suites passed"
