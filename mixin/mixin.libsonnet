// apitoken-exporter monitoring mixin (the monitoring-mixins layout):
//   prometheusAlerts   alert rules          -> alerts/apitoken.rules.yml
//   grafanaDashboards  Grafana dashboards   -> dashboards/*.json
// There are no recording rules (no prometheusRules). Settings: config.libsonnet.
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
