#!/usr/bin/env bash
# Renders the monitoring mixin (mixin/) into the files it owns:
#   alerts/apitoken.rules.yml, dashboards/*.json,
#   deploy/kubernetes/base/prometheusrule.yaml, deploy/kubernetes/base/grafana-dashboards.yaml
#
#   scripts/render-mixin.sh                      write them into the repository
#   scripts/render-mixin.sh --check              render to a temp dir and fail (exit 1, with the
#                                                diff) if a committed file differs or is missing
#   scripts/render-mixin.sh --out DIR [--config JSONNET]
#                                                render into DIR, with config.libsonnet settings
#                                                overridden, e.g.
#       --config '{jobSelector: "job=\"tokens\"", routingLabels: ["team", "owner", "squad"]}'
#
# Needs `jsonnet` (scripts/install-test-deps.sh installs Debian's; the committed files are
# rendered with jsonnet 0.18).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode=write
out=""
config="{}"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check ;;
    --out) out="${2:?--out needs a directory}"; mode=out; shift ;;
    --config) config="${2:?--config needs a jsonnet object}"; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "render-mixin: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v jsonnet >/dev/null 2>&1; then
  echo "render-mixin: jsonnet not found (run scripts/install-test-deps.sh)" >&2
  exit 1
fi

render() { # into directory $1
  local dir="$1" path
  # jsonnet -m does not create directories: make those of every output first.
  while IFS= read -r path; do
    mkdir -p "$dir/$(dirname "$path")"
  done < <(jsonnet -S --tla-code "config=$config" -e \
    'function(config) std.join("\n", std.objectFields((import "mixin/render.jsonnet")(config)))')
  jsonnet -S -m "$dir" --tla-code "config=$config" mixin/render.jsonnet >/dev/null
}

case "$mode" in
  out)
    mkdir -p "$out"
    render "$out"
    echo "render-mixin: rendered into $out"
    ;;
  write)
    render "$ROOT"
    echo "render-mixin: rendered into the repository"
    ;;
  check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    render "$tmp"
    status=0
    while IFS= read -r -d '' file; do
      rel="${file#"$tmp"/}"
      if [ ! -f "$rel" ]; then
        echo "FAIL - $rel is missing: run scripts/render-mixin.sh and commit it"
        status=1
      elif ! diff -u "$rel" "$file" >"$tmp/.diff"; then
        echo "FAIL - $rel differs from the mixin's output (run scripts/render-mixin.sh; do not edit it by hand):"
        head -n 60 "$tmp/.diff"
        status=1
      else
        echo "ok   - $rel is the mixin's output"
      fi
    done < <(find "$tmp" -type f ! -name .diff -print0 | sort -z)
    # A dashboard in dashboards/ that the mixin does not render would not be kept up to date.
    for file in dashboards/*.json; do
      if [ ! -f "$tmp/$file" ]; then
        echo "FAIL - $file is not rendered by the mixin: add it to mixin/dashboards/"
        status=1
      fi
    done
    exit "$status"
    ;;
esac
