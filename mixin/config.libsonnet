// Settings of the apitoken-exporter monitoring mixin. Override any of them:
//
//   (import 'mixin/mixin.libsonnet') + { _config+:: { jobSelector: 'job="tokens"' } }
//
// or, with the render script, `scripts/render-mixin.sh --config '{jobSelector: ...}' OUTDIR`.
{
  _config+:: {
    // Selects the exporter's series in every rule, and the `up` series ApiTokenExporterDown
    // watches. Any PromQL matcher list works, e.g. 'job=~"apitoken-exporter|tokens"' or
    // 'job="apitoken-exporter", namespace="monitoring"'.
    jobSelector: 'job="apitoken-exporter"',

    // Labels that tell exporter replicas apart. Per-token and organization alerts aggregate
    // them away, so two replicas with one config raise one alert per token; the exporter
    // alerts (down, config reload, probe stale) keep them.
    replicaLabels: ['instance', 'pod'],

    // Labels naming one token across replicas: the key that joins a per-token alert with
    // apitoken_info (add e.g. 'namespace' or 'cluster' when one Prometheus sees several
    // separate exporter set-ups with the same job name and token names).
    tokenLabels: ['job', 'token', 'provider'],

    // Custom token labels (the `labels:` of a token in the exporter config, exported on
    // apitoken_info) copied onto every per-token alert, so Alertmanager can route on them.
    // A token without one of them gets an alert without that label.
    routingLabels: ['team', 'owner'],

    // Expiry of configured tokens. With a known lifetime (apitoken_lifetime_seconds) the
    // warning fires below min(warningDays, lifetime / warningLifetimeDivisor) remaining and
    // the critical alert below min(criticalDays, lifetime / criticalLifetimeDivisor);
    // without one, below warningDays / criticalDays.
    expiry: {
      warningDays: 30,
      criticalDays: 7,
      warningLifetimeDivisor: 4,
      criticalLifetimeDivisor: 10,
    },

    // Organization inventory (admin API keys and user API tokens): warn below
    // min(warningDays, lifetime / lifetimeDivisor) remaining, lifetime = expiry - created
    // timestamp; below warningDays when the created timestamp is not known.
    orgExpiry: {
      warningDays: 14,
      lifetimeDivisor: 4,
    },
    // AtlassianOrgTokenUnused: an org token not active for this many days.
    orgTokenUnusedDays: 90,
    // Org token statuses that cannot be used any more (no expiry or unused alerts).
    orgTokenDeadStatusRegex: '(?i)(blocked|revoked)',

    // ApiTokenRevokedStillAccepted: Atlassian documents up to 10 minutes for a revocation to
    // propagate (users saw ~20); this grace is part of the expression.
    revocationGraceSeconds: 900,
    // ApiTokenProbeStale: no finished probe for this many (effective) probe intervals.
    probeStaleIntervals: 3,

    // How long each condition must hold before the alert fires.
    'for': {
      ApiTokenExpiringSoon: '1h',
      ApiTokenExpiringCritical: '15m',
      ApiTokenExpired: '5m',
      ApiTokenInvalid: '10m',
      ApiTokenAnonymousFallback: '10m',
      ApiTokenIdentityMismatch: '10m',
      ApiTokenRevokedStillAccepted: '0m',
      ApiTokenProbeFailing: '30m',
      ApiTokenProbeStale: '5m',
      ApiTokenExporterDown: '5m',
      ApiTokenExporterConfigReloadFailed: '5m',
      AtlassianAdminApiKeyExpiringSoon: '1h',
      AtlassianOrgTokenExpiringSoon: '1h',
      AtlassianOrgTokenUnused: '1h',
    },

    // Grafana.
    dashboardUid: 'apitoken-overview',
    dashboardTitle: 'Atlassian API tokens',
    dashboardTags: ['apitoken-exporter', 'atlassian', 'security'],
    dashboardRefresh: '1m',
    // The routing label the dashboard's "By team" row filters and groups on.
    dashboardTeamLabel: if std.length(self.routingLabels) > 0 then self.routingLabels[0] else 'team',
  },
}
