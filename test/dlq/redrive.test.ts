import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import Type from 'typebox'
import { ReplayHeaders, parseDeadLetter } from '../../src/failure/formats.js'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { MASKED_HEADER, Masker } from '../../src/failure/masking.js'
import { getRecord, indexRecords, listRecords, type IndexItem } from '../../src/dlq/records.js'
import { editRecord } from '../../src/dlq/redrive/edit.js'
import { createRedriveJob, getJob, pauseJob, previewRedrive } from '../../src/dlq/redrive/jobs.js'
import { discardRecord, replayEdited, replayRecord } from '../../src/dlq/redrive/replay.js'
import { leaseLockKey } from '../../src/dlq/redrive/run.js'
import { resumeInterruptedJobs, runRedriveJob } from '../../src/dlq/redrive/runner.js'
import type { RedriveDeps } from '../../src/dlq/redrive/types.js'
import type { ConsumedRecord, KafkaHeader, KafkaProducer } from '../../src/kafka/types.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { encodeFailureHeaders } from '../../src/failure/headers.js'
import type { SqlExecutor, SqlRow } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { stateDatabase } from '../helpers/db.js'
import { isLifelineError } from '../../src/errors.js'
import { admin, brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { assertEachOnce, header, lifeline, readAll } from '../helpers/lifeline.js'

const h = (key: string, value: string): KafkaHeader => ({ key, value: Buffer.from(value, 'utf8') })

async function database(t: TestContext): Promise<SqlExecutor> {
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  return db
}

let dlqOffset = 0

/** A Lifeline dead letter of `origin` as the indexer would store it. */
function deadLetter(o: { origin: string; partition?: number; offset: number; key: string | null; value: string | Buffer | null; headers?: KafkaHeader[]; group?: string; masked?: boolean }): IndexItem {
  const now = Date.now()
  const headers = encodeFailureHeaders(o.headers ?? [], {
    originTopic: o.origin, originPartition: o.partition ?? 0, originOffset: o.offset, originTimestamp: now, group: o.group ?? 'billing', service: 'svc',
    errorClass: 'NonRetriableError', errorCode: 'E_BAD', errorMessage: 'bad', errorFingerprint: 'fp', attempts: 1, firstFailureAt: now, lastFailureAt: now,
  })
  if (o.masked) headers.push(h(MASKED_HEADER, 'v1'))
  const record: ConsumedRecord = {
    topic: `svc.${o.origin}.dlq`, partition: 0, offset: dlqOffset++, key: o.key === null ? null : Buffer.from(o.key), value: typeof o.value === 'string' ? Buffer.from(o.value) : o.value,
    headers, timestamp: now, size: 0,
  }
  return { record, context: parseDeadLetter(record), masked: o.masked }
}

const indexOne = async (db: SqlExecutor, item: IndexItem): Promise<string> => (await indexRecords(db, [item]))[0]!.id

function deps(t: TestContext, db: SqlExecutor, extra: Partial<RedriveDeps> = {}): RedriveDeps {
  return { db, producer: producer(t), kafka: { brokers: brokers() }, heartbeatMs: 200, ...extra }
}

test('a single replay goes to the origin partition with replay headers, decrypted, user headers kept; limits and force', async (t) => {
  const db = await database(t)
  const origin = await topic(t, { partitions: 3 })
  const masker = new Masker([{ topics: [origin], rules: [{ path: '$.card', action: 'encrypt' }] }], { currentKeyId: 'k1', keys: { k1: randomBytes(32) } })
  const clear = JSON.stringify({ id: 7, card: '4111-1111' })
  const masked = masker.mask(origin, { value: Buffer.from(clear), errorMessage: '', headers: [] }).value!
  assert.ok(masked.toString().includes('enc:v2:'))
  const id = await indexOne(db, deadLetter({ origin, partition: 2, offset: 41, key: 'order-7', value: masked, headers: [h('trace-id', 'abc')], masked: true }))

  // Without the keyring the encrypted value is refused, never sent as ciphertext.
  await assert.rejects(replayRecord(deps(t, db), id, { actor: 'alice' }), { code: 'LL_DECRYPT' })
  const d = deps(t, db, { masker, maxRedrivesPerRecord: 2 })
  const result = await replayRecord(d, id, { actor: 'alice' })
  assert.equal(result.topic, origin)
  assert.equal(result.partition, 2)
  const [replayed] = await readAll(t, origin, 1)
  assert.equal(replayed!.partition, 2)
  assert.equal(replayed!.key!.toString(), 'order-7')
  assert.deepEqual(JSON.parse(replayed!.value!.toString()), JSON.parse(clear))
  assert.equal(header(replayed!, 'trace-id'), 'abc')
  assert.equal(header(replayed!, ReplayHeaders.id), result.replayId)
  assert.equal(header(replayed!, ReplayHeaders.count), '1')
  assert.equal(header(replayed!, ReplayHeaders.actor), 'alice')
  assert.deepEqual(replayed!.headers.filter((x) => x.key.startsWith('lifeline.') && !x.key.startsWith('lifeline.replay.')), [])

  const record = await getRecord(db, id)
  assert.equal(record.status, 'replayed')
  assert.equal(record.replayCount, 1)
  assert.deepEqual(record.events.map((e) => [e.from, e.to, e.actor]), [['pending', 'replaying', 'alice'], ['replaying', 'replayed', 'alice']])
  const { rows } = await db.query('select record_id, target_topic, target_partition, target_offset, replay_count from lifeline_dlq_replays where replay_id = $1', [result.replayId])
  assert.deepEqual([String(rows[0]!.record_id), rows[0]!.target_topic, Number(rows[0]!.target_partition), Number(rows[0]!.target_offset), Number(rows[0]!.replay_count)], [id, origin, 2, result.offset, 1])

  // Replayed already: refused unless forced; a forced replay counts 2; the limit (2) then refuses even a plain request.
  await assert.rejects(replayRecord(d, id, { actor: 'bob' }), { code: 'LL_DLQ_CONFLICT' })
  const again = await replayRecord(d, id, { actor: 'bob', force: true, target: { kind: 'topic', topic: origin, partition: 0 } })
  assert.equal(again.partition, 0)
  const both = await readAll(t, origin, 2)
  assert.equal(header(both.find((r) => r.partition === 0)!, ReplayHeaders.count), '2')
  await assert.rejects(replayRecord(d, id, { actor: 'bob' }), { code: 'LL_REDRIVE_LIMIT' })

  // Loop detection: a record that came back after 2 replays of its lineage is refused.
  const back = deadLetter({ origin, offset: 99, key: 'order-8', value: '{}', headers: [h(ReplayHeaders.id, 'elsewhere'), h(ReplayHeaders.count, '2')] })
  const backId = await indexOne(db, back)
  await assert.rejects(replayRecord(d, backId, { actor: 'alice' }), (err: { code: string; details: { loop: boolean } }) => err.code === 'LL_REDRIVE_LIMIT' && err.details.loop === true)
  await replayRecord(d, backId, { actor: 'alice', force: true })
})

test('a job an operator paused after a processor found it ready is not taken by that processor: only a resume runs a paused job', async (t) => {
  const db = await database(t)
  const origin = await topic(t)
  const elsewhere = await topic(t)
  await indexOne(db, deadLetter({ origin, offset: 1, key: 'k1', value: '{}' }))
  const job = await createRedriveJob({ db }, { filter: { topic: origin }, actor: 'alice', target: { kind: 'topic', topic: elsewhere } })
  // The processor's loop found the job ready; the operator pauses it before the processor claims it.
  await pauseJob(db, job.id, 'alice')
  await assert.rejects(runRedriveJob(deps(t, db), job.id, { resume: false }), (err) => isLifelineError(err, 'LL_DLQ_CONFLICT'))
  assert.equal((await getJob(db, job.id)).status, 'paused', "the operator's pause holds")
  const resumed = await runRedriveJob(deps(t, db), job.id, { resume: true })
  assert.equal(resumed.status, 'completed')
})

test('edit and replay: validated against the topic schema, diff stored, the edited value replayed', async (t) => {
  const db = await database(t)
  const origin = await topic(t)
  const id = await indexOne(db, deadLetter({ origin, offset: 3, key: 'k', value: JSON.stringify({ id: 1, amount: -5, note: 'x' }) }))
  const d = deps(t, db, { schemas: { [origin]: Type.Object({ id: Type.Number(), amount: Type.Number({ minimum: 0 }) }) } })
  await assert.rejects(editRecord(d, id, { value: { id: 1, amount: -1 }, actor: 'alice' }), { code: 'LL_SCHEMA_INVALID' })
  const edit = await editRecord(d, id, { value: { id: 1, amount: 5 }, actor: 'alice', reason: 'sign error' })
  assert.deepEqual(edit.diff, [{ op: 'remove', path: '/note', old: 'x' }, { op: 'replace', path: '/amount', old: -5, value: 5 }])
  const { rows } = await db.query('select diff, actor, reason from lifeline_dlq_edits where id = $1', [edit.editId])
  assert.deepEqual([rows[0]!.diff, rows[0]!.actor, rows[0]!.reason], [edit.diff, 'alice', 'sign error'])
  const result = await replayEdited(d, id, { actor: 'alice' })
  const [out] = await readAll(t, origin, 1)
  assert.deepEqual(JSON.parse(out!.value!.toString()), { id: 1, amount: 5 })
  const { rows: replay } = await db.query('select edited, edit_id from lifeline_dlq_replays where replay_id = $1', [result.replayId])
  assert.deepEqual([replay[0]!.edited, String(replay[0]!.edit_id)], [true, edit.editId])
  await assert.rejects(editRecord(d, id, { value: { id: 1, amount: 6 }, actor: 'alice' }), { code: 'LL_DLQ_CONFLICT' })
})

test('with a real consumer: discard releases the parked key; a replay that fails again is linked to its first life; loop refused; canary and failure-rate pauses', async (t) => {
  const db = await database(t)
  const source = await topic(t, { partitions: 2 })
  const dlq = `svc.${source}.dlq`
  defer(t, () => admin(t).deleteTopics([dlq]))
  const applied: string[] = []
  await lifeline<{ n: number; poison?: boolean }>(t, {
    topics: [source], state: db, parking: { pollMs: 100 },
    handler: (m) => {
      if (m.value.poison) throw new NonRetriableError(`poison ${m.value.n}`, { code: 'E_POISON' })
      applied.push(`${m.keyText}:${m.value.n}`)
    },
  })
  const p = producer(t)
  await p.send([
    { topic: source, key: 'disc', value: JSON.stringify({ n: 0, poison: true }) },
    { topic: source, key: 'disc', value: JSON.stringify({ n: 1 }) },
    { topic: source, key: 'loop', value: JSON.stringify({ n: 0, poison: true }) },
  ])
  const indexer = createDlqIndexer({ brokers: brokers(), db, topics: [dlq], groupId: randomName('indexer'), pollTimeoutMs: 100, migrate: false })
  defer(t, () => indexer.close())
  // The DLQ topic exists once the first dead letter is written.
  await waitFor(async () => (await admin(t).listTopics()).includes(dlq), 'the DLQ topic', 30_000)
  await indexer.start()
  await waitFor(async () => (await listRecords(db, { topic: source })).length === 2, 'two dead letters indexed', 30_000)
  const keys = createParkedKeys(db)
  await waitFor(async () => (await keys.list({ topic: source })).some((k) => k.keyText === 'disc' && k.parkedRecords === 1), 'disc parked with one record behind it')
  const d = deps(t, db, { parkedKeys: keys, maxRedrivesPerRecord: 2 })

  // Discard with a reason: the key is released and the record behind it runs.
  const [disc] = await listRecords(db, { key: 'disc' })
  await assert.rejects(discardRecord(d, disc!.id, { actor: 'alice', reason: '' }), { code: 'LL_ARGUMENT_INVALID' })
  await discardRecord(d, disc!.id, { actor: 'alice', reason: 'customer cancelled' })
  await waitFor(() => applied.includes('disc:1'), 'the parked record after the discard', 15_000)
  const discarded = await getRecord(db, disc!.id)
  assert.deepEqual([discarded.status, discarded.statusReason, discarded.statusActor], ['discarded', 'customer cancelled', 'alice'])
  assert.equal((await keys.list({ topic: source })).some((k) => k.keyText === 'disc' && k.status === 'parked'), false)

  // A replay that fails again comes back, linked to its first life, which becomes failed-again.
  const [life1] = await listRecords(db, { key: 'loop' })
  const r1 = await replayRecord(d, life1!.id, { actor: 'alice' })
  await waitFor(async () => (await listRecords(db, { key: 'loop' })).length === 2, 'the second life indexed', 30_000)
  const [, life2] = await listRecords(db, { key: 'loop' })
  assert.equal(life2!.previousId, life1!.id)
  assert.equal(life2!.replayId, r1.replayId)
  assert.equal(life2!.replayedBefore, 1)
  assert.equal((await getRecord(db, life1!.id)).status, 'failed-again')
  const detail = await getRecord(db, life2!.id)
  assert.deepEqual(detail.earlierLives.map((l) => l.id), [life1!.id])
  // Life 2 replays (lineage 2 of 2); life 3 comes back and is refused as a loop.
  await replayRecord(d, life2!.id, { actor: 'alice' })
  await waitFor(async () => (await listRecords(db, { key: 'loop' })).length === 3, 'the third life indexed', 30_000)
  const [, , life3] = await listRecords(db, { key: 'loop' })
  await assert.rejects(replayRecord(d, life3!.id, { actor: 'alice' }), (err: { code: string; details: { loop: boolean } }) => err.code === 'LL_REDRIVE_LIMIT' && err.details.loop === true)

  // A bulk redrive of poison: the canary comes back (paused), then, resumed, the failure rate pauses it.
  await p.send(Array.from({ length: 60 }, (_, n) => ({ topic: source, key: `bulk-${n}`, value: JSON.stringify({ n, poison: true }) })))
  await waitFor(async () => (await listRecords(db, { errorCode: 'E_POISON', status: 'pending', text: 'poison' })).length >= 61, 'the bulk dead letters', 30_000)
  const preview = await previewRedrive(d, { topic: source, status: 'pending' })
  assert.ok(preview.count >= 60)
  const bulk = await createRedriveJob(d, { filter: { topic: source, status: 'pending' }, actor: 'alice', ratePerSec: 20, canary: 3, canaryWaitMs: 2000, maxFailureRate: 0.3, failureSample: 5 })
  const paused = await runRedriveJob(d, bulk.id)
  assert.equal(paused.status, 'paused')
  assert.match(paused.statusReason!, /^canary/)
  assert.equal(paused.succeeded, 3)
  const again = await runRedriveJob(d, bulk.id)
  assert.equal(again.status, 'paused')
  assert.match(again.statusReason!, /^failure rate/)
  assert.ok(again.done < again.total, `paused before the end (${again.done} of ${again.total})`)
})

test('a bulk redrive of 10,000 records never exceeds its rate in any 1-second window and keeps per-key order; a second one adds nothing unless forced', async (t) => {
  const db = await database(t)
  const origin = await topic(t, { partitions: 3 })
  const KEYS = 100
  const PER_KEY = 100
  const items: IndexItem[] = []
  for (let n = 0; n < PER_KEY; n++) for (let k = 0; k < KEYS; k++) items.push(deadLetter({ origin, partition: k % 3, offset: n * KEYS + k, key: `k${k}`, value: JSON.stringify({ k, n }) }))
  // Indexed out of order: the job orders each key's records by origin offset, not by id.
  items.reverse()
  for (let i = 0; i < items.length; i += 1000) await indexRecords(db, items.slice(i, i + 1000))
  const d = deps(t, db)
  const preview = await previewRedrive(d, { topic: origin })
  assert.deepEqual([preview.count, preview.keys, preview.byTopic[origin]], [10_000, KEYS, 10_000])

  const RATE = 5000
  const job = await createRedriveJob(d, { filter: { topic: origin }, actor: 'alice', ratePerSec: RATE })
  assert.deepEqual([job.total, job.skipped, job.status], [10_000, 0, 'ready'])
  const progress: number[] = []
  const done = await runRedriveJob(d, job.id, { onProgress: (j) => progress.push(j.done) })
  assert.deepEqual([done.status, done.succeeded, done.failed, done.done], ['completed', 10_000, 0, 10_000])
  assert.ok(progress.length > 1 && progress.every((v, i) => i === 0 || v >= progress[i - 1]!))

  const out = await readAll(t, origin, 10_000, 60_000)
  assert.equal(out.length, 10_000)
  // The rate: counted from the records' timestamps (the limiter's admission times), sliding and fixed windows.
  const times = out.map((r) => r.timestamp).sort((a, b) => a - b)
  for (let i = 0; i + RATE < times.length; i++) assert.ok(times[i + RATE]! - times[i]! >= 1000, `more than ${RATE} sends within 1 s starting at ${times[i]}`)
  const perWindow = new Map<number, number>()
  for (const ts of times) perWindow.set(Math.floor(ts / 1000), (perWindow.get(Math.floor(ts / 1000)) ?? 0) + 1)
  assert.ok([...perWindow.values()].every((n) => n <= RATE))
  // Per-key order, read back from the target topic (each key is in one partition).
  const byKey = new Map<string, number[]>()
  for (const r of out) byKey.set(r.key!.toString(), [...(byKey.get(r.key!.toString()) ?? []), (JSON.parse(r.value!.toString()) as { n: number }).n])
  for (const [key, ns] of byKey) assert.deepEqual(ns, Array.from({ length: PER_KEY }, (_, i) => i), `key ${key} out of order`)
  // Each item holds where its replay landed (partition and offset of the record carrying its replay id).
  const landed = new Map(out.map((r) => [header(r, ReplayHeaders.id), `${r.partition}:${r.offset}`]))
  const { rows: acks } = await db.query<{ replay_id: string; target_partition: number; target_offset: string }>(
    'select replay_id, target_partition, target_offset::text from lifeline_dlq_job_items where job_id = $1', [job.id],
  )
  assert.equal(acks.length, 10_000)
  for (const a of acks) assert.equal(`${a.target_partition}:${a.target_offset}`, landed.get(a.replay_id), `item of replay ${a.replay_id}`)
  // Its record's history: one event, `replaying → replayed`, naming the job, the replay id and where it landed.
  const one = await getRecord(db, (await db.query<{ record_id: string }>('select record_id from lifeline_dlq_job_items where job_id = $1 and seq = 1', [job.id])).rows[0]!.record_id)
  assert.deepEqual(one.events.map((e) => [e.from, e.to, e.detail.jobId]), [['replaying', 'replayed', job.id]])
  assert.equal(`${one.events[0]!.detail.partition}:${one.events[0]!.detail.offset}`, landed.get(one.events[0]!.detail.replayId as string))

  // The same filter again: every record is replayed already, nothing is sent.
  const second = await createRedriveJob(d, { filter: { topic: origin }, actor: 'bob' })
  assert.deepEqual([second.total, second.skipped], [10_000, 10_000])
  const secondDone = await runRedriveJob(d, second.id)
  assert.deepEqual([secondDone.status, secondDone.succeeded], ['completed', 0])
  // Forced (one key), it replays them again: count 2.
  const forced = await createRedriveJob(d, { filter: { topic: origin, key: 'k1' }, actor: 'bob', force: true })
  const forcedDone = await runRedriveJob(d, forced.id)
  assert.equal(forcedDone.succeeded, PER_KEY)
  const all = await readAll(t, origin, 10_000 + PER_KEY, 60_000)
  assert.equal(all.length, 10_000 + PER_KEY)
  assert.equal(all.filter((r) => header(r, ReplayHeaders.count) === '2').length, PER_KEY)
})

test('a record discarded after the job read its window (before it was marked) is not sent: its item is skipped, its record stays discarded', async (t) => {
  const db = await database(t)
  const origin = await topic(t, { partitions: 1 })
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push(await indexOne(db, deadLetter({ origin, offset: i, key: `k${i}`, value: `v${i}` })))
  const d = deps(t, db)
  const job = await createRedriveJob(d, { filter: { topic: origin }, actor: 'alice' })
  // The operator's discard lands between the runner's window read and its `replaying` transaction.
  let discarded = false
  const racing = {
    kind: db.kind,
    query: async <R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) => {
      const result = await db.query<R>(text, params)
      if (!discarded && text.includes('from lifeline_dlq_job_items i join lifeline_dlq_records r') && text.includes('i.seq > $2')) {
        discarded = true
        await discardRecord(d, ids[2]!, { actor: 'bob', reason: 'poison' })
      }
      return result
    },
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  } satisfies SqlExecutor
  const done = await runRedriveJob({ ...d, db: racing }, job.id)
  assert.ok(discarded)
  assert.deepEqual([done.status, done.succeeded, done.skipped, done.done], ['completed', 4, 1, 5])
  const item = (await db.query<{ status: string; detail: string; replay_id: string | null }>('select status, detail, replay_id from lifeline_dlq_job_items where job_id = $1 and record_id = $2', [job.id, ids[2]])).rows[0]!
  assert.deepEqual([item.status, item.replay_id], ['skipped', null])
  assert.match(item.detail, /no longer pending/)
  const record = await getRecord(db, ids[2]!)
  assert.equal(record.status, 'discarded')
  assert.equal(record.replayCount, 0)
  assert.equal(Number((await db.query<{ n: string }>('select count(*) as n from lifeline_dlq_replays where record_id = $1', [ids[2]])).rows[0]!.n), 0)
  const out = await readAll(t, origin, 4, 30_000)
  assert.deepEqual(out.map((r) => r.value!.toString()).sort(), ['v0', 'v1', 'v3', 'v4'])
})

test('a failed send keeps its key back across pipelined batches: the next batch (prepared before the failure was known) and later ones skip the key; other keys go on', async (t) => {
  const db = await database(t)
  const origin = await topic(t, { partitions: 1 })
  // Key "a": its first record is larger than the producer accepts (message.max.bytes, 1 MB by default) and
  // fails at once; its next records sit in the next batches (batch size 1: each is prepared while the one
  // before it is in flight). Key "b" replays in full.
  const huge = 'x'.repeat(1_200_000)
  const items = [
    deadLetter({ origin, offset: 0, key: 'a', value: JSON.stringify({ n: 0, huge }) }),
    deadLetter({ origin, offset: 1, key: 'a', value: JSON.stringify({ n: 1 }) }),
    deadLetter({ origin, offset: 2, key: 'a', value: JSON.stringify({ n: 2 }) }),
    deadLetter({ origin, offset: 3, key: 'b', value: JSON.stringify({ n: 3 }) }),
    deadLetter({ origin, offset: 4, key: 'b', value: JSON.stringify({ n: 4 }) }),
  ]
  await indexRecords(db, items)
  // The real producer, its failure reported 300 ms late: the next batch is prepared before it is known, as
  // when a send fails after retries on a busy broker.
  const real = producer(t)
  const late: KafkaProducer = { ...real, send: (records) => real.send(records).catch(async (err: unknown) => { await new Promise((r) => setTimeout(r, 300)); throw err }) }
  const d = deps(t, db, { producer: late })
  const job = await createRedriveJob(d, { filter: { topic: origin }, actor: 'alice', batchSize: 1, maxFailureRate: 1 })
  const done = await runRedriveJob(d, job.id)
  assert.deepEqual([done.status, done.succeeded, done.failed, done.skipped, done.done], ['completed', 2, 1, 2, 5])
  const { rows } = await db.query<{ seq: number; status: string; detail: string | null; record: string }>(
    `select i.seq, i.status, i.detail, r.status as record from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id where i.job_id = $1 order by i.seq`,
    [job.id],
  )
  assert.deepEqual(rows.map((r) => [r.status, r.record]), [['failed', 'pending'], ['skipped', 'pending'], ['skipped', 'pending'], ['sent', 'replayed'], ['sent', 'replayed']])
  for (const r of rows.slice(1, 3)) assert.match(r.detail ?? '', /earlier record of its key failed/)
  // The held record's replay row is gone and its history is back to pending: nothing was sent for it.
  const held = await getRecord(db, (await db.query<{ record_id: string }>(`select record_id from lifeline_dlq_job_items where job_id = $1 and seq = 2`, [job.id])).rows[0]!.record_id)
  assert.equal(held.status, 'pending')
  assert.deepEqual(held.events.map((e) => [e.from, e.to]), [['replaying', 'pending']]) // a job's pending → replaying writes no event
  const { rows: replays } = await db.query<{ n: string }>('select count(*) as n from lifeline_dlq_replays where record_id = $1', [held.id])
  assert.equal(Number(replays[0]!.n), 0)
  const out = await readAll(t, origin, 2, 30_000)
  assert.deepEqual(out.map((r) => [r.key!.toString(), (JSON.parse(r.value!.toString()) as { n: number }).n]), [['b', 3], ['b', 4]])
  assert.equal((await readAll(t, origin, 3, 2000)).length, 2, 'nothing of key a was sent')
})

test('a runner that lost its lease (another runner claimed the job) records nothing more; the new runner settles its sends and every record arrives once', async (t) => {
  const db = await database(t)
  const origin = await topic(t, { partitions: 2 })
  const N = 600
  await indexRecords(db, Array.from({ length: N }, (_, n) => deadLetter({ origin, partition: n % 2, offset: n, key: `k${n % 20}`, value: JSON.stringify({ n }) })))
  const d = deps(t, db)
  const job = await createRedriveJob(d, { filter: { topic: origin }, actor: 'alice', ratePerSec: 400 })
  let done = 0
  const first = runRedriveJob(d, job.id, { onProgress: (j) => (done = j.done) })
  await waitFor(() => done >= 100, 'the first runner to record 100 items', 30_000)
  // Another replica's claim after a missed lease, as claim() writes it: the lease lock, a new runner, its heartbeat now.
  const rows = await db.transaction(async (tx) => {
    await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [leaseLockKey(job.id)])
    return (await tx.query<{ done: number }>(`update lifeline_dlq_jobs set runner = 'another-runner', heartbeat_at = now() where id = $1 returning done`, [job.id])).rows
  })
  const atTakeover = Number(rows[0]!.done)
  const stopped = await first
  assert.equal(stopped.status, 'running', 'the job is still running (for the new runner)')
  assert.ok(atTakeover < N, 'taken over mid-job')
  assert.equal((await getJob(db, job.id)).done, atTakeover, 'the old runner recorded nothing after the takeover')
  // The new runner dies too; its lease expires and the job resumes.
  await db.query(`update lifeline_dlq_jobs set heartbeat_at = null where id = $1`, [job.id])
  assert.deepEqual(await resumeInterruptedJobs(d, { staleMs: 600, wait: true }), [job.id])
  const final = await getJob(db, job.id)
  assert.deepEqual([final.status, final.succeeded, final.done], ['completed', N, N])
  await assertEachOnce(t, origin, N)
})

/**
 * Runs a 3,000-record job in a child process (test/fixtures/dlq-redrive-job.ts), kills it mid-job — with
 * SIGKILL from here, or by the named crash point it passes (LIFELINE_CRASH_AT, docs/crash-points.md) — then
 * resumes the job here and checks that every record arrived exactly once and every record is `replayed`.
 */
async function killedMidJob(t: TestContext, crashAt?: string): Promise<void> {
  const db = await database(t)
  const origin = await topic(t, { partitions: 2 })
  const N = 3000
  const items = Array.from({ length: N }, (_, n) => deadLetter({ origin, partition: n % 2, offset: n, key: `k${n % 50}`, value: JSON.stringify({ n }) }))
  for (let i = 0; i < items.length; i += 1000) await indexRecords(db, items.slice(i, i + 1000))
  const d = deps(t, db)
  const job = await createRedriveJob(d, { filter: { topic: origin }, actor: 'alice', ratePerSec: 1500 })
  const { rows } = await db.query<{ name: string }>('select current_database() as name')
  const url = new URL(process.env.DATABASE_URL!)
  url.pathname = `/${rows[0]!.name}`
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/dlq-redrive-job.ts', import.meta.url).pathname], {
    env: { ...process.env, DB_URL: url.href, JOB_ID: job.id, ...(crashAt === undefined ? {} : { LIFELINE_CRASH_AT: crashAt }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  defer(t, () => void child.kill('SIGKILL'))
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
  let done = 0
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    for (const m of chunk.toString().matchAll(/PROGRESS (\d+)/g)) done = Number(m[1])
  })
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  if (crashAt === undefined) {
    await waitFor(() => done >= 1000, 'the child to replay 1000 records', 30_000)
    // Into the next batch: some of its sends acknowledged by the broker, none recorded yet.
    await new Promise((resolve) => setTimeout(resolve, 120))
    child.kill('SIGKILL')
  }
  assert.equal(await exited, 'SIGKILL')
  if (crashAt !== undefined) assert.match(stderr, new RegExp(`crash point ${crashAt.split(':')[0]!.replace('.', '\\.')} \\(pass \\d+\\) reached`))
  const killed = await getJob(db, job.id)
  assert.equal(killed.status, 'running')
  assert.ok(killed.done < N, 'killed mid-job')
  const { rows: inFlight } = await db.query<{ n: string }>(`select count(*) as n from lifeline_dlq_job_items where job_id = $1 and status = 'sending'`, [job.id])
  t.diagnostic(`killed at ${killed.done} of ${N}, ${inFlight[0]!.n} items in flight`)

  let resumed: string[] = []
  await waitFor(async () => (resumed = await resumeInterruptedJobs(d, { staleMs: 600, wait: true })).length > 0, 'the stale job to resume', 10_000)
  assert.deepEqual(resumed, [job.id])
  const final = await getJob(db, job.id)
  assert.deepEqual([final.status, final.succeeded, final.done], ['completed', N, N])
  await assertEachOnce(t, origin, N)
  const { rows: statuses } = await db.query<{ status: string; n: string }>(`select status, count(*) as n from lifeline_dlq_records group by status`)
  assert.deepEqual(statuses.map((s) => [s.status, Number(s.n)]), [['replayed', N]])
}

const needsServer = { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL (the processor runs in a child process)' }

test('a redrive interrupted by a processor kill resumes without duplicates', needsServer, (t) => killedMidJob(t))

// The crash matrix (test/faults) leaves these two points to this file: each kills the runner at its third
// pass, mid-job — after a batch's sends are acknowledged but not recorded, and after they are recorded.
for (const point of ['redrive.after-produce', 'redrive.after-status']) {
  test(`a redrive killed at the crash point ${point} resumes without duplicates`, needsServer, (t) => killedMidJob(t, `${point}:3`))
}
