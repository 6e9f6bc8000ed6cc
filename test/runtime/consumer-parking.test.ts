import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import { readTierRecord } from '../../src/failure/tier-record.js'
import { stateDatabase } from '../helpers/db.js'
import type { SqlExecutor } from '../../src/store/index.js'
import { producer, topic, waitFor } from '../helpers/kafka.js'
import { header, lifeline, readAll } from '../helpers/lifeline.js'

const tiersOf = (service: string, source: string, n: number) => Array.from({ length: n }, (_, i) => `${service}.${source}.retry.${i + 1}`)

test('a failing record moves through the retry tiers to the DLQ, keeping its attempts and first failure, while its partition flows on', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const registry = new Registry()
  const attempts: Array<{ at: number; attempt: number; topic: string; offset: number }> = []
  const good: string[] = []
  const c = await lifeline<{ id: string }>(t, {
    topics: [source],
    state: db,
    metrics: { registry },
    retry: { maxAttempts: 2, backoff: { type: 'fixed', ms: 10 } },
    retryTopics: { delaysMs: [300, 600] },
    handler: ({ value, attempt, topic: tp, offset }) => {
      if (value.id === 'bad') {
        attempts.push({ at: Date.now(), attempt, topic: tp, offset })
        throw new Error('downstream said no')
      }
      good.push(value.id)
    },
  })
  const tiers: Array<{ tier: number; dueAt: number }> = []
  c.on('retry-tier', (e) => tiers.push({ tier: e.tier, dueAt: e.dueAt }))
  const p = producer(t)
  await p.send([{ topic: source, key: 'k-bad', value: JSON.stringify({ id: 'bad' }) }, ...Array.from({ length: 20 }, (_, i) => ({ topic: source, key: `k${i}`, value: JSON.stringify({ id: `g${i}` }) }))])
  await waitFor(() => good.length === 20, 'the healthy records')
  // The healthy records did not wait for the failing one's tiers (300 + 600 ms).
  assert.ok(attempts.length <= 3, `healthy records done after ${attempts.length} attempts of the bad one`)
  const dlq = await readAll(t, `svc.${source}.dlq`, 1)
  assert.equal(attempts.length, 4, 'two in place, one per tier')
  assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3, 4])
  assert.ok(attempts.every((a) => a.topic === source && a.offset === 0), 'the handler sees the source topic and offset in every tier')
  assert.ok(attempts[2]!.at - attempts[1]!.at >= 280, `tier 1 waited its delay (${attempts[2]!.at - attempts[1]!.at} ms)`)
  assert.ok(attempts[3]!.at - attempts[2]!.at >= 580, `tier 2 waited its delay (${attempts[3]!.at - attempts[2]!.at} ms)`)
  assert.deepEqual(tiers.map((x) => x.tier), [1, 2])
  const failure = decodeFailureHeaders(dlq[0]!.headers)!
  assert.equal(failure.attempts, 4)
  assert.equal(failure.originTopic, source)
  assert.equal(failure.originOffset, 0)
  // Tier 1 ran ≥ 300 ms after it: a first failure time reset by a tier would be off by that much.
  assert.ok(Math.abs(failure.firstFailureAt! - attempts[0]!.at) < 250, `the first failure time survived both tiers (${failure.firstFailureAt! - attempts[0]!.at} ms off)`)
  assert.equal(header(dlq[0]!, 'lifeline.retry.tier'), undefined, 'tier headers do not leak into the DLQ record')
  const t1 = await readAll(t, tiersOf('svc', source, 2)[0]!, 1)
  const info = readTierRecord(t1[0]!)!
  assert.equal(info.tier, 1)
  assert.equal(info.attempts, 2)
  assert.equal(info.origin.topic, source)
  assert.ok(info.token, 'a parked head carries its token')
  const metrics = await registry.metrics()
  assert.match(metrics, /lifeline_retry_tier_records_total\{group="[^"]+",topic="[^"]+",tier="1"\} 1/)
  assert.match(metrics, /lifeline_retry_tier_records_total\{group="[^"]+",topic="[^"]+",tier="2"\} 1/)
  assert.match(metrics, /lifeline_retry_due_lag_seconds_count\{group="[^"]+",tier="2"\} 1/)
  assert.match(metrics, /lifeline_parked_keys\{group="[^"]+"\} 1/)
})

test('records behind a retried record of their key are parked and released in order when it succeeds in a tier', async (t) => {
  const source = await topic(t, { partitions: 2 })
  const db = await stateDatabase(t)
  const applied = new Map<string, number[]>()
  let failFirst = true
  const c = await lifeline<{ key: string; n: number }>(t, {
    topics: [source],
    state: db,
    parking: { pollMs: 100 },
    retry: { maxAttempts: 1 },
    retryTopics: { delaysMs: [500] },
    handler: ({ value }) => {
      if (value.key === 'K' && value.n === 1 && failFirst) {
        failFirst = false
        throw new Error('transient')
      }
      applied.set(value.key, [...(applied.get(value.key) ?? []), value.n])
    },
  })
  const parkedEvents: number[] = []
  const released: number[] = []
  c.on('record-parked', (e) => parkedEvents.push(e.offset))
  c.on('released', (e) => released.push(e.replayed))
  const p = producer(t)
  const records = []
  for (let n = 1; n <= 5; n++) for (const key of ['K', 'A', 'B']) records.push({ topic: source, key, value: JSON.stringify({ key, n }) })
  await p.send(records)
  await waitFor(() => applied.get('A')?.length === 5 && applied.get('B')?.length === 5, 'the other keys')
  assert.deepEqual(applied.get('K') ?? [], [], 'nothing of K overtook its failed first record')
  await waitFor(() => parkedEvents.length === 4, 'K2..K5 parked')
  await waitFor(() => applied.get('K')?.length === 5, 'K released', 10_000)
  assert.deepEqual(applied.get('K'), [1, 2, 3, 4, 5])
  // The key is forgotten just after its last parked record ran.
  await waitFor(() => released.length === 1, 'the released event')
  assert.deepEqual(released, [4])
  assert.deepEqual(await createParkedKeys(db).list(), [], 'the key is forgotten once drained')
  assert.equal(c.stats().parkedKeys, 0)
  // K flows normally again.
  await p.send([{ topic: source, key: 'K', value: JSON.stringify({ key: 'K', n: 6 }) }])
  await waitFor(() => applied.get('K')?.length === 6, 'K6')
})

test('a dead-lettered record parks its key until an operator releases it; a parked record that fails on replay becomes the new head', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const applied: number[] = []
  const poison = new Set([1, 3])
  const c = await lifeline<{ n: number }>(t, {
    topics: [source],
    state: db,
    parking: { pollMs: 100 },
    handler: ({ value }) => {
      if (poison.has(value.n)) throw new NonRetriableError(`poison ${value.n}`)
      applied.push(value.n)
    },
  })
  const dead: number[] = []
  c.on('dead-letter', (e) => dead.push(e.offset))
  const p = producer(t)
  await p.send(Array.from({ length: 5 }, (_, n) => ({ topic: source, key: 'order-7', value: JSON.stringify({ n }) })))
  await waitFor(() => dead.length === 1, 'the first poison dead-lettered')
  const keys = createParkedKeys(db)
  await waitFor(async () => (await keys.show(c.stats().assigned.length > 0 ? (await keys.list())[0]?.group ?? '' : '', source, 'order-7'))?.key.parkedRecords === 3, 'three records parked behind it')
  assert.deepEqual(applied, [0])
  const [parked] = await keys.list({ topic: source })
  assert.equal(parked!.status, 'parked')
  assert.equal(parked!.headOffset, 1)
  assert.equal(parked!.headLocation, 'dlq')
  assert.equal(parked!.keyText, 'order-7')
  const shown = await keys.show(parked!.group, source, 'order-7')
  assert.deepEqual(shown!.records.map((r) => r.offset), [2, 3, 4])
  assert.deepEqual(JSON.parse(shown!.records[0]!.value!.toString()), { n: 2 })

  await keys.release({ group: parked!.group, topic: source, key: 'order-7', actor: 'alice', reason: 'discarded' })
  // 2 replays, 3 is poison again: it goes to the DLQ and becomes the head; 4 stays parked.
  await waitFor(() => dead.length === 2, 'the replayed poison dead-lettered')
  await waitFor(async () => (await keys.list())[0]?.headOffset === 3, 'the head moved to offset 3')
  assert.deepEqual(applied, [0, 2])
  const again = await keys.show(parked!.group, source, 'order-7')
  assert.deepEqual(again!.records.map((r) => r.offset), [4])
  assert.equal(again!.key.status, 'parked')
  assert.deepEqual(again!.events.map((e) => e.event).reverse(), ['parked', 'released', 'head-moved'])
  await assert.rejects(keys.release({ group: parked!.group, topic: source, key: 'order-7', actor: 'bob', reason: 'x', expectHeadOffset: 1 }), { code: 'LL_KEY_NOT_PARKED' })
  await keys.release({ group: parked!.group, topic: source, key: 'order-7', actor: 'bob', reason: 'discarded', expectHeadOffset: 3 })
  await waitFor(() => applied.length === 3, 'the last parked record')
  assert.deepEqual(applied, [0, 2, 4])
  await waitFor(async () => (await keys.list()).length === 0, 'the key forgotten')
})

test("ordering 'none' keeps independent retries: a retried record's successors of the same key go ahead, and no state database is needed", async (t) => {
  const source = await topic(t, { partitions: 1 })
  const applied: number[] = []
  let failed = false
  await lifeline<{ n: number }>(t, {
    topics: [source],
    ordering: 'none',
    concurrency: 1,
    retry: { maxAttempts: 1 },
    retryTopics: { delaysMs: [300] },
    handler: ({ value }) => {
      if (value.n === 1 && !failed) {
        failed = true
        throw new Error('transient')
      }
      applied.push(value.n)
    },
  })
  await producer(t).send([1, 2, 3].map((n) => ({ topic: source, key: 'same-key', value: JSON.stringify({ n }) })))
  await waitFor(() => applied.length === 3, 'all three, the first after its tier')
  assert.deepEqual(applied, [2, 3, 1], 'the successors did not wait for the retried record')
})

test('a retry-tier copy waiting for its head check holds no handler slot: records of other keys run meanwhile', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const real = await stateDatabase(t)
  // The tier copy's head check (one statement) waits at a gate the test opens.
  let checking = false
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  const db: SqlExecutor = {
    kind: real.kind,
    transaction: (fn) => real.transaction(fn),
    close: () => real.close(),
    async query(text, params) {
      if (text.includes('select t.i from jsonb_to_recordset($2::jsonb)')) {
        checking = true
        await gate
      }
      return real.query(text, params)
    },
  }
  const attempts: string[] = []
  const good: string[] = []
  await lifeline<{ id: string }>(t, {
    topics: [source],
    state: db,
    concurrency: 1,
    retry: { maxAttempts: 1 },
    retryTopics: { delaysMs: [100] },
    handler: ({ value, topic: tp }) => {
      if (value.id === 'bad') {
        attempts.push(tp)
        throw new Error('downstream said no')
      }
      good.push(value.id)
    },
  })
  const p = producer(t)
  await p.send([{ topic: source, key: 'k-bad', value: JSON.stringify({ id: 'bad' }) }])
  await waitFor(() => checking, 'the tier copy checking its head')
  await p.send(Array.from({ length: 5 }, (_, i) => ({ topic: source, key: `k${i}`, value: JSON.stringify({ id: `g${i}` }) })))
  // With concurrency 1, a copy holding its slot through the check would keep these waiting at the gate.
  await waitFor(() => good.length === 5, 'the other keys running while the head check waits', 15_000)
  assert.equal(attempts.length, 1, 'the tier copy has not run yet')
  open()
  const dlq = await readAll(t, `svc.${source}.dlq`, 1)
  assert.equal(attempts.length, 2, 'the source attempt and tier 1')
  assert.equal(decodeFailureHeaders(dlq[0]!.headers)!.attempts, 2)
})
