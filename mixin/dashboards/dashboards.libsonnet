// Every dashboard of the mixin, by file name.
(import 'overview.libsonnet')
