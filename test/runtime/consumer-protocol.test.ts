/**
 * Issue 10's scenarios, each reproduced on the real broker: where the review found that order or no-loss
 * could break, this is the test that showed it (red on the code before the fenced, write-ahead protocol)
 * and now guards it. Names start with the scenario number.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { listRecords } from '../../src/dlq/records.js'
import { replayRecord } from '../../src/dlq/redrive/replay.js'
import { ProtocolStore } from '../../src/ordering/protocol-store.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { stateDatabase } from '../helpers/db.js'
import { admin, brokers, consumer as rawConsumer, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline, readAll } from '../helpers/lifeline.js'

interface Rec {
  id: string
  key?: string
}

const send = (t: TestContext, source: string, recs: Array<Rec & { key: string }>) => producer(t).send(recs.map((r) => ({ topic: source, key: r.key, value: JSON.stringify(r) })))

async function parkedKey(db: SqlExecutor, group: string, key: string) {
  return (await createParkedKeys(db).list({ group, limit: 1000 })).find((k) => k.keyText === key)
}

async function topicGone(t: TestContext, name: string): Promise<void> {
  const a = admin(t)
  await waitFor(async () => !(await a.listTopics()).includes(name), `${name} deleted`, 30_000)
}

test('scenario 1: a parked record that fails again on replay is never lost, even when its DLQ write is cancelled', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s1')
  const dlq = `svc.${source}.dlq`
  let followerFails = false
  const applied: string[] = []
  const handler = ({ value }: { value: Rec }) => {
    if (value.id === 'h') throw new NonRetriableError('poison head')
    if (value.id === 'f' && followerFails) throw new NonRetriableError('the follower fails on replay too')
    applied.push(value.id)
  }
  const a = await lifeline<Rec>(t, { groupId, topics: [source], state: db, parking: { pollMs: 50 }, handler })
  await send(t, source, [{ id: 'h', key: 'K' }, { id: 'f', key: 'K' }])
  await waitFor(async () => (await parkedKey(db, groupId, 'K'))?.parkedRecords === 1, 'K parked behind h with f stored')
  // The DLQ goes away (a broker-side outage of that topic): f's DLQ write cannot succeed.
  await admin(t).deleteTopics([dlq])
  await topicGone(t, dlq)
  followerFails = true
  await createParkedKeys(db).release({ group: groupId, topic: source, key: 'K', actor: 'op', reason: 'discard h' })
  // f replays, fails, and its DLQ write fails and is retried ... until the consumer is closed.
  await waitFor(() => a.stats().paused.length > 0, 'the partition paused by the failing write', 30_000)
  await a.close()
  // A new member (the DLQ back) finishes what was interrupted: f reaches the DLQ, K is parked behind it.
  await lifeline<Rec>(t, { groupId, topics: [source], state: db, parking: { pollMs: 50 }, handler })
  const dead = await readAll(t, dlq, 1, 60_000)
  assert.deepEqual(dead.map((r) => JSON.parse(r.value!.toString()).id), ['f'], 'f is in the DLQ')
  await waitFor(async () => (await parkedKey(db, groupId, 'K'))?.headLocation === 'dlq', 'K parked behind f')
  assert.deepEqual(applied, [])
})

test('scenario 3: a retry-tier head that fails after an operator released its key cannot park the key again', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s3')
  let openGate!: () => void
  const gate = new Promise<void>((resolve) => (openGate = resolve))
  let inTier!: () => void
  const running = new Promise<void>((resolve) => (inTier = resolve))
  const applied: string[] = []
  await lifeline<Rec>(t, {
    groupId, topics: [source], state: db, parking: { pollMs: 50 },
    retry: { maxAttempts: 1, backoff: { type: 'fixed', ms: 1 } },
    retryTopics: { delaysMs: [100, 100] },
    handler: async (m) => {
      const value = m.value
      if (value.id === 'h') {
        if (m.header('lifeline.retry.tier') === '1') {
          inTier()
          await gate // the operator releases the key meanwhile
        }
        throw new Error('still down')
      }
      applied.push(value.id)
    },
  })
  await send(t, source, [{ id: 'h', key: 'K' }, { id: 'f', key: 'K' }])
  await running
  await createParkedKeys(db).release({ group: groupId, topic: source, key: 'K', actor: 'op', reason: 'give h up' })
  openGate()
  await waitFor(() => applied.includes('f'), 'f applied after the release')
  // The tier head failed after the release: its move to tier 2 must not have re-parked the key.
  await waitFor(async () => (await parkedKey(db, groupId, 'K')) === undefined, 'K drained and forgotten')
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(await parkedKey(db, groupId, 'K'), undefined, 'still not parked: the release was not undone')
  assert.deepEqual(applied, ['f'])
})

test('scenario 4: a member that has not heard of a newer owner (its epoch bumped behind its back) has its state writes refused: it stops the partition, writes and commits nothing of it', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s4')
  let openGate!: () => void
  const gate = new Promise<void>((resolve) => (openGate = resolve))
  let entered!: () => void
  const running = new Promise<void>((resolve) => (entered = resolve))
  const applied: string[] = []
  const fenced: Array<{ topic: string; partition: number; epoch: number }> = []
  const c = await lifeline<Rec>(t, {
    groupId, topics: [source], state: db, parking: { pollMs: 50 },
    retry: { maxAttempts: 1, backoff: { type: 'fixed', ms: 1 } },
    retryTopics: { delaysMs: [100] },
    handler: async (m) => {
      if (m.value.id === 'z1') {
        entered()
        await gate // meanwhile a new owner claims the partition: this member is now a zombie that does not know it
        throw new Error('downstream timeout')
      }
      applied.push(m.value.id)
    },
  })
  c.on('fenced', (f) => fenced.push(f))
  await send(t, source, [{ id: 'a', key: 'A' }])
  await waitFor(() => applied.includes('a'), 'a applied')
  await waitFor(async () => (await admin(t).groupOffsets(groupId, source))[0]?.offset === 1, 'a committed')
  await send(t, source, [{ id: 'z1', key: 'Z' }, { id: 'z2', key: 'Z' }, { id: 'b', key: 'B' }])
  await running
  await waitFor(() => applied.includes('b'), 'b applied (its key is free)')
  // What a new owner does on assignment: claim the partition, bumping its epoch (the group never told this member).
  const claim = await new ProtocolStore(db).claim(groupId, source, 0, 'member-new', true)
  openGate()
  // z1 fails: parking its key behind a retry-tier copy is a state write with the old epoch: refused.
  await waitFor(() => fenced.length > 0, 'the zombie fenced')
  assert.deepEqual(fenced[0], { topic: source, partition: 0, epoch: claim.epoch - 1 })
  await new Promise((r) => setTimeout(r, 500))
  assert.equal(await parkedKey(db, groupId, 'Z'), undefined, 'no park was written by the old epoch')
  assert.deepEqual(applied.sort(), ['a', 'b'], 'z2 never overtook z1; nothing ran after the fence')
  const tier = (await admin(t).listTopics()).filter((n) => n.startsWith(source) && n !== source)
  for (const name of tier) assert.ok((await admin(t).topicOffsets(name)).every((p) => p.high === 0), `${name}: no copy produced by the zombie`)
  assert.equal((await admin(t).groupOffsets(groupId, source))[0]?.offset, 1, 'nothing of the fenced partition committed after a')
})

test('scenario 7: a gap whose missing record sits later in the same partition never stalls it; held records live in the database', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const applied: number[] = []
  const c = await lifeline<{ seq: number }>(t, {
    topics: [source], state: db,
    // maxTotal used to bound an in-memory reorder buffer (a full one paused the partition): now without effect.
    sequence: { extract: (m) => (m.value as { seq: number }).seq, firstSequence: 1, timeoutMs: 60_000, policy: 'hold', maxTotal: 2, maxPerKey: 2 },
    handler: ({ value }) => void applied.push(value.seq),
  })
  const p = producer(t)
  await p.send([1, ...Array.from({ length: 40 }, (_, i) => i + 3)].map((seq) => ({ topic: source, key: 'A', value: JSON.stringify({ seq }) })))
  await waitFor(() => c.stats().reorderBuffered === 40, 'seq 3..42 stored behind the gap', 30_000)
  assert.deepEqual(c.stats().paused, [], 'the partition flows on')
  assert.equal(c.stats().buffered, 0, 'nothing held in memory')
  await p.send([{ topic: source, key: 'A', value: JSON.stringify({ seq: 2 }) }])
  await waitFor(() => applied.length === 42, 'every record applied once the gap filled', 30_000)
  assert.deepEqual(applied, Array.from({ length: 42 }, (_, i) => i + 1))
})

test('scenario 7: a gap and the records held behind it survive a restart, and its timer keeps counting from when it opened', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s7')
  const options = { groupId, topics: [source], state: db, parking: { pollMs: 50 }, sequence: { extract: (m: { value: unknown }) => (m.value as { seq: number }).seq, firstSequence: 1, timeoutMs: 8000, policy: 'skip' as const } }
  const applied: number[] = []
  const first = await lifeline<{ seq: number }>(t, { ...options, handler: ({ value }) => void applied.push(value.seq) })
  await producer(t).send([1, 3, 4].map((seq) => ({ topic: source, key: 'A', value: JSON.stringify({ seq }) })))
  await waitFor(() => first.stats().reorderBuffered === 2, 'seq 3 and 4 stored behind the gap at 2')
  const openedAt = Date.now()
  await new Promise((r) => setTimeout(r, 4000))
  await first.close()
  const restartedAt = Date.now()
  const gaps: number[] = []
  const second = await lifeline<{ seq: number }>(t, { ...options, handler: ({ value }) => void applied.push(value.seq) })
  second.on('sequence-gap', () => gaps.push(Date.now()))
  await waitFor(() => applied.length === 3, 'seq 3 and 4 applied once the gap timed out (policy skip)', 30_000)
  assert.deepEqual(applied, [1, 3, 4])
  const waited = gaps[0]! - restartedAt
  t.diagnostic(`gap opened ${restartedAt - openedAt} ms before the restart; expired ${waited} ms after it (timeout 8000)`)
  assert.ok(gaps[0]! - openedAt >= 8000, 'not before its timeout')
  assert.ok(waited < 7000, `the timer counted from when the gap opened, not from the restart (${waited} ms after it)`)
})

test('scenario 8: a half-open probe abandoned by a revocation returns its permit; an aborted probe never closes the breaker', { timeout: 120_000 }, async (t) => {
  const a = await topic(t, { partitions: 1 })
  const groupId = randomName('s8')
  const transitions: string[] = []
  let probes = 0
  const c = await lifeline<Rec>(t, {
    groupId, topics: [a], drainTimeoutMs: 300,
    retry: { maxAttempts: 100, backoff: { type: 'fixed', ms: 10 } },
    circuitBreaker: { windowMs: 10_000, minimumCalls: 3, failureRateThreshold: 0.5, openMs: 200, halfOpenProbes: 1, successesToClose: 1 },
    handler: async ({ signal }) => {
      if (transitions.includes('half-open')) {
        // The probe hangs (the downstream hangs); it returns only when its partition is taken away.
        probes++
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
        return // an aborted call that "returns": it must not count as the downstream's recovery
      }
      throw new Error('downstream down')
    },
  })
  c.on('breaker', (tr) => transitions.push(tr.to))
  await send(t, a, [{ id: '1', key: 'k1' }, { id: '2', key: 'k2' }, { id: '3', key: 'k3' }])
  await waitFor(() => probes === 1, 'a half-open probe running', 30_000)
  await c.close()
  assert.ok(!transitions.includes('closed'), `the aborted probe did not close the breaker: ${transitions.join(' → ')}`)
})

test('scenario 8: a revocation that takes the topic of a hanging probe away frees the breaker for the topics that stay', { timeout: 120_000 }, async (t) => {
  const a = await topic(t, { partitions: 1 })
  const b = await topic(t, { partitions: 1 })
  const groupId = randomName('s8b')
  const transitions: string[] = []
  const appliedB: string[] = []
  let probing = false
  const c1 = await lifeline<Rec>(t, {
    groupId, topics: [a, b], drainTimeoutMs: 200,
    retry: { maxAttempts: 100, backoff: { type: 'fixed', ms: 10 } },
    circuitBreaker: { windowMs: 10_000, minimumCalls: 3, failureRateThreshold: 0.5, openMs: 300, halfOpenProbes: 1, successesToClose: 1 },
    handler: async ({ topic: tp, value, signal }) => {
      if (tp === b) return void appliedB.push(value.id)
      if (transitions.includes('half-open')) {
        probing = true
        await new Promise(() => undefined) // hangs for good, deaf to its signal
      }
      void signal
      throw new Error('downstream of a is down')
    },
  })
  c1.on('breaker', (tr) => transitions.push(tr.to))
  await send(t, a, [{ id: 'a1', key: 'k1' }, { id: 'a2', key: 'k2' }, { id: 'a3', key: 'k3' }])
  await waitFor(() => probing, 'a probe hanging on topic a', 30_000)
  // A second member takes topic a away (it subscribes to a only, so the assignor gives it a's partition).
  const c2 = rawConsumer(t, { groupId })
  c2.subscribe([a])
  const polling = (async () => {
    for (let i = 0; i < 400 && !c1.stats().assigned.every((p) => p.topic === b); i++) await c2.poll(100, 50)
  })()
  await waitFor(() => c1.stats().assigned.length === 1 && c1.stats().assigned[0]!.topic === b, 'topic a revoked from the first member', 60_000)
  await polling
  await send(t, b, [{ id: 'b1', key: 'x' }])
  await waitFor(() => appliedB.includes('b1'), 'topic b flows again (its records probe and close the breaker)', 30_000)
})

test('scenario 9: records fetched while a partition is claimed wait paused and bounded; the claim finishes once the database answers', { skip: process.env.DATABASE_URL ? false : 'needs the PostgreSQL server (a lock held by a second session)', timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const { connectAgain } = await import('../helpers/db.js')
  const { migrateLifeline } = await import('../../src/store/schema.js')
  await migrateLifeline(db)
  await producer(t).send(Array.from({ length: 3000 }, (_, i) => ({ topic: source, key: `k${i % 50}`, value: JSON.stringify({ id: String(i) }) })))
  // A second session holds the ordering tables: the claim (and any state read) hangs until it lets go.
  const blocker = await connectAgain(t, db)
  let letGo!: () => void
  const held = new Promise<void>((resolve) => (letGo = resolve))
  defer(t, () => letGo()) // never leave the lock held, whatever happens
  const holding = blocker.transaction(async (tx) => {
    await tx.query('lock table lifeline_parked_keys in access exclusive mode')
    await held
  })
  const applied: string[] = []
  const paused: string[] = []
  const c = await lifeline<Rec>(t, { topics: [source], state: db, maxBufferedPerPartition: 200, handler: ({ value }) => void applied.push(value.id) })
  c.on('paused', (_p, reason) => paused.push(reason))
  await waitFor(() => paused.includes('state'), "the partition paused while its claim hangs (reason 'state')", 40_000)
  assert.equal(applied.length, 0)
  letGo()
  await holding
  await waitFor(() => applied.length === 3000, 'every record once the claim finished', 60_000)
})

test('scenario 10: a tier delay shortened since a record was written (or a writer clock ahead) does not hold the tier partition', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s10')
  const base = { groupId, topics: [source], state: db, parking: { pollMs: 50 }, retry: { maxAttempts: 1, backoff: { type: 'fixed' as const, ms: 1 } } }
  let healthy = false
  const applied: string[] = []
  const handler = ({ value }: { value: Rec }) => {
    if (!healthy) throw new Error('down')
    applied.push(value.id)
  }
  const first = await lifeline<Rec>(t, { ...base, retryTopics: { delaysMs: [600_000] }, handler })
  const moved = new Promise<void>((resolve) => first.once('retry-tier', () => resolve()))
  await send(t, source, [{ id: 'h', key: 'K' }])
  await moved // written to tier 1, due in 10 minutes by the first member's setting
  await first.close()
  healthy = true
  const started = Date.now()
  await lifeline<Rec>(t, { ...base, retryTopics: { delaysMs: [500] }, handler })
  await waitFor(() => applied.includes('h'), 'the tier record runs on the new delay', 30_000)
  t.diagnostic(`ran ${Date.now() - started} ms after the restart with a 500 ms delay`)
})

test('scenario 11: a retry-tier record with unreadable headers is dead-lettered at its own coordinates and parks nothing', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s11')
  const applied: string[] = []
  await lifeline<Rec>(t, { groupId, topics: [source], state: db, retryTopics: { delaysMs: [100] }, handler: ({ value }) => void applied.push(value.id) })
  const tier = `svc.${source}.retry.1`
  await producer(t).send([{ topic: tier, partition: 0, key: 'K', value: JSON.stringify({ id: 'garbage' }), headers: [{ key: 'lifeline.retry.tier', value: Buffer.from('x') }] }])
  const [dead] = await readAll(t, `svc.${source}.dlq`, 1)
  const ctx = decodeFailureHeaders(dead!.headers)!
  assert.equal(ctx.errorCode, 'LL_RETRY_TIER')
  assert.equal(ctx.originTopic, tier, 'its own (tier) topic, not the source: its offset is a tier offset')
  await send(t, source, [{ id: 'live', key: 'K' }])
  await waitFor(() => applied.includes('live'), "K's live record runs: nothing parked it")
  assert.equal(await parkedKey(db, groupId, 'K'), undefined)
})

test('scenario 12: a parked head redriven to its origin topic applies before the records that waited behind it', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s12')
  let fixed = false
  const applied: string[] = []
  await lifeline<Rec>(t, {
    groupId, topics: [source], state: db, parking: { pollMs: 50 },
    handler: ({ value }) => {
      if (value.id === 'h' && !fixed) throw new NonRetriableError('bad until fixed')
      applied.push(value.id)
    },
  })
  await send(t, source, [{ id: 'h', key: 'K' }, { id: 'f1', key: 'K' }, { id: 'f2', key: 'K' }])
  await waitFor(async () => (await parkedKey(db, groupId, 'K'))?.parkedRecords === 2, 'K parked behind h, f1 and f2 waiting')
  const indexer = createDlqIndexer({ brokers: brokers(), db, topics: [`svc.${source}.dlq`], groupId: randomName('indexer') })
  defer(t, () => indexer.close())
  await indexer.start()
  let id: string | undefined
  await waitFor(async () => (id = (await listRecords(db, {}))[0]?.id) !== undefined, 'h indexed')
  fixed = true
  const p = producer(t)
  await replayRecord({ db, producer: p, kafka: { brokers: brokers() }, parkedKeys: createParkedKeys(db) }, id!, { actor: 'operator' })
  await waitFor(() => applied.length === 3, 'h, f1 and f2 applied')
  assert.deepEqual(applied, ['h', 'f1', 'f2'], 'the head first, then what waited behind it')
  await waitFor(async () => (await parkedKey(db, groupId, 'K')) === undefined, 'K forgotten')
})

test('scenario 15: a retry-tier partition paused for its due time and taken away comes back unpaused', { timeout: 120_000 }, async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('s15')
  let healthy = false
  const applied: string[] = []
  const c = await lifeline<Rec>(t, {
    groupId, topics: [source], state: db, parking: { pollMs: 50 },
    retry: { maxAttempts: 1, backoff: { type: 'fixed', ms: 1 } },
    retryTopics: { delaysMs: [8000] },
    handler: ({ value }) => {
      if (!healthy) throw new Error('down')
      applied.push(value.id)
    },
  })
  const events: string[] = []
  c.on('paused', (p, reason) => events.push(`pause ${p.topic === source ? 'source' : 'tier'} ${reason}`))
  c.on('resumed', (p) => events.push(`resume ${p.topic === source ? 'source' : 'tier'}`))
  c.on('partitions-revoked', (ps) => events.push(`revoked ${ps.map((p) => (p.topic === source ? 'source' : 'tier')).join(',')}`))
  c.on('partitions-assigned', (ps) => events.push(`assigned ${ps.map((p) => (p.topic === source ? 'source' : 'tier')).join(',')}`))
  await send(t, source, [{ id: 'h', key: 'K' }])
  const tier = `svc.${source}.retry.1`
  await waitFor(() => events.includes('pause tier retry-delay'), 'the tier partition paused until h is due')
  // A member subscribed to the tier only takes the tier partition away, then leaves: it comes back.
  const other = rawConsumer(t, { groupId })
  other.subscribe([tier])
  for (let i = 0; i < 400 && !events.some((e) => e.startsWith('revoked') && e.includes('tier')); i++) await other.poll(100, 50)
  // Healthy from now on: h, due 8 s after it was written, must succeed once its partition is back, whenever
  // that is (set later, a loaded machine could run h the moment the partition returns, before the flag).
  healthy = true
  await other.close()
  await waitFor(() => events.filter((e) => e === 'assigned tier').length >= 1 && c.stats().assigned.some((p) => p.topic === tier), 'the tier partition back', 60_000)
  await waitFor(() => applied.includes('h'), `h runs once due: the tier partition is not left paused (${events.join('; ')})`, 30_000)
})
