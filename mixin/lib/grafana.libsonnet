// Grafana JSON model builders (schemaVersion 39) for the mixin's dashboards. Every panel and
// query uses the `datasource` variable.
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  grid(x, y, w, h):: { x: x, y: y, w: w, h: h },

  // [[color, value], ...] -> absolute thresholds; the first value is null (the base).
  thresholds(steps):: {
    mode: 'absolute',
    steps: [{ color: s[0], value: s[1] } for s in steps],
  },

  // {'0': ['rejected', 'red'], ...} -> one value mapping (color optional).
  valueMapping(texts):: [{
    type: 'value',
    options: {
      [k]: { text: texts[k][0], index: std.parseInt(k) }
           + (if std.length(texts[k]) > 1 then { color: texts[k][1] } else {})
      for k in std.objectFields(texts)
    },
  }],

  target(refId, expr, format='time_series', instant=true, legend=null):: {
    datasource: $.datasource,
    refId: refId,
    expr: expr,
    editorMode: 'code',
    range: !instant,
    instant: instant,
    format: format,
  } + (if legend == null then {} else { legendFormat: legend }),

  row(id, title, y):: {
    type: 'row',
    id: id,
    title: title,
    collapsed: false,
    gridPos: $.grid(0, y, 24, 1),
    panels: [],
  },

  local panel(type, id, title, description, gridPos, targets) = {
    type: type,
    id: id,
    title: title,
    description: description,
    datasource: $.datasource,
    gridPos: gridPos,
    targets: targets,
  },

  // A single-value panel; `defaults` replaces the count-style field defaults.
  stat(id, title, description, gridPos, expr, steps, defaults=null):: panel(
    'stat', id, title, description, gridPos, [$.target('A', expr)]
  ) + {
    fieldConfig: {
      defaults: if defaults != null then defaults else {
        thresholds: $.thresholds(steps),
        color: { mode: 'thresholds' },
        unit: 'none',
        decimals: 0,
        noValue: '0',
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'none',
      justifyMode: 'center',
      textMode: 'value',
      orientation: 'auto',
    },
  },

  // A table of instant queries merged into rows; `columns` orders and names them
  // ([[field, display name], ...]), `hidden` lists fields not shown, `sortBy` a display name.
  table(id, title, description, gridPos, targets, columns, hidden, sortBy, overrides, merge=true):: panel(
    'table', id, title, description, gridPos, targets
  ) + {
    transformations: (if merge then [{ id: 'merge', options: {} }] else []) + [
      {
        id: 'organize',
        options: {
          excludeByName: { [f]: true for f in hidden },
          indexByName: { [columns[i][0]]: i for i in std.range(0, std.length(columns) - 1) },
          renameByName: { [c[0]]: c[1] for c in columns },
        },
      },
      { id: 'sortBy', options: { fields: {}, sort: [{ field: sortBy, desc: false }] } },
    ],
    fieldConfig: {
      defaults: {
        custom: { align: 'auto', cellOptions: { type: 'auto' } },
        thresholds: $.thresholds([['green', null]]),
      },
      overrides: [
        { matcher: { id: 'byName', options: name }, properties: overrides[name] }
        for name in std.objectFields(overrides)
      ],
    },
    options: {
      showHeader: true,
      cellHeight: 'sm',
      sortBy: [{ displayName: sortBy, desc: false }],
      footer: { show: false, reducer: ['sum'], fields: '' },
    },
  },

  // Table cell colours by thresholds.
  coloredCells(steps, mode='color-background'):: [
    { id: 'thresholds', value: $.thresholds(steps) },
    { id: 'color', value: { mode: 'thresholds' } },
    { id: 'custom.cellOptions', value: { type: mode } + (if mode == 'color-background' then { mode: 'basic' } else {}) },
  ],

  timeseries(id, title, description, gridPos, expr, legend, unit):: panel(
    'timeseries', id, title, description, gridPos, [$.target('A', expr, instant=false, legend=legend)]
  ) + {
    fieldConfig: {
      defaults: {
        unit: unit,
        color: { mode: 'palette-classic' },
        custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never', spanNulls: false },
      },
      overrides: [],
    },
    options: {
      legend: { showLegend: true, displayMode: 'table', placement: 'right', calcs: ['lastNotNull'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  // A multi-value query variable with "All" (= .*).
  queryVariable(name, label, query):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    definition: query,
    query: { query: query, refId: name + '-var' },
    refresh: 2,
    multi: true,
    includeAll: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    sort: 1,
    regex: '',
    hide: 0,
  },
}
