import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { parseDeadLetter, ReplayHeaders, type DeadLetterContext } from '../../src/failure/formats.js'
import { countRecords, DLQ_STATUSES, DLQ_TRANSITIONS, getRecord, groupRecords, hourlyCounts, indexRecord, indexRecords, likePattern, listRecords, loadHeaders, parseFilter, pendingGroups, setStatus, storeHeaders, type DlqStatus } from '../../src/dlq/records.js'
import type { ConsumedRecord, KafkaHeader } from '../../src/kafka/types.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'

async function db(t: TestContext, kind: SqlExecutor['kind']): Promise<SqlExecutor> {
  const d = await freshDatabase(t, kind)
  await migrateLifeline(d)
  return d
}

let nextOffset = 0
function rec(over: Partial<ConsumedRecord> = {}): ConsumedRecord {
  return { topic: 'orders.dlq', partition: 0, offset: nextOffset++, key: Buffer.from('k1'), value: Buffer.from('{"id":1}'), headers: [], timestamp: Date.UTC(2025, 0, 10), size: 10, ...over }
}
function ctx(over: Partial<DeadLetterContext> = {}): DeadLetterContext {
  return { format: 'lifeline', originTopic: 'orders', consumerGroup: 'billing', errorClass: 'TypeError', errorCode: 'E_TYPE', errorMessage: 'bad thing', fingerprint: 'fp-type', details: {}, ...over }
}

const invalidArgument = (err: unknown) => isLifelineError(err, 'LL_ARGUMENT_INVALID')

for (const kind of databaseKinds()) {
  test(`${kind}: indexing is idempotent on (topic, partition, offset)`, async (t) => {
    const d = await db(t, kind)
    const r = rec({ headers: [{ key: 'bin', value: Buffer.from([0, 1, 2, 255]) }, { key: 'text', value: Buffer.from('héllo') }, { key: 'nul', value: null }] })
    const first = await indexRecord(d, r, ctx())
    const second = await indexRecord(d, r, ctx({ errorMessage: 'changed' }))
    assert.equal(first.inserted, true)
    assert.equal(second.inserted, false)
    assert.equal(second.id, first.id)
    assert.equal(await countRecords(d), 1)
    const stored = await getRecord(d, first.id)
    assert.equal(stored.errorMessage, 'bad thing')
    assert.deepEqual(stored.headers, r.headers)
    assert.deepEqual(stored.value, r.value)
    assert.equal(stored.status, 'pending')
    // A batch with repeats and already-stored records.
    const more = [rec(), rec()]
    const results = await indexRecords(d, [{ record: r, context: ctx() }, { record: more[0]!, context: ctx() }, { record: more[0]!, context: ctx() }, { record: more[1]!, context: ctx() }])
    assert.deepEqual(results.map((x) => x.inserted), [false, true, true, true])
    assert.equal(results[1]!.id, results[2]!.id)
    assert.equal(await countRecords(d), 3)
  })

  test(`${kind}: a late copy of a stored dead letter (same group, origin and life) is recorded as a copy, not as a second dead letter (rehearsal finding F3)`, async (t) => {
    const d = await db(t, kind)
    const origin = { originTopic: 'orders', originPartition: 1, originOffset: 800 }
    // The member that took over the partition dead-lettered the head first; the cut-off member's write landed later.
    const first = await indexRecord(d, rec({ partition: 1 }), ctx({ ...origin, lastFailureAt: Date.UTC(2025, 0, 10, 0, 0, 1) }))
    const late = rec({ partition: 1 })
    const copy = await indexRecord(d, late, ctx({ ...origin, lastFailureAt: Date.UTC(2025, 0, 10, 0, 0, 0) }))
    assert.deepEqual(copy, { id: first.id, inserted: false, copy: true })
    assert.equal(await countRecords(d), 1, 'one dead letter for the operator')
    assert.equal(await countRecords(d, { status: 'pending' }), 1)
    // Read again after a restart: still one copy, found at its place.
    const again = await indexRecords(d, [{ record: late, context: ctx({ ...origin }) }])
    assert.deepEqual(again, [{ id: first.id, inserted: false, copy: true }])
    const stored = await getRecord(d, first.id)
    assert.deepEqual(stored.copies.map((c) => [c.topic, c.partition, c.offset]), [['orders.dlq', 1, String(late.offset)]])
    // Two copies in one batch: the first stored, the second a copy.
    const origin2 = { originTopic: 'orders', originPartition: 1, originOffset: 801 }
    const batch = await indexRecords(d, [{ record: rec({ partition: 1 }), context: ctx(origin2) }, { record: rec({ partition: 1 }), context: ctx(origin2) }])
    assert.deepEqual(batch.map((x) => [x.inserted, x.copy === true]), [[true, false], [false, true]])
    assert.equal(batch[1]!.id, batch[0]!.id)
    // Not copies: another group, another origin offset, a later life (a replay that came back), a foreign format.
    const distinct = await indexRecords(d, [
      { record: rec({ partition: 1 }), context: ctx({ ...origin, consumerGroup: 'audit' }) },
      { record: rec({ partition: 1 }), context: ctx({ ...origin, originOffset: 799 }) },
      { record: rec({ partition: 1 }), context: ctx({ ...origin, replayId: 'r-1' }) },
      { record: rec({ partition: 1 }), context: ctx({ ...origin, format: 'spring' }) },
      { record: rec({ partition: 1 }), context: ctx({ ...origin, format: 'spring' }) },
    ])
    assert.deepEqual(distinct.map((x) => x.inserted), [true, true, true, true, true])
    // The same life twice (a replay's copy written twice) is a copy again.
    const replayCopy = await indexRecord(d, rec({ partition: 1 }), ctx({ ...origin, replayId: 'r-1' }))
    assert.equal(replayCopy.copy, true)
    assert.equal(replayCopy.id, distinct[2]!.id)
    assert.equal(await countRecords(d), 7)
  })

  test(`${kind}: values PostgreSQL text cannot hold are stored (NUL, lone surrogates, huge and negative numbers)`, async (t) => {
    const d = await db(t, kind)
    const r = rec({ topic: 'odd.dlq', headers: [{ key: 'k\u0000ey', value: Buffer.from('a\u0000b') }, { key: '\ud800', value: Buffer.from([0xc3, 0x28]) }] })
    const c = ctx({ errorMessage: 'nul \u0000 here \ud800', originPartition: 2 ** 40, attempts: -5, firstFailureAt: 8.64e15, details: { 'a\u0000': 'b\udc00' } })
    const { id } = await indexRecord(d, r, c)
    const stored = await getRecord(d, id)
    assert.equal(stored.errorMessage, 'nul \uFFFD here \uFFFD')
    assert.equal(stored.originPartition, null)
    assert.equal(stored.firstFailureAt, null)
    assert.deepEqual(stored.headers[0], { key: 'k\u0000ey', value: Buffer.from('a\u0000b') })
    assert.deepEqual(stored.headers[1]!.value, Buffer.from([0xc3, 0x28]))
  })

  test(`${kind}: filters, including hostile values`, async (t) => {
    const d = await db(t, kind)
    const day = (n: number) => Date.UTC(2025, 0, n)
    await indexRecords(d, [
      { record: rec({ key: Buffer.from('a') }), context: ctx({ errorMessage: '100% broken', lastFailureAt: day(1) }) },
      { record: rec({ key: Buffer.from('b') }), context: ctx({ errorMessage: 'snake_case broke', lastFailureAt: day(2) }) },
      { record: rec({ key: Buffer.from('a') }), context: ctx({ errorMessage: "it's O'Reilly", errorClass: 'RangeError', errorCode: 'E_RANGE', fingerprint: 'fp-range', lastFailureAt: day(3) }) },
      { record: rec({ topic: 'payments.dlq', key: null }), context: ctx({ format: 'spring', originTopic: 'payments', consumerGroup: 'pay', errorMessage: 'back\\slash', lastFailureAt: day(4) }) },
      { record: rec({ topic: 'mystery.dlq', timestamp: day(5) }), context: ctx({ format: 'unknown', originTopic: undefined, consumerGroup: undefined, errorMessage: undefined }) },
    ])
    const ids = async (filter: Record<string, unknown>) => (await listRecords(d, filter)).map((r) => r.keyText ?? r.topic)
    assert.equal(await countRecords(d), 5)
    assert.equal((await listRecords(d, { topic: 'orders' })).length, 3)
    assert.equal((await listRecords(d, { topic: 'mystery.dlq' })).length, 1, 'a record without origin is found by its DLQ topic')
    assert.equal((await listRecords(d, { dlqTopic: 'payments.dlq' })).length, 1)
    assert.equal((await listRecords(d, { group: 'pay' })).length, 1)
    assert.equal((await listRecords(d, { errorCode: 'E_RANGE' })).length, 1)
    assert.equal((await listRecords(d, { errorClass: 'RangeError' })).length, 1)
    assert.equal((await listRecords(d, { fingerprint: 'fp-type' })).length, 4)
    assert.deepEqual(await ids({ key: 'a' }), ['a', 'a'])
    assert.equal((await listRecords(d, { format: 'spring' })).length, 1)
    assert.equal((await listRecords(d, { status: 'pending' })).length, 5)
    assert.equal((await listRecords(d, { status: ['resolved', 'discarded'] })).length, 0)
    assert.equal((await listRecords(d, { from: day(2), to: day(4) })).length, 2)
    assert.equal((await listRecords(d, { from: '2025-01-04T00:00:00Z' })).length, 2, 'failed_at falls back to the record timestamp')
    assert.equal((await listRecords(d, { to: String(day(2)) })).length, 1)
    // ILIKE with escaped wildcards: % and _ match themselves, case-insensitively.
    assert.deepEqual(await ids({ text: '%' }), ['a'])
    assert.deepEqual(await ids({ text: '_' }), ['b'])
    assert.deepEqual(await ids({ text: 'SNAKE' }), ['b'])
    assert.deepEqual(await ids({ text: "O'Reilly" }), ['a'])
    assert.deepEqual(await ids({ text: '\\' }), ['payments.dlq'])
    assert.equal((await listRecords(d, { text: "'; drop table lifeline_dlq_records; --" })).length, 0)
    assert.equal((await listRecords(d, { topic: "x' or '1'='1" })).length, 0)
    assert.equal((await listRecords(d, { key: "'; delete from lifeline_dlq_records; --" })).length, 0)
    assert.equal(await countRecords(d), 5, 'the table is intact')
    // Paging by id in both orders.
    const page1 = await listRecords(d, { limit: 2 })
    const page2 = await listRecords(d, { limit: '2', afterId: page1[1]!.id })
    const desc = await listRecords(d, { order: 'desc', limit: 10 })
    assert.deepEqual([...page1, ...page2].map((r) => r.id), desc.slice(1).reverse().map((r) => r.id).slice(0, 4))
    assert.deepEqual((await listRecords(d, { order: 'desc', afterId: desc[0]!.id })).map((r) => r.id), desc.slice(1).map((r) => r.id))
  })

  test(`${kind}: bad filter values are LL_ARGUMENT_INVALID naming the field`, async (t) => {
    const d = await db(t, kind)
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ limit: 0 }, /filter\.limit/],
      [{ limit: 1001 }, /filter\.limit/],
      [{ limit: 'ten' }, /filter\.limit/],
      [{ limit: 1.5 }, /filter\.limit/],
      [{ afterId: -1 }, /filter\.afterId/],
      [{ afterId: "1; drop table x" }, /filter\.afterId/],
      [{ status: 'lost' }, /filter\.status must be one of pending/],
      [{ status: [] }, /filter\.status/],
      [{ format: 'avro' }, /filter\.format/],
      [{ from: 'yesterday' }, /filter\.from must be a time/],
      [{ to: { $gt: 1 } }, /filter\.to/],
      [{ from: '2025-02-01T00:00:00Z', to: '2025-01-01T00:00:00Z' }, /filter\.from must be before/],
      [{ topic: 42 }, /filter\.topic/],
      [{ topic: ['a'] }, /filter\.topic/],
      [{ text: 'x'.repeat(1001) }, /filter\.text/],
      [{ fingerprint: 'a\u0000b' }, /NUL/],
      [{ order: 'random()' }, /filter\.order/],
      [{ where: '1=1' }, /filter\.where is not a filter field/],
    ]
    for (const [filter, message] of bad) {
      await assert.rejects(listRecords(d, filter), (err: unknown) => invalidArgument(err) && message.test((err as Error).message), JSON.stringify(filter))
    }
    assert.throws(() => parseFilter('status=pending'), invalidArgument)
    await assert.rejects(countRecords(d, { limit: -1 }), invalidArgument)
    await assert.rejects(groupRecords(d, {}, { limit: 0 }), invalidArgument)
    await assert.rejects(getRecord(d, 'abc'), invalidArgument)
    await assert.rejects(getRecord(d, 999), (err: unknown) => isLifelineError(err, 'LL_NOT_FOUND'))
    assert.equal(likePattern('50%_a\\b'), '%50\\%\\_a\\\\b%')
  })

  test(`${kind}: groups are the top errors by fingerprint with topics, keys and first/last seen`, async (t) => {
    const d = await db(t, kind)
    const day = (n: number) => Date.UTC(2025, 0, n)
    await indexRecords(d, [
      { record: rec({ key: Buffer.from('a') }), context: ctx({ lastFailureAt: day(1), errorMessage: 'old' }) },
      { record: rec({ key: Buffer.from('b') }), context: ctx({ lastFailureAt: day(3), errorMessage: 'newest' }) },
      { record: rec({ key: Buffer.from('a'), topic: 'refunds.dlq' }), context: ctx({ originTopic: 'refunds', lastFailureAt: day(2) }) },
      { record: rec(), context: ctx({ fingerprint: 'fp-other', errorClass: 'Other', errorCode: 'E_OTHER', lastFailureAt: day(5) }) },
    ])
    const [top, second] = await groupRecords(d, {}, { limit: 10 })
    assert.equal(top!.fingerprint, 'fp-type')
    assert.equal(top!.count, 3)
    assert.equal(top!.pending, 3)
    assert.equal(top!.errorClass, 'TypeError')
    assert.equal(top!.errorCode, 'E_TYPE')
    assert.deepEqual(top!.topics, ['orders', 'refunds'])
    assert.equal(top!.distinctKeys, 2)
    assert.equal(top!.firstSeen.getTime(), day(1))
    assert.equal(top!.lastSeen.getTime(), day(3))
    assert.equal(second!.fingerprint, 'fp-other')
    assert.equal(top!.sampleMessage, 'bad thing', 'the message of the group\'s latest record (by id)')
    const refunds = await groupRecords(d, { topic: 'refunds' })
    assert.deepEqual(refunds.map((g) => [g.fingerprint, g.count, g.topics, g.distinctKeys]), [['fp-type', 1, ['refunds'], 1]], 'topics and keys of the matching records only')
    assert.equal((await groupRecords(d, {}, { limit: 1 })).length, 1)
  })

  test(`${kind}: lifecycle transitions are enforced and every change is an event`, async (t) => {
    const d = await db(t, kind)
    const { id } = await indexRecord(d, rec(), ctx())
    const refused = async (to: DlqStatus, from?: DlqStatus) =>
      assert.rejects(setStatus(d, id, to, { actor: 'alice', from }), (err: unknown) => isLifelineError(err, 'LL_DLQ_CONFLICT'))
    await refused('replayed')
    await refused('failed-again')
    await refused('replaying', 'replayed') // stale expectation
    const change = await setStatus(d, id, 'replaying', { actor: 'redrive:1', reason: 'bulk redrive', from: 'pending', detail: { job: 1 } })
    assert.deepEqual([change.from, change.to], ['pending', 'replaying'])
    await setStatus(d, id, 'pending', { actor: 'redrive:1', reason: 'send failed' })
    await setStatus(d, id, 'replaying', { actor: 'redrive:1' })
    await setStatus(d, id, 'replayed', { actor: 'redrive:1' })
    await refused('resolved')
    await refused('pending')
    const { id: other } = await indexRecord(d, rec(), ctx())
    await setStatus(d, other, 'discarded', { actor: 'bob', reason: 'test data' })
    await assert.rejects(setStatus(d, other, 'pending', { actor: 'bob' }), /discarded is final/)
    await assert.rejects(setStatus(d, 12345, 'resolved', { actor: 'bob' }), (err: unknown) => isLifelineError(err, 'LL_NOT_FOUND'))
    await assert.rejects(setStatus(d, id, 'lost' as DlqStatus, { actor: 'bob' }), invalidArgument)
    await assert.rejects(setStatus(d, id, 'resolved', { actor: '' }), invalidArgument)
    const detail = await getRecord(d, id)
    assert.equal(detail.status, 'replayed')
    assert.equal(detail.statusActor, 'redrive:1')
    assert.deepEqual(detail.events.map((e) => [e.from, e.to, e.actor]), [
      ['pending', 'replaying', 'redrive:1'],
      ['replaying', 'pending', 'redrive:1'],
      ['pending', 'replaying', 'redrive:1'],
      ['replaying', 'replayed', 'redrive:1'],
    ])
    assert.equal(detail.events[0]!.reason, 'bulk redrive')
    assert.deepEqual(detail.events[0]!.detail, { job: 1 })
    assert.equal((await getRecord(d, other)).statusReason, 'test data')
    // The table and the documented transitions agree: every status has an entry.
    assert.deepEqual(Object.keys(DLQ_TRANSITIONS).sort(), [...DLQ_STATUSES].sort())
  })

  test(`${kind}: a replayed record that fails again is linked to its earlier life, which becomes failed-again`, async (t) => {
    const d = await db(t, kind)
    const first = await indexRecord(d, rec({ key: Buffer.from('order-7') }), ctx())
    await setStatus(d, first.id, 'replaying', { actor: 'alice' })
    await d.query(`insert into lifeline_dlq_replays (replay_id, record_id, target_topic, actor) values ('rp-1', $1, 'orders', 'alice')`, [first.id])
    await setStatus(d, first.id, 'replayed', { actor: 'alice' })

    const headers: KafkaHeader[] = [{ key: ReplayHeaders.id, value: Buffer.from('rp-1') }, { key: ReplayHeaders.count, value: Buffer.from('1') }, { key: 'lifeline.origin.topic', value: Buffer.from('orders') }]
    const back = rec({ key: Buffer.from('order-7'), headers })
    const second = await indexRecord(d, back, parseDeadLetter(back))
    assert.equal(second.inserted, true)
    assert.equal(second.previousId, first.id)
    assert.equal(second.failedAgain, true)
    // Indexing it again changes nothing.
    assert.equal((await indexRecord(d, back, parseDeadLetter(back))).inserted, false)

    const earlier = await getRecord(d, first.id)
    assert.equal(earlier.status, 'failed-again')
    assert.equal(earlier.statusActor, 'indexer')
    const last = earlier.events.at(-1)!
    assert.deepEqual([last.from, last.to, last.actor], ['replayed', 'failed-again', 'indexer'])
    assert.equal(last.detail.nextRecordId, second.id)
    assert.deepEqual(earlier.laterLives.map((r) => r.id), [second.id])

    const later = await getRecord(d, second.id)
    assert.equal(later.previousId, first.id)
    assert.equal(later.replayId, 'rp-1')
    assert.equal(later.replayedBefore, 1)
    assert.deepEqual(later.earlierLives.map((r) => r.id), [first.id])

    // A third life: the chain reads back most recent first.
    await setStatus(d, second.id, 'replaying', { actor: 'alice' })
    await d.query(`insert into lifeline_dlq_replays (replay_id, record_id, target_topic, actor) values ('rp-2', $1, 'orders', 'alice')`, [second.id])
    const third = rec({ headers: [{ key: ReplayHeaders.id, value: Buffer.from('rp-2') }] })
    const linked = await indexRecord(d, third, parseDeadLetter(third))
    assert.equal(linked.failedAgain, true, 'replaying → failed-again when it comes back before the redrive marked it replayed')
    assert.deepEqual((await getRecord(d, linked.id)).earlierLives.map((r) => r.id), [second.id, first.id])
    // An unknown replay id links nothing.
    const stray = rec({ headers: [{ key: ReplayHeaders.id, value: Buffer.from('nope') }] })
    const unlinked = await indexRecord(d, stray, parseDeadLetter(stray))
    assert.equal(unlinked.previousId, undefined)
    // A failed-again record is closed, never replayed again.
    await assert.rejects(setStatus(d, first.id, 'replaying', { actor: 'alice' }), (err: unknown) => isLifelineError(err, 'LL_DLQ_CONFLICT'))
    await setStatus(d, first.id, 'resolved', { actor: 'alice', reason: 'superseded by its next life' })
  })
}

test('stored headers round-trip every byte', () => {
  const headers: KafkaHeader[] = [
    { key: 'a', value: Buffer.from('text') },
    { key: 'b', value: Buffer.from([0x00, 0x00, 0x00, 0x07]) },
    { key: 'c', value: Buffer.from([0xff, 0xfe]) },
    { key: 'd', value: null },
    { key: 'e', value: Buffer.alloc(0) },
    { key: 'e', value: Buffer.from('dup') },
  ]
  const stored = storeHeaders(headers)
  assert.deepEqual(stored[0], { key: 'a', value: 'text' })
  assert.equal(stored[1]!.encoding, 'base64')
  assert.deepEqual(loadHeaders(JSON.parse(JSON.stringify(stored))), headers)
})

for (const kind of databaseKinds()) {
  test(`${kind}: hourlyCounts counts dead letters per hour up to now, zeros included; pendingGroups ranks groups by pending records`, async (t) => {
    const d = await db(t, kind)
    const now = new Date(Date.UTC(2025, 5, 1, 12, 30))
    const at = (hoursAgo: number) => now.getTime() - hoursAgo * 3_600_000
    await indexRecords(d, [
      { record: rec(), context: ctx({ lastFailureAt: at(0), fingerprint: 'fp-a', errorMessage: 'a first indexed' }) },
      { record: rec(), context: ctx({ lastFailureAt: at(0.2), fingerprint: 'fp-a', errorMessage: 'a last indexed' }) },
      { record: rec(), context: ctx({ lastFailureAt: at(3), fingerprint: 'fp-b', errorClass: 'RangeError', errorCode: 'E_B' }) },
      { record: rec(), context: ctx({ lastFailureAt: at(30), fingerprint: 'fp-c' }) }, // outside the 24 hours
    ])
    const hours = await hourlyCounts(d, 24, now)
    assert.equal(hours.length, 24)
    assert.equal(hours[23]!.hour.toISOString(), '2025-06-01T12:00:00.000Z', 'the current hour last')
    assert.deepEqual(hours.map((h) => h.count).filter((n) => n > 0), [1, 2])
    assert.equal(hours[20]!.count, 1, 'three hours ago')
    assert.equal(hours.reduce((s, h) => s + h.count, 0), 3)
    await assert.rejects(hourlyCounts(d, 0, now), invalidArgument)

    const first = await listRecords(d, { fingerprint: 'fp-c' })
    await setStatus(d, first[0]!.id, 'discarded', { actor: 'olga', reason: 'r' })
    const groups = await pendingGroups(d, 10)
    assert.deepEqual(groups.map((g) => [g.fingerprint, g.pending]), [['fp-a', 2], ['fp-b', 1]], 'most pending first; a group with none pending is left out')
    assert.equal(groups[0]!.sampleMessage, 'a last indexed', 'the latest pending record of the group (by id) gives the sample')
    assert.deepEqual([groups[1]!.errorClass, groups[1]!.errorCode], ['RangeError', 'E_B'])
    assert.equal((await pendingGroups(d, 1)).length, 1)
  })
}
