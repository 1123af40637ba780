// The alert rules. Rendered to alerts/apitoken.rules.yml (and the Kubernetes
// PrometheusRule) by scripts/render-mixin.sh; docs/alerts.md explains the design.
//
// Three kinds of alerts:
// - per token (expiry, validity, revocation, probe failures): one alert per token however
//   many exporter replicas watch it (the replica labels are aggregated away: the alert
//   fires when any replica sees the condition), carrying the token's routing labels
//   (team, owner) from apitoken_info;
// - organization inventory: one alert per org token / admin key, replicas aggregated away;
// - exporter (down, config reload, probe stale): one per exporter replica, with `instance`.
//
// An `error` probe outcome (outage, 429, timeout) keeps the last conclusive valid /
// anonymous_fallback / identity_mismatch values, so an Atlassian outage never pages "token
// invalid"; it shows up as ApiTokenProbeFailing. Token series are absent until the first
// conclusive probe, so nothing fires at start-up. Expiry alerts are disjoint bands (expired
// < 0 <= critical < critical threshold <= warning < warning threshold), so a token carries
// at most one expiry alert at a time.
local promql = import '../lib/promql.libsonnet';

{
  local c = $._config,
  local sel(metric, extra='') = promql.series(metric, c.jobSelector, extra),

  // Matching between two series of the same token on the same replica.
  local onReplica = 'on (%s)' % promql.list(c.tokenLabels + c.replicaLabels),
  local perToken(agg, expr) = promql.withInfoLabels(
    promql.acrossReplicas(agg, c.replicaLabels, expr),
    sel('apitoken_info'),
    c.tokenLabels,
    c.routingLabels,
  ),
  local perOrgEntry(agg, expr) = promql.acrossReplicas(agg, c.replicaLabels, expr),
  local trim(s) = std.rstripChars(s, '\n'),

  // '10m' -> '10 minutes', '1h' -> '1 hour'
  local words(duration) =
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day' };
    local n = std.substr(duration, 0, std.length(duration) - 1);
    local unit = units[duration[std.length(duration) - 1]];
    '%s %s%s' % [n, unit, if n == '1' then '' else 's'],

  local days = sel('apitoken_days_until_expiry'),
  local lifetime = { expr: sel('apitoken_lifetime_seconds'), present: sel('apitoken_lifetime_seconds') },
  local expiringWithin(fixedDays, divisor) = trim(promql.belowLifetimeThreshold(
    days, lifetime, onReplica, fixedDays, divisor
  )),
  local warningBand = expiringWithin(c.expiry.warningDays, c.expiry.warningLifetimeDivisor),
  local criticalBand = expiringWithin(c.expiry.criticalDays, c.expiry.criticalLifetimeDivisor),

  local orgExpiring(expiry, created) =
    local remaining = '(%s - time()) / 86400' % expiry;
    trim(promql.belowLifetimeThreshold(
      remaining,
      { expr: '(%s - %s)' % [expiry, created], present: created },
      '',
      c.orgExpiry.warningDays,
      c.orgExpiry.lifetimeDivisor,
    )) + '\n  and %s > time()' % expiry,

  // Text per vendor (Go template on the alert's provider label): GitHub, GitLab, else Atlassian.
  local perVendor(github, gitlab, atlassian) =
    '{{ if eq $labels.provider "github" }}%s{{ else if eq $labels.provider "gitlab" }}%s{{ else }}%s{{ end }}' % [github, gitlab, atlassian],
  local githubWhere = 'GitHub > Settings > Developer settings > Personal access tokens (classic: https://github.com/settings/tokens, fine-grained: https://github.com/settings/personal-access-tokens; on GitHub Enterprise Server the same pages on your host)',
  local gitlabWhere = 'GitLab > User settings > Access tokens (https://gitlab.com/-/user_settings/personal_access_tokens, or the same path on a self-managed instance; project and group access tokens under that project or group > Settings > Access tokens)',
  // Where to rotate.
  local rotateHint = perVendor(githubWhere, gitlabWhere, 'user API tokens at https://id.atlassian.com/manage-profile/security/api-tokens, admin API keys at admin.atlassian.com > Settings > API keys'),
  local vendorName = perVendor('GitHub', 'GitLab', 'Atlassian'),
  // GitHub and GitLab report a token's expiry themselves; Atlassian's comes from the config.
  local selfReported(what) = ' (%s reports %s itself)' % [what, "the new token's expiry"],
  local alert(name, severity, expr, summary, description) = {
    alert: name,
    expr: std.rstripChars(expr, '\n') + '\n',
    'for': c['for'][name],
    labels: { severity: severity },
    annotations: { summary: summary, description: description },
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'apitoken-exporter',
        rules: [
          // ---------------------------------------------------------------- expiry
          alert(
            'ApiTokenExpiringSoon',
            'warning',
            perToken('min', '%s\nunless %s\n%s' % [warningBand, onReplica, criticalBand]),
            'API token {{ $labels.token }} ({{ $labels.provider }}) expires in {{ $value | printf "%.1f" }} days',
            'The {{ $labels.provider }} API token {{ $labels.token }} expires in {{ $value | printf "%.1f" }} days. Create a replacement now and swap it in before the old one stops working: ' + rotateHint + ". Then update the token's token_env/token_file" + perVendor(selfReported('GitHub') + '.', selfReported('GitLab') + '.', ' and its expires_at (or created_at) in the exporter config. Atlassian itself only emails the owner about one day before expiry.'),
          ),
          alert(
            'ApiTokenExpiringCritical',
            'critical',
            perToken('min', '%s\nunless %s\n%s < 0' % [criticalBand, onReplica, days]),
            'API token {{ $labels.token }} ({{ $labels.provider }}) expires in {{ $value | printf "%.1f" }} days',
            'The {{ $labels.provider }} API token {{ $labels.token }} expires in {{ $value | printf "%.1f" }} days; integrations using it will break' + perVendor('', '', ' (or silently see anonymous, empty results)') + ' when it does. Rotate it now: ' + rotateHint + '. Then update token_env/token_file' + perVendor(selfReported('GitHub') + '.', selfReported('GitLab') + '.', ' and expires_at (or created_at) in the exporter config.'),
          ),
          alert(
            'ApiTokenExpired',
            'critical',
            perToken('min', '%s < 0' % days),
            'API token {{ $labels.token }} ({{ $labels.provider }}) expired {{ reReplaceAll "^-" "" (printf "%.1f" $value) }} days ago',
            'The {{ $labels.provider }} API token {{ $labels.token }} expired {{ reReplaceAll "^-" "" (printf "%.1f" $value) }} days ago. ' + perVendor(
              'Requests made with it now fail. Create a new one at %s and deploy it%s.' % [githubWhere, selfReported('GitHub')],
              'Requests made with it now fail. Create a new one at %s and deploy it%s.' % [gitlabWhere, selfReported('GitLab')],
              'Jira and Confluence may now serve it anonymously with empty results instead of failing. Create a new token at https://id.atlassian.com/manage-profile/security/api-tokens (admin API keys at admin.atlassian.com > Settings > API keys), deploy it, and update expires_at (or created_at) in the exporter config. If the expiry date in the config is wrong, fix it there.',
            ),
          ),

          // ------------------------------------------------------------ validity
          // Anonymous fallback is a kind of invalid with its own, more specific alert.
          alert(
            'ApiTokenInvalid',
            'critical',
            perToken('max', '%s == 0\n  unless %s %s == 1' % [
              sel('apitoken_valid'), onReplica, sel('apitoken_anonymous_fallback'),
            ]),
            'API token {{ $labels.token }} ({{ $labels.provider }}) is rejected by ' + vendorName,
            local dead(where) = ' for %s: it is expired, revoked or mistyped. Check the token\'s site in the exporter config and the secret in its token_env/token_file; if the token is dead, create a new one at %s and deploy it.' % [words(c['for'].ApiTokenInvalid), where];
            'The {{ $labels.provider }} API token {{ $labels.token }} has been rejected' + perVendor(
              dead(githubWhere),
              dead(gitlabWhere),
              ' (401/403) for %s: it is expired, revoked, mistyped, or paired with the wrong email / Bitbucket username. Check the token\'s site and email in the exporter config and the secret in its token_env/token_file; if the token is dead, create a new one at https://id.atlassian.com/manage-profile/security/api-tokens (admin API keys at admin.atlassian.com > Settings > API keys) and ask the owner to check their email for an expiry or revocation notice.' % words(c['for'].ApiTokenInvalid),
            ),
          ),
          alert(
            'ApiTokenAnonymousFallback',
            'critical',
            perToken('max', '%s == 1' % sel('apitoken_anonymous_fallback')),
            'API token {{ $labels.token }} ({{ $labels.provider }}) is silently served as anonymous',
            '{{ $labels.provider }} answers requests made with the API token {{ $labels.token }} as an anonymous user: calls succeed with empty results instead of failing, so integrations quietly "see nothing". The token is expired or revoked, or the configured email does not belong to it. Check the email and site in the exporter config; if they are right, create a new token at https://id.atlassian.com/manage-profile/security/api-tokens and deploy it everywhere this token is used.',
          ),
          alert(
            'ApiTokenIdentityMismatch',
            'warning',
            perToken('max', '%s == 1' % sel('apitoken_identity_mismatch')),
            'API token {{ $labels.token }} ({{ $labels.provider }}) authenticates as an unexpected account',
            'The {{ $labels.provider }} API token {{ $labels.token }} works, but as a different account than expected_account_id (or the configured email). Someone may have swapped in a personal token. Look up the account_id label of apitoken_info{token="{{ $labels.token }}"}, then either deploy the intended account\'s token or fix expected_account_id / email in the exporter config.',
          ),
          // The grace lives in the expression. The last_valid clause makes sure the token was
          // actually seen working after that grace (on the same replica), not just a stale
          // pre-revocation value kept through probe errors. The revoked series may carry a
          // `source` label (config or org_inventory): every match is on the token's labels.
          alert(
            'ApiTokenRevokedStillAccepted',
            'critical',
            perToken('max', |||
              %(valid)s == 1
                and %(on)s
                  (time() - %(revoked)s > %(grace)d)
                and %(on)s
                  (%(lastValid)s - %(on)s %(revoked)s > %(grace)d)
            ||| % {
              valid: sel('apitoken_valid'),
              revoked: sel('apitoken_revoked_timestamp_seconds'),
              lastValid: sel('apitoken_last_valid_timestamp_seconds'),
              on: onReplica,
              grace: c.revocationGraceSeconds,
            }),
            'Revoked API token {{ $labels.token }} ({{ $labels.provider }}) is still accepted',
            'The {{ $labels.provider }} API token {{ $labels.token }} was revoked (revoked_at in the exporter config, or missing from the organization inventory) more than %s ago, but Atlassian still authenticates it. Revoke it (again) at https://id.atlassian.com/manage-profile/security/api-tokens as its owner, or as an org admin at admin.atlassian.com > Security > API tokens, and check that the revoked_at entry names the right token.' % words('%dm' % (c.revocationGraceSeconds / 60)),
          ),

          // -------------------------------------------------------------- probing
          alert(
            'ApiTokenProbeFailing',
            'warning',
            perToken('max', '%s == 0' % sel('apitoken_probe_success')),
            'Probes of API token {{ $labels.token }} ({{ $labels.provider }}) have failed for %s' % words(c['for'].ApiTokenProbeFailing),
            'The exporter cannot reach a conclusive answer for the {{ $labels.provider }} token {{ $labels.token }} (timeout, connection/TLS failure, 429, 5xx, unexpected response, or unreadable credential). Its validity gauges still show the last conclusive result. See rate(apitoken_probe_errors_total{token="{{ $labels.token }}"}[15m]) by reason and instance, and the exporter log; check the site URL, network egress, Atlassian status, and that token_env/token_file is readable.',
          ),
          // A fault of one exporter replica (its scheduler), not of the token: it keeps
          // `instance` and carries no routing labels, so it reaches the exporter's operators.
          alert(
            'ApiTokenProbeStale',
            'warning',
            'time() - %s\n  > %d * %s' % [
              sel('apitoken_last_probe_timestamp_seconds'),
              c.probeStaleIntervals,
              sel('apitoken_probe_interval_seconds'),
            ],
            'API token {{ $labels.token }} ({{ $labels.provider }}) has not been probed for %d intervals' % c.probeStaleIntervals,
            'The exporter {{ $labels.instance }} last finished a probe of the {{ $labels.provider }} token {{ $labels.token }} {{ $value | humanizeDuration }} ago, more than %s probe intervals. Its gauges are stale. The scheduler may be stuck behind slow probes (max_concurrency, probe_timeout) or a long 429 Retry-After; check the exporter log and restart it if needed.' % (if c.probeStaleIntervals == 3 then 'three' else std.toString(c.probeStaleIntervals)),
          ),

          // -------------------------------------------------------------- exporter
          alert(
            'ApiTokenExporterDown',
            'critical',
            '%s == 0\n  or absent(%s)' % [sel('up'), sel('up')],
            'apitoken-exporter{{ with $labels.instance }} {{ . }}{{ end }} is down or not scraped',
            'Prometheus has no successful scrape of apitoken-exporter (%s){{ if $labels.instance }} (instance {{ $labels.instance }}){{ end }} for %s: up is 0 or absent. While it is down no API token is watched and no other apitoken alert can fire. Check the exporter process, its /-/healthy endpoint and the Prometheus target page. If the scrape job has another name, set jobSelector in the monitoring mixin (mixin/config.libsonnet) and render the rules again.' % [
              sel('up'), words(c['for'].ApiTokenExporterDown),
            ],
          ),
          alert(
            'ApiTokenExporterConfigReloadFailed',
            'warning',
            '%s == 0' % sel('apitoken_exporter_config_last_reload_successful'),
            'apitoken-exporter {{ $labels.instance }} failed to reload its config',
            'The last config reload of apitoken-exporter {{ $labels.instance }} failed; it keeps running the previous config, so token additions, removals and rotations are not in effect. Run `apitoken_exporter --config.check --config.file=...` to see every problem with its location (or read the POST /-/reload response or the log), fix the file and reload again.',
          ),

          // ------------------------------------------------- organization inventory
          alert(
            'AtlassianAdminApiKeyExpiringSoon',
            'warning',
            perOrgEntry('min', orgExpiring(
              sel('apitoken_org_api_key_expiry_timestamp_seconds'),
              sel('apitoken_org_api_key_created_timestamp_seconds'),
            )),
            'Atlassian admin API key {{ $labels.key_label }} ({{ $labels.key_id }}) in org {{ $labels.org }} expires in {{ $value | printf "%.1f" }} days',
            'The admin API key "{{ $labels.key_label }}" (key_id {{ $labels.key_id }}) of the Atlassian organization {{ $labels.org }} expires in {{ $value | printf "%.1f" }} days. If an automation (or this exporter\'s inventory) uses it, create a new key at admin.atlassian.com > Settings > API keys, deploy it (api_key_env/api_key_file for the exporter) and delete the old one. Admin keys default to a 7-day lifetime; choose a longer expiry for long-lived automations.',
          ),
          alert(
            'AtlassianOrgTokenExpiringSoon',
            'warning',
            perOrgEntry('min', orgExpiring(
              sel('apitoken_org_token_expiry_timestamp_seconds', 'status!~"%s"' % c.orgTokenDeadStatusRegex),
              sel('apitoken_org_token_created_timestamp_seconds'),
            )),
            'API token {{ $labels.token_label }} ({{ $labels.token_id }}) in org {{ $labels.org }} expires in {{ $value | printf "%.1f" }} days',
            'The user API token "{{ $labels.token_label }}" (token_id {{ $labels.token_id }}, owner account {{ $labels.account_id }}) in the Atlassian organization {{ $labels.org }} expires in {{ $value | printf "%.1f" }} days. Ask the owner (check the owner\'s email, where Atlassian sends its only notice a day before) to create a replacement at https://id.atlassian.com/manage-profile/security/api-tokens and deploy it before then, or let it expire if nothing uses it.',
          ),
          // Security hygiene: a token nobody uses is only a liability.
          alert(
            'AtlassianOrgTokenUnused',
            'warning',
            perOrgEntry('min', '(time() - %s) / 86400 > %d' % [
              sel('apitoken_org_token_last_active_timestamp_seconds', 'status!~"%s"' % c.orgTokenDeadStatusRegex),
              c.orgTokenUnusedDays,
            ]),
            'API token {{ $labels.token_label }} ({{ $labels.token_id }}) in org {{ $labels.org }} unused for {{ $value | printf "%.0f" }} days',
            'The user API token "{{ $labels.token_label }}" (token_id {{ $labels.token_id }}, owner account {{ $labels.account_id }}) in the Atlassian organization {{ $labels.org }} was last active {{ $value | printf "%%.0f" }} days ago (more than %d). Unused tokens are a leak risk: confirm with the owner that nothing needs it, then revoke it at admin.atlassian.com > Security > API tokens (or the owner at https://id.atlassian.com/manage-profile/security/api-tokens).' % c.orgTokenUnusedDays,
          ),
        ],
      },
    ],
  },
}
