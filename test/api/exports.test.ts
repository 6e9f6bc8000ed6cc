/**
 * The public surface, pinned: each entry point's runtime exports (types are pinned by the compiler). A
 * change here is a change to the package's API — update the list on purpose, never to make a test pass.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'

const ENTRIES: Record<string, { module: () => Promise<Record<string, unknown>>; exports: string[] }> = {
  lifeline: {
    module: () => import('../../src/index.js'),
    exports: [
      'CRASH_ENV', 'CRASH_POINTS', 'DecodeError', 'ErrorCodes', 'LifelineError', 'NonRetriableError', 'RetryHeaders', 'armedCrashPoint', 'classifyError', 'compensateOnFailure',
      'consumerDefaults', 'createConsumer', 'createInbox', 'createLogger', 'createParkedKeys', 'createTransactionalPipeline', 'databaseFromEnv', 'defineStateMachine', 'delayFor',
      'describeDatabase', 'dlqTopicName', 'ensureTopics', 'exponential', 'fixed', 'inboxDefaults', 'isLifelineError', 'jsonDecoder', 'listFailures', 'listIgnoredEvents',
      'migrateLifeline', 'openDatabase', 'openPglite', 'openPostgres', 'rawDecoder', 'recordFailure', 'retryTopicName', 'settleFailure', 'silentLogger', 'stringDecoder',
      'transactionalPipelineDefaults', 'versionedUpdate',
    ],
  },
  'lifeline/dlq': {
    module: () => import('../../src/api/dlq.js'),
    exports: [
      'DEAD_LETTER_FORMATS', 'DLQ_STATUSES', 'LifelineHeaders', 'MASKED_HEADER', 'Masker', 'REDACTED', 'ROLES', 'ReplayHeaders', 'SpringDltHeaders', 'cancelJob', 'consoleMount', 'countRecords',
      'createConsole', 'createDlqApi', 'createDlqIndexer', 'createDlqProcessor', 'createNotifier', 'createRedriveJob', 'createToken', 'decodeFailureHeaders', 'decodeSpringHeaders', 'discardRecord',
      'dlqApiDefaults', 'dlqIndexerDefaults', 'dlqProcessorDefaults', 'editRecord', 'fingerprint', 'getJob', 'getRecord', 'groupRecords', 'listJobs', 'listRecords', 'listTokens',
      'notifierDefaults', 'openApiDocument', 'parseDeadLetter', 'pauseJob', 'previewRedrive', 'redriveDefaults', 'replayEdited', 'replayRecord', 'resolveRecord',
      'resumeInterruptedJobs', 'revokeToken', 'runRedriveJob', 'serveDlqApi',
    ],
  },
  'lifeline/reconcile': {
    module: () => import('../../src/api/reconcile.js'),
    exports: ['defineReconciliation', 'diffFields', 'getReconciliation', 'getReconciliationRun', 'listReconciliationFindings', 'listReconciliationRuns', 'listReconciliations', 'reconcileDefaults', 'registerReconciliation', 'runReconciliation', 'scheduleReconciliation'],
  },
  'lifeline/kafka': {
    module: () => import('../../src/api/kafka.js'),
    exports: ['clientVersion', 'createAdmin', 'createKafkaConsumer', 'createProducer', 'createTransactionalProducer', 'transactionalProducerDefaults'],
  },
  'lifeline/observe': {
    module: () => import('../../src/api/observe.js'),
    exports: ['healthDefaults', 'judgeHealth', 'serveMetrics', 'serveMetricsDefaults', 'watchConsumerHealth'],
  },
  'lifeline/dev': {
    module: () => import('../../src/api/dev.js'),
    exports: ['KAFKA_VERSION', 'LauncherError', 'LauncherErrorCodes', 'createNetns', 'isLauncherError', 'kafkaStatus', 'netnsSupport', 'postgresLauncherDefaults', 'resolveKafkaJars', 'startKafka', 'startPostgres', 'startTcpProxy', 'stopKafka'],
  },
  'lifeline/rehearsal': { module: () => import('../../src/api/rehearsal.js'), exports: [] },
}

for (const [name, entry] of Object.entries(ENTRIES)) {
  test(`${name} exports exactly its public API`, async () => {
    assert.deepEqual(Object.keys(await entry.module()).sort(), [...entry.exports].sort())
  })
}

test('package.json maps every entry point to its compiled module', async () => {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { exports: Record<string, { import: string; types: string } | string> }
  const paths = Object.keys(ENTRIES).map((n) => (n === 'lifeline' ? '.' : `./${n.slice('lifeline/'.length)}`))
  assert.deepEqual(Object.keys(pkg.exports).filter((k) => k !== './package.json').sort(), paths.sort())
  for (const [key, target] of Object.entries(pkg.exports)) {
    if (key === './package.json') continue
    const t = target as { import: string; types: string }
    assert.match(t.import, /^\.\/dist\/src\/.+\.js$/)
    assert.equal(t.types, t.import.replace(/\.js$/, '.d.ts'))
  }
})
