// Every file the mixin renders, by path relative to the repository root. Used by
// scripts/render-mixin.sh as `jsonnet -S -m OUTDIR render.jsonnet`; the top-level argument
// `config` (e.g. --tla-code 'config={jobSelector: "job=\"tokens\""}') overrides
// config.libsonnet.
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  local generated = '# Generated from mixin/ by scripts/render-mixin.sh: edit the mixin, not this file.\n';
  local yaml(value) = std.manifestYamlDoc(value, indent_array_in_object=true, quote_keys=false) + '\n';
  local json(value) = (import 'lib/manifest.libsonnet').json(value) + '\n';
  local k8sLabels = {
    'app.kubernetes.io/name': 'apitoken-exporter',
    'app.kubernetes.io/part-of': 'apitoken-exporter',
  };
  local files = {
    'alerts/apitoken.rules.yml':
      '# Alert rules for apitoken-exporter (docs/alerts.md).\n#\n' + generated
      + '# Load with `rule_files: [apitoken.rules.yml]` in prometheus.yml. Check and test with\n'
      + '# `alerts/check.sh` (promtool check rules + promtool test rules).\n'
      + yaml(mixin.prometheusAlerts),

    // The same rules for the Prometheus Operator (docs/kubernetes.md).
    'deploy/kubernetes/base/prometheusrule.yaml':
      generated + yaml({
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'PrometheusRule',
        metadata: { name: 'apitoken-exporter', labels: k8sLabels },
        spec: mixin.prometheusAlerts,
      }),

    // The dashboards for the Grafana sidecar, which loads every ConfigMap labelled
    // grafana_dashboard (the Grafana Helm chart's default label).
    'deploy/kubernetes/base/grafana-dashboards.yaml':
      generated + yaml({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'apitoken-exporter-dashboards',
          labels: k8sLabels { grafana_dashboard: '1' },
        },
        data: {
          [name]: json(mixin.grafanaDashboards[name])
          for name in std.objectFields(mixin.grafanaDashboards)
        },
      }),
  } + {
    ['dashboards/' + name]: json(mixin.grafanaDashboards[name])
    for name in std.objectFields(mixin.grafanaDashboards)
  };
  // jsonnet -S -m ends every file with a newline of its own.
  { [path]: std.rstripChars(files[path], '\n') for path in std.objectFields(files) }
