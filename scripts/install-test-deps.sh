#!/usr/bin/env bash
# Installs the tools the alert-rule, dashboard, mixin, Kubernetes and end-to-end tests need:
# Debian packages, and pinned Python packages from PyPI. Idempotent: does nothing when every
# command is already on PATH and every Python package is at its pinned version.
#
# To add a tool, append "command:debian-package" to REQUIRED, or "module:package==version"
# to PYTHON_REQUIRED below. (kubectl is not installed here: Debian's kubernetes-client is
# too old for the kustomize features the Kubernetes check needs; tests/kubernetes/check.sh
# says so when the kubectl on PATH is missing or too old.)
set -euo pipefail

# python-module:pypi-package==version, installed with `python3 -m pip`
PYTHON_REQUIRED=(
  "kubernetes_validate:kubernetes-validate==1.32.0"
)

install_python_packages() {
  local entry module spec want have missing=()
  for entry in "${PYTHON_REQUIRED[@]}"; do
    module="${entry%%:*}"
    spec="${entry#*:}"
    want="${spec#*==}"
    have="$(python3 -c "import importlib.metadata as m; print(m.version('${spec%%==*}'))" 2>/dev/null || true)"
    if [ "$have" != "$want" ] || ! python3 -c "import $module" 2>/dev/null; then
      missing+=("$spec")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: python packages present (${PYTHON_REQUIRED[*]})"
    return 0
  fi
  echo "install-test-deps: installing python packages ${missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
  for entry in "${PYTHON_REQUIRED[@]}"; do
    module="${entry%%:*}"
    if ! python3 -c "import $module" 2>/dev/null; then
      echo "install-test-deps: python module '$module' still missing after install" >&2
      return 1
    fi
  done
}

# command-name:debian-package (Debian names the Alertmanager binary prometheus-alertmanager)
REQUIRED=(
  "promtool:prometheus"
  "prometheus:prometheus"
  "prometheus-alertmanager:prometheus-alertmanager"
  "amtool:prometheus-alertmanager"
  "chromium:chromium"
  "jsonnet:jsonnet"
  # building jemalloc (the exporter's allocator, tikv-jemalloc-sys) runs make
  "make:make"
)

missing_pkgs=()
for entry in "${REQUIRED[@]}"; do
  cmd="${entry%%:*}"
  pkg="${entry#*:}"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    # de-duplicate: several commands can come from one package
    case " ${missing_pkgs[*]-} " in
      *" $pkg "*) ;;
      *) missing_pkgs+=("$pkg") ;;
    esac
  fi
done

if [ "${#missing_pkgs[@]}" -eq 0 ]; then
  echo "install-test-deps: all present (${REQUIRED[*]})"
  install_python_packages
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: need root to install: ${missing_pkgs[*]}" >&2
  exit 1
fi

# Debian maintainer scripts try to start the packaged services (prometheus, alertmanager,
# node-exporter). The tests start their own instances on free loopback ports, so forbid
# service starts for the duration of the install. Only remove the policy file if we made it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# written by install-test-deps.sh: no service starts during install\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  created_policy=1
fi
cleanup() {
  if [ "$created_policy" -eq 1 ]; then
    rm -f "$POLICY"
  fi
}
trap cleanup EXIT

echo "install-test-deps: installing ${missing_pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing_pkgs[@]}"

# Verify: a package that installed but does not provide the command is a failure too.
status=0
for entry in "${REQUIRED[@]}"; do
  cmd="${entry%%:*}"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "install-test-deps: '$cmd' still missing after install" >&2
    status=1
  fi
done
install_python_packages || status=1
exit "$status"
