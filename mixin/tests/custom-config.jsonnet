// The config override mixin/tests/custom-config.test.yml is tested with (the README's example).
{
  jobSelector: 'job="tokens"',
  routingLabels: ['team', 'owner', 'squad'],
}
