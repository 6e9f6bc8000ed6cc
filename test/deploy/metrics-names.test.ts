/**
 * The alert rules and the dashboard name only metrics Lifeline emits: every `lifeline_*` name in
 * deploy/prometheus/lifeline-rules.yml and in deploy/grafana/lifeline.json is a metric family declared by
 * a live `/metrics` — a consumer's (serveMetrics, with an inbox and a reconciliation in its registry) or the
 * DLQ processor's (its API server) — and every one of them is documented in docs/metrics.md.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { createDlqProcessor } from '../../src/dlq/processor.js'
import { createInbox } from '../../src/effects/inbox.js'
import { defineReconciliation, runReconciliation } from '../../src/effects/reconcile.js'
import { serveMetrics } from '../../src/observe/serve-metrics.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { stateDatabase } from '../helpers/db.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'
import { dashboardExpressions, families, lifelineNames, RULES_FILE } from '../helpers/prometheus.js'

test('every metric the rules and the dashboard name is emitted on a live /metrics and documented', async (t) => {
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  const source = await topic(t)
  const groupId = randomName('names')
  const registry = new Registry()
  const inbox = createInbox<unknown>({ db, consumer: groupId, handler: () => undefined, metrics: { registry } })
  const c = await lifeline(t, { groupId, topics: [source], metrics: { registry }, handler: inbox.handler })
  const server = await serveMetrics({ consumer: c, group: groupId, registry, port: 0 })
  defer(t, () => server.close())
  const stock = new Map([['a', 1], ['b', 2]])
  const copy = new Map([['a', 1]])
  await runReconciliation(
    defineReconciliation<string, number, number>({
      name: randomName('stock'),
      source: { read: async (cursor) => (cursor === null ? { rows: [...stock].map(([key, value]) => ({ key, value })), next: null } : { rows: [], next: null }) },
      target: { get: async (keys) => new Map(keys.map((k) => [k, copy.get(k) ?? null])) },
      key: (k) => k,
    }),
    { db, registry },
  )
  await producer(t).send([{ topic: source, key: 'k', value: '{}', headers: [{ key: 'event-id', value: Buffer.from('e-1') }] }])
  await waitFor(() => inbox.stats().applied === 1, 'the record applied through the inbox')

  const dlqTopic = await topic(t, { prefix: 'names-dlq' })
  const processor = createDlqProcessor({ brokers: brokers(), db, topics: [dlqTopic], groupId: randomName('names-indexer'), api: { port: 0 }, metrics: { registry: new Registry() }, watchMs: 200, indexer: { pollTimeoutMs: 100 } })
  defer(t, () => processor.close())
  await processor.start()

  const consumerText = await (await fetch(`${server.url}/metrics`)).text()
  const processorText = await (await fetch(`${processor.url}/metrics`)).text()
  const emitted = new Set([...families(consumerText), ...families(processorText)])
  const docs = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8')

  const used = new Map<string, string>()
  for (const name of lifelineNames(readFileSync(RULES_FILE, 'utf8'))) used.set(name, 'lifeline-rules.yml')
  for (const expr of dashboardExpressions()) for (const name of lifelineNames(expr)) used.set(name, used.has(name) ? `${used.get(name)}, lifeline.json` : 'lifeline.json')
  assert.ok(used.size >= 30, `only ${used.size} metrics named`)
  const missing = [...used].filter(([name]) => !emitted.has(name)).map(([name, where]) => `${name} (${where})`)
  assert.deepEqual(missing, [], 'named in the rules or the dashboard but not emitted')
  const undocumented = [...used.keys()].filter((name) => !docs.includes(`\`${name}\``) && !(name.startsWith('lifeline_reconcile_') && docs.includes('`lifeline_reconcile_*`')))
  assert.deepEqual(undocumented, [], 'named but not in docs/metrics.md')

  // The check is real: the families come from the servers, not from the names looked for.
  assert.ok(families(consumerText).has('lifeline_consumer_ready') && !families(consumerText).has('lifeline_dlq_jobs'))
  assert.ok(families(processorText).has('lifeline_dlq_jobs') && !families(processorText).has('lifeline_consumer_lag'))
  assert.ok(!emitted.has('lifeline_made_up_total'))
})
