/**
 * The DLQ watcher on both database kinds: the gauges' snapshot, new error groups (only fingerprints no
 * earlier record has; nothing already there at start), the dead-letter rate, approvals and paused jobs.
 * Records go in through the indexer's own store function (indexRecords); no broker is needed.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { Registry } from 'prom-client'
import { requestApproval } from '../../src/dlq/approvals.js'
import { createToken } from '../../src/dlq/auth.js'
import type { DeadLetterContext } from '../../src/failure/formats.js'
import { Masker } from '../../src/failure/masking.js'
import { createDlqMetrics } from '../../src/dlq/metrics.js'
import type { Notification } from '../../src/dlq/notification.js'
import { indexRecords, type IndexItem } from '../../src/dlq/records.js'
import { createRedriveJob, pauseJob } from '../../src/dlq/redrive/jobs.js'
import { createDlqWatch } from '../../src/dlq/watch.js'
import { silentLogger } from '../../src/logger.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'
import { waitFor } from '../helpers/kafka.js'

let offset = 0
const item = (fingerprint: string, over: Partial<DeadLetterContext> = {}, value = '{"n":1}'): IndexItem => ({
  record: { topic: 'orders.dlq', partition: 0, offset: offset++, key: Buffer.from('k'), value: Buffer.from(value), headers: [], timestamp: Date.now() },
  context: { format: 'lifeline', originTopic: 'orders', originPartition: 0, originOffset: offset, consumerGroup: 'billing', errorClass: 'TaxError', errorCode: 'E_TAX', errorMessage: `failed ${fingerprint}`, fingerprint, details: {}, ...over },
})

async function setup(t: TestContext, kind: SqlExecutor['kind'], opts: { threshold?: number; masker?: Masker } = {}) {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  const registry = new Registry()
  const raised: Notification[] = []
  const watch = createDlqWatch({
    db,
    metrics: createDlqMetrics(registry),
    notify: (n) => raised.push(n),
    watchMs: 50,
    groupsLimit: 2,
    logger: silentLogger(),
    publicUrl: 'https://dlq.example.com',
    ...(opts.threshold === undefined ? {} : { deadLetterRate: { threshold: opts.threshold, windowMs: 60_000 } }),
    ...(opts.masker === undefined ? {} : { masker: opts.masker }),
  })
  t.after(() => watch.close())
  const passes = async () => Number(/lifeline_dlq_watch_passes_total\{outcome="ok"\} (\d+)/.exec(await registry.metrics())?.[1] ?? 0)
  /** Waits until two more passes have run: whatever was written before is seen. */
  const settle = async () => {
    const from = await passes()
    await waitFor(async () => (await passes()) >= from + 2, 'two watcher passes')
  }
  return { db, registry, raised, watch, settle }
}

for (const kind of databaseKinds()) {
  test(`[${kind}] new error groups: one per fingerprint no earlier record has; records there at start are never announced`, async (t) => {
    const { db, registry, raised, watch, settle } = await setup(t, kind)
    await indexRecords(db, [item('fp-old'), item('fp-old')])
    await watch.start()
    await settle()
    assert.equal(raised.length, 0, 'nothing already in the database is announced')

    await indexRecords(db, [item('fp-a'), item('fp-a'), item('fp-old'), item('fp-b', { errorCode: 'E_B', errorClass: 'BError' })])
    await settle()
    assert.deepEqual(raised.map((n) => [n.kind, n.fields.fingerprint, n.fields.records]).sort(), [['new-error-group', 'fp-a', 2], ['new-error-group', 'fp-b', 1]])
    const b = raised.find((n) => n.fields.fingerprint === 'fp-b')!
    assert.equal(b.title, 'New error group in orders: BError (E_B)')
    assert.equal(b.message, 'failed fp-b')
    assert.equal(b.link, 'https://dlq.example.com/v1/records?fingerprint=fp-b')

    await indexRecords(db, [item('fp-a'), item('fp-b')])
    await settle()
    assert.equal(raised.length, 2, 'more records of known groups raise nothing')

    const text = await registry.metrics()
    assert.match(text, /lifeline_dlq_error_groups_new_total 2/)
    assert.match(text, /lifeline_dlq_records\{status="pending"\} 8/)
    assert.match(text, /lifeline_dlq_records\{status="discarded"\} 0/)
    assert.match(text, /lifeline_dlq_pending_groups 3/)
    // The two largest groups only (groupsLimit 2): fp-a 3, fp-old 3; fp-b (2) left out.
    assert.match(text, /lifeline_dlq_pending_records\{fingerprint="fp-a",error_class="TaxError",error_code="E_TAX"\} 3/)
    assert.match(text, /lifeline_dlq_pending_records\{fingerprint="fp-old",error_class="TaxError",error_code="E_TAX"\} 3/)
    assert.doesNotMatch(text, /lifeline_dlq_pending_records\{fingerprint="fp-b"/)
  })

  test(`[${kind}] a backlog larger than a batch: read in batches, a group spanning batches announced once, gauges exact at the end`, async (t) => {
    const { db, registry, raised, watch, settle } = await setup(t, kind)
    await watch.start()
    const items = Array.from({ length: 2100 }, (_, i) => item(i < 1500 ? 'big' : i % 2 === 0 ? 'even' : 'odd'))
    await indexRecords(db, items) // one transaction: the watcher sees them all at once, 1000 per batch
    // Two passes are not enough here: a pass that began before the commit saw nothing, and the backlog takes
    // two more. Wait for all three groups, then for two more passes, in which a repeat would show.
    await waitFor(() => raised.length >= 3, 'the three groups announced')
    await settle()
    // Batch 1: big ×1000; batch 2: big ×500 (not new), even ×250, odd ×250; batch 3: even and odd again (not new).
    assert.deepEqual(raised.map((n) => [n.fields.fingerprint, n.fields.records]).sort(), [['big', 1000], ['even', 250], ['odd', 250]], 'big: announced with the first batch, not again with the second')
    // Catching up skips the (costly) counts until the last batch; the next pass with them sees everything.
    await waitFor(async () => /lifeline_dlq_records\{status="pending"\} 2100/.test(await registry.metrics()), 'the counts after the backlog')
    const text = await registry.metrics()
    assert.match(text, /lifeline_dlq_pending_records\{fingerprint="big",error_class="TaxError",error_code="E_TAX"\} 1500/)
    assert.match(text, /lifeline_dlq_pending_groups 3/)
    assert.match(text, /lifeline_dlq_error_groups_new_total 3/)
  })

  test(`[${kind}] dead-letter rate above the threshold raises dead-letter-rate with the busiest topics`, async (t) => {
    const { db, raised, watch, settle } = await setup(t, kind, { threshold: 3 })
    await watch.start()
    await indexRecords(db, [item('r1'), item('r1'), item('r1')])
    await settle()
    assert.equal(raised.filter((n) => n.kind === 'dead-letter-rate').length, 0, 'at the threshold: nothing')
    await indexRecords(db, [item('r1', { originTopic: 'payments' })])
    await settle()
    const rate = raised.find((n) => n.kind === 'dead-letter-rate')!
    assert.ok(rate, 'raised above the threshold')
    assert.equal(rate.fields.deadLetters, 4)
    assert.equal(rate.fields.topic1, 'orders: 3')
    assert.equal(rate.fields.topic2, 'payments: 1')
    assert.equal(rate.dedupKey, 'dead-letter-rate', 'one key: the notifier sends it once per dedup window')
  })

  test(`[${kind}] approvals and paused jobs: each new pending approval and each pause raised once; gauges follow`, async (t) => {
    const { db, registry, raised, watch, settle } = await setup(t, kind)
    await indexRecords(db, [item('j0'), item('j1'), item('j1')])
    const early = await createRedriveJob({ db }, { filter: { fingerprint: 'j0' }, actor: 'alice', target: { kind: 'topic', topic: 'elsewhere' } })
    await pauseJob(db, early.id, 'alice')
    await watch.start()
    await settle()
    assert.equal(raised.length, 0, 'a job paused before the watcher started is not announced')

    const bob = await createToken(db, { name: 'bob', role: 'operator', owner: 'bob@example.com' })
    const approval = await requestApproval(db, { action: 'redrive', payload: { jobId: '77', filter: { topic: 'orders' }, count: 2000 }, requester: { name: 'bob', role: 'operator', owner: 'bob@example.com', tokenId: bob.id } })
    const job = await createRedriveJob({ db }, { filter: { fingerprint: 'j1' }, actor: 'carol', target: { kind: 'topic', topic: 'elsewhere' }, status: 'awaiting-approval' })
    await db.query(`update lifeline_dlq_jobs set status = 'ready' where id = $1`, [job.id])
    await pauseJob(db, job.id, 'carol')
    await settle()
    assert.deepEqual(raised.map((n) => n.kind).sort(), ['approval-requested', 'job-paused'])
    const a = raised.find((n) => n.kind === 'approval-requested')!
    assert.deepEqual(a.fields, { approval: approval.id, action: 'redrive', requestedBy: 'bob', target: 'job 77', records: 2000 })
    assert.doesNotMatch(JSON.stringify(a), /orders/, 'the filter is not sent')
    const p = raised.find((n) => n.kind === 'job-paused')!
    assert.equal(p.fields.job, job.id)
    assert.equal(p.fields.reason, 'paused by carol')

    let text = await registry.metrics()
    assert.match(text, /lifeline_dlq_jobs\{status="paused"\} 2/)
    assert.match(text, /lifeline_dlq_jobs\{status="running"\} 0/)
    assert.match(text, /lifeline_dlq_approvals_pending 1/)
    const age = Number(/lifeline_dlq_approvals_oldest_pending_age_seconds ([0-9.e-]+)/.exec(text)?.[1])
    assert.ok(age >= 0 && age < 600, `oldest approval age ${age}`)

    // The same job paused again after a resume is a new pause.
    await db.query(`update lifeline_dlq_jobs set status = 'ready', updated_at = now() where id = $1`, [job.id])
    await pauseJob(db, job.id, 'dave')
    await settle()
    assert.equal(raised.filter((n) => n.kind === 'job-paused').length, 2)
    await db.query(`update lifeline_dlq_approvals set status = 'rejected' where id = $1`, [approval.id])
    await settle()
    text = await registry.metrics()
    assert.match(text, /lifeline_dlq_approvals_pending 0/)
    assert.match(text, /lifeline_dlq_approvals_oldest_pending_age_seconds 0/)
  })

  test(`[${kind}] a message quoting a clear value is masked with the record's value before it leaves`, async (t) => {
    const masker = new Masker([{ topics: ['orders'], rules: [{ path: '$.email', action: 'redact' }], patterns: ['\\d{4}-\\d{4}'] }])
    const { db, raised, watch, settle } = await setup(t, kind, { masker })
    await watch.start()
    await indexRecords(db, [item('m1', { errorMessage: 'refund for ada@example.com on card 1234-5678 failed' }, '{"email":"ada@example.com","n":1}')])
    await indexRecords(db, [item('m2', { originTopic: 'unmasked', errorMessage: 'plain' })])
    await settle()
    const m1 = raised.find((n) => n.fields.fingerprint === 'm1')!
    assert.equal(m1.message, 'refund for [REDACTED] on card [REDACTED] failed')
    assert.equal(raised.find((n) => n.fields.fingerprint === 'm2')!.message, 'plain', 'a topic no policy covers is left as stored')
  })

  test(`[${kind}] close() stops the passes and is idempotent; a failing pass is counted and retried`, async (t) => {
    const { db, registry, watch, settle } = await setup(t, kind)
    await watch.start()
    await settle()
    await db.query('alter table lifeline_dlq_approvals rename to lifeline_dlq_approvals_away')
    await waitFor(async () => /lifeline_dlq_watch_passes_total\{outcome="failed"\} [1-9]/.test(await registry.metrics()), 'a failed pass')
    await db.query('alter table lifeline_dlq_approvals_away rename to lifeline_dlq_approvals')
    await settle()
    const closing = watch.close()
    assert.equal(watch.close(), closing)
    await closing
    const after = /lifeline_dlq_watch_passes_total\{outcome="ok"\} (\d+)/.exec(await registry.metrics())?.[1]
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(/lifeline_dlq_watch_passes_total\{outcome="ok"\} (\d+)/.exec(await registry.metrics())?.[1], after, 'no pass after close()')
  })
}

