#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/kubernetes/ (docs/kubernetes.md):
#   1. kubectl kustomize builds the base and overlays/ha (kustomize v5 or later);
#   2. tests/kubernetes/check_manifests.py validates the core kinds against the Kubernetes
#      1.32 schemas of the PyPI package kubernetes-validate (strict: unknown fields fail),
#      checks the hardening, probes, mounts and selectors, that the PrometheusRule's groups
#      equal alerts/apitoken.rules.yml and the dashboard ConfigMap holds
#      dashboards/apitoken-overview.json, and the HA overlay's replicas and anti-affinity.
# A missing or too old kubectl, or a kubernetes-validate that cannot be installed, is a
# failure, never a skip. kubectl is not installed by scripts/install-test-deps.sh (Debian's
# kubernetes-client, 1.20, embeds a kustomize too old for this base).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
MIN_KUSTOMIZE_MAJOR=5

fail_setup() {
  echo "FAIL - setup: $*"
  echo "0 passed, 1 failed"
  exit 1
}

if ! bash scripts/install-test-deps.sh >/dev/null; then
  fail_setup "scripts/install-test-deps.sh failed (kubernetes-validate)"
fi
KUBECTL="${KUBECTL:-kubectl}"
if ! command -v "$KUBECTL" >/dev/null 2>&1; then
  fail_setup "kubectl not found on PATH: install kubectl 1.27 or later (kustomize v$MIN_KUSTOMIZE_MAJOR), e.g. /usr/bin/kubectl"
fi
version_json="$("$KUBECTL" version --client -o json 2>/dev/null)" \
  || fail_setup "'$KUBECTL version --client -o json' failed"
kustomize_version="$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("kustomizeVersion", ""))' <<<"$version_json")"
kustomize_major="$(sed -E 's/^v?([0-9]+).*/\1/' <<<"$kustomize_version")"
if ! [[ "$kustomize_major" =~ ^[0-9]+$ ]] || [ "$kustomize_major" -lt "$MIN_KUSTOMIZE_MAJOR" ]; then
  fail_setup "$(command -v "$KUBECTL") embeds kustomize '${kustomize_version:-unknown}'; need v$MIN_KUSTOMIZE_MAJOR or later (kubectl 1.27+; Debian's kubernetes-client 1.20 is too old)"
fi
echo "# $(command -v "$KUBECTL"): kustomize $kustomize_version"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/ha; do
  out="$TMP/$(basename "$dir").yaml"
  if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$TMP/kustomize.err"; then
    echo "FAIL - kubectl kustomize $dir"
    cat "$TMP/kustomize.err"
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "ok   - kubectl kustomize $dir"
done

python3 tests/kubernetes/check_manifests.py "$TMP/base.yaml" "$TMP/ha.yaml"
