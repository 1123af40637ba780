// Small PromQL builders shared by the alerts and the dashboard.
{
  // 'a, b, c'
  list(labels):: std.join(', ', labels),

  // metric{selector, extra}
  series(metric, selector, extra=''):: '%s{%s}' % [
    metric,
    std.join(', ', [s for s in [selector, extra] if s != '']),
  ],

  // Indents every line of a multi-line expression by n spaces.
  indent(expr, n):: std.join('\n', [
    if line == '' then line else std.repeat(' ', n) + line
    for line in std.split(expr, '\n')
  ]),

  // `agg without (replica labels) (expr)`: one series per token however many exporter
  // replicas report it.
  acrossReplicas(agg, replicaLabels, expr)::
    '%s without (%s) (\n%s\n)' % [
      agg,
      self.list(replicaLabels),
      self.indent(std.rstripChars(expr, '\n'), 2),
    ],

  // Copies `labels` from an info metric onto expr, matched on `keyLabels`. The info series
  // are reduced to one per key first (topk), so replicas or a reload skew between them
  // never make the join fail; a token lacking a label gets no such label, and a series
  // without any info series (e.g. dropped by relabelling) is kept as it is (`or`).
  withInfoLabels(expr, info, keyLabels, labels)::
    if std.length(labels) == 0 then expr
    else |||
      (
      %(expr)s
      * on (%(keys)s) group_left (%(labels)s)
        topk by (%(keys)s) (1, max by (%(keysAndLabels)s) (%(info)s))
      )
      or on (%(keys)s)
      %(expr)s
    ||| % {
      expr: std.rstripChars(expr, '\n'),
      keys: $.list(keyLabels),
      labels: $.list(labels),
      keysAndLabels: $.list(keyLabels + labels),
      info: info,
    },

  // 'days < min(fixedDays, lifetime / divisor)' when the lifetime series exists, else
  // 'days < fixedDays'. `days` and `lifetimeSeconds` are expressions of one replica's series;
  // `on` is the matching clause between them ('' = all labels).
  belowLifetimeThreshold(days, lifetimeSeconds, on, fixedDays, divisor)::
    |||
      (
          %(days)s
            < %(on)sclamp_max(%(lifetime)s / 86400 / %(divisor)s, %(fixed)s)
        or
          %(days)s < %(fixed)s
            unless %(on)s%(lifetimeSeries)s
      )
    ||| % {
      days: days,
      on: if on == '' then '' else on + ' ',
      lifetime: lifetimeSeconds.expr,
      lifetimeSeries: lifetimeSeconds.present,
      divisor: divisor,
      fixed: fixedDays,
    },
}
