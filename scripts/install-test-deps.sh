#!/usr/bin/env bash
# Installs the tools the alert-rule, dashboard and end-to-end tests need, from Debian's
# packages. Idempotent: does nothing when every command is already on PATH.
#
# To add a tool, append "command:debian-package" to REQUIRED below.
set -euo pipefail

# command-name:debian-package (Debian names the Alertmanager binary prometheus-alertmanager)
REQUIRED=(
  "promtool:prometheus"
  "prometheus:prometheus"
  "prometheus-alertmanager:prometheus-alertmanager"
  "amtool:prometheus-alertmanager"
  "chromium:chromium"
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
exit "$status"
