#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs the tools the tests need,
# then runs every suite. Any failure fails the whole run; nothing is skipped when a tool
# is missing (the install step fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test tools (Debian packages, pinned PyPI packages)"
bash scripts/install-test-deps.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
# The full soak's target has `test = false`, so --all-targets leaves it out: lint it apart.
cargo clippy --locked --test soak -- -D warnings

# The simulator (sim/, crate apitoken-sim) reaches the exporter only through the default
# feature `demo`. Without it the exporter must build, lint clean and not depend on it.
# Before `cargo build` below: both write target/debug/apitoken_exporter, and the
# end-to-end suites need the default (demo) build.
step "without the demo feature: build, clippy, no apitoken-sim in the dependency tree"
cargo build --locked --no-default-features
cargo clippy --locked --no-default-features -- -D warnings
tree_default=$(cargo tree --locked -e normal -p apitoken-exporter)
tree_no_demo=$(cargo tree --locked --no-default-features -e normal -p apitoken-exporter)
if ! grep -q 'apitoken-sim v' <<<"$tree_default"; then
  echo "FAIL: the default build's tree lists no apitoken-sim, so this check proves nothing:" >&2
  echo "$tree_default" >&2
  exit 1
fi
if grep -q 'apitoken-sim' <<<"$tree_no_demo"; then
  echo "FAIL: apitoken-exporter built with --no-default-features depends on apitoken-sim:" >&2
  echo "$tree_no_demo" >&2
  exit 1
fi
echo "ok: --no-default-features builds the exporter without apitoken-sim"

step "dependency hygiene (cargo deny: licenses, bans, sources)"
bash scripts/deny.sh

step "cargo build"
cargo build --locked

step "cargo test --workspace (the exporter and the simulator crate)"
cargo test --locked --workspace --no-fail-fast

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
