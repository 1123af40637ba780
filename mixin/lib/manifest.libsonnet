// JSON text with two-space indentation and `[]` / `{}` for empty values (std.manifestJsonEx
// writes those over two lines), keys sorted as jsonnet sorts them.
{
  json(value, indent=''):: (
    local inner = indent + '  ';
    if std.isArray(value) then
      if std.length(value) == 0 then '[]'
      else '[\n%s\n%s]' % [std.join(',\n', [inner + $.json(v, inner) for v in value]), indent]
    else if std.isObject(value) then
      local keys = std.objectFields(value);
      if std.length(keys) == 0 then '{}'
      else '{\n%s\n%s}' % [
        std.join(',\n', [inner + std.escapeStringJson(k) + ': ' + $.json(value[k], inner) for k in keys]),
        indent,
      ]
    else std.manifestJson(value)
  ),
}
