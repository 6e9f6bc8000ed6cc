/**
 * Conformance of the ordering state store (parked keys, parked records, sequences, key events) on every
 * database kind: the embedded PGlite and (with DATABASE_URL) a real PostgreSQL server must behave the same.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { isLifelineError, type ErrorCode } from '../../src/errors.js'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { createParkedKeys, OrderingStore, type FollowerRecord, type HeadMove } from '../../src/ordering/state-store.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase, type DatabaseKind } from '../helpers/db.js'

const GROUP = 'billing'
const TOPIC = 'orders'
const BINARY_KEY = Buffer.from([0xff, 0x00, 0x01])
const HOSTILE = "'; drop table lifeline_parked_keys; --"

async function setup(t: TestContext, kind: DatabaseKind): Promise<{ db: SqlExecutor; store: OrderingStore }> {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  return { db, store: new OrderingStore(db) }
}

function head(overrides: Partial<HeadMove> = {}): HeadMove {
  return {
    group: GROUP,
    topic: TOPIC,
    partition: 3,
    key: Buffer.from('k1'),
    headOffset: 100,
    token: 'token-1',
    location: 'retry:1',
    headTopic: 'svc.orders.retry.1',
    errorCode: 'E_TIMEOUT',
    errorMessage: 'upstream timed out',
    ...overrides,
  }
}

function follower(overrides: Partial<FollowerRecord> = {}): FollowerRecord {
  return {
    group: GROUP,
    topic: TOPIC,
    partition: 3,
    key: Buffer.from('k1'),
    offset: 101,
    value: Buffer.from('v'),
    headers: [],
    timestamp: 1_700_000_000_000,
    ...overrides,
  }
}

function expectCode(code: ErrorCode) {
  return (err: unknown) => {
    assert.ok(isLifelineError(err, code), `expected ${code}, got ${String(err)}`)
    return true
  }
}

/** The key's events, oldest first, straight from the table. */
async function eventsOf(db: SqlExecutor, key: Buffer, group = GROUP, topic = TOPIC): Promise<Array<{ event: string; detail: unknown; actor: string | null }>> {
  const { rows } = await db.query<{ event: string; detail: unknown; actor: string | null }>(
    'select event, detail, actor from lifeline_key_events where group_id = $1 and topic = $2 and key = $3 order by id',
    [group, topic, key],
  )
  return rows
}

async function parkedRecordCount(db: SqlExecutor): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from lifeline_parked_records')
  return rows[0]!.n
}

for (const kind of databaseKinds()) {
  test(`${kind}: moveHead parks a key, then moves its head`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    await store.moveHead(head())
    let [parked] = await store.list()
    assert.ok(parked)
    assert.equal(parked.group, GROUP)
    assert.equal(parked.topic, TOPIC)
    assert.equal(parked.partition, 3)
    assert.ok(parked.key.equals(key))
    assert.equal(parked.keyText, 'k1')
    assert.equal(parked.status, 'parked')
    assert.equal(parked.headOffset, 100)
    assert.equal(parked.headToken, 'token-1')
    assert.equal(parked.headLocation, 'retry:1')
    assert.equal(parked.headTopic, 'svc.orders.retry.1')
    assert.equal(parked.headErrorCode, 'E_TIMEOUT')
    assert.equal(parked.headErrorMessage, 'upstream timed out')
    assert.ok(parked.parkedAt instanceof Date && parked.updatedAt instanceof Date)
    assert.equal(parked.releaseReason, null)
    assert.equal(parked.releasedBy, null)
    assert.equal(parked.releasedAt, null)
    assert.equal(parked.parkedRecords, 0)
    assert.deepEqual(await eventsOf(db, key), [
      { event: 'parked', detail: { offset: 100, location: 'retry:1', topic: 'svc.orders.retry.1', errorCode: 'E_TIMEOUT' }, actor: null },
    ])

    await store.moveHead(head({ partition: 4, headOffset: 105, token: 'token-2', location: 'dlq', headTopic: 'svc.orders.dlq', errorCode: 'E_FATAL', errorMessage: 'x'.repeat(5000) }))
    const all = await store.list()
    assert.equal(all.length, 1, 'still one row per key')
    parked = all[0]!
    assert.equal(parked.status, 'parked')
    assert.equal(parked.partition, 4)
    assert.equal(parked.headOffset, 105)
    assert.equal(parked.headToken, 'token-2')
    assert.equal(parked.headLocation, 'dlq')
    assert.equal(parked.headTopic, 'svc.orders.dlq')
    assert.equal(parked.headErrorCode, 'E_FATAL')
    assert.equal(parked.headErrorMessage, 'x'.repeat(2000), 'the error message is capped at 2000 characters')
    assert.deepEqual(
      (await eventsOf(db, key)).map((e) => e.event),
      ['parked', 'head-moved'],
    )
    assert.deepEqual((await eventsOf(db, key))[1]!.detail, { offset: 105, location: 'dlq', topic: 'svc.orders.dlq', errorCode: 'E_FATAL' })
  })

  test(`${kind}: moveHead with fromParkedRecord deletes that record in the same transaction`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    await store.moveHead(head())
    assert.equal(await store.addFollower(follower({ offset: 101 })), true)
    assert.equal(await store.addFollower(follower({ offset: 102 })), true)
    const [first, second] = await store.records(GROUP, TOPIC, key, 10)
    assert.ok(first && second)

    // The head's event insert fails (a trigger refuses it): the delete of the parked record must roll back with the head move.
    await db.query(`create function refuse_event() returns trigger language plpgsql as $$ begin raise exception 'injected failure'; end $$`)
    await db.query('create trigger refuse_event before insert on lifeline_key_events for each row execute function refuse_event()')
    await assert.rejects(store.moveHead(head({ headOffset: 101, token: 'token-2', fromParkedRecord: first.id })), /injected failure/)
    await db.query('drop trigger refuse_event on lifeline_key_events')
    assert.deepEqual(
      (await store.records(GROUP, TOPIC, key, 10)).map((r) => r.id),
      [first.id, second.id],
      'a failed head move leaves the parked record in place',
    )
    assert.equal((await store.list())[0]!.headToken, 'token-1', 'and the head where it was')

    await store.moveHead(head({ headOffset: 101, token: 'token-2', fromParkedRecord: first.id }))
    assert.deepEqual(
      (await store.records(GROUP, TOPIC, key, 10)).map((r) => r.id),
      [second.id],
    )
    const [parked] = await store.list()
    assert.equal(parked!.headOffset, 101)
    assert.equal(parked!.headToken, 'token-2')
    assert.equal(parked!.parkedRecords, 1)
    assert.deepEqual(
      (await eventsOf(db, key)).map((e) => e.event),
      ['parked', 'head-moved'],
    )
  })

  test(`${kind}: moveHead re-parks a released key and clears its release fields`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    await store.moveHead(head())
    await store.release({ group: GROUP, topic: TOPIC, key, actor: 'alice', reason: 'operator' })
    await store.moveHead(head({ headOffset: 110, token: 'token-2' }))
    const [parked] = await store.list()
    assert.equal(parked!.status, 'parked')
    assert.equal(parked!.headToken, 'token-2')
    assert.equal(parked!.releaseReason, null)
    assert.equal(parked!.releasedBy, null)
    assert.equal(parked!.releasedAt, null)
    assert.deepEqual(
      (await eventsOf(db, key)).map((e) => e.event),
      ['parked', 'released', 'head-moved'],
    )
  })

  test(`${kind}: addFollower is idempotent on (group, topic, partition, offset)`, async (t) => {
    const { db, store } = await setup(t, kind)
    await store.moveHead(head())
    assert.equal(await store.addFollower(follower()), true)
    assert.equal(await store.addFollower(follower()), false, 'a redelivery adds nothing')
    assert.equal(await store.addFollower(follower({ value: Buffer.from('different'), key: Buffer.from('k2') })), false, 'the source offset alone identifies it')
    assert.equal(await parkedRecordCount(db), 1)
    const [only] = await store.records(GROUP, TOPIC, Buffer.from('k1'), 10)
    assert.ok(only!.value!.equals(Buffer.from('v')), 'the first copy is kept')

    assert.equal(await store.addFollower(follower({ partition: 4 })), true, 'same offset, other partition')
    assert.equal(await store.addFollower(follower({ topic: 'payments' })), true, 'same offset, other topic')
    assert.equal(await store.addFollower(follower({ group: 'shipping' })), true, 'same offset, other group')
    assert.equal(await parkedRecordCount(db), 4)
  })

  test(`${kind}: records() returns a key's rows in insertion order, byte-exact`, async (t) => {
    const { store } = await setup(t, kind)
    await store.moveHead(head({ key: BINARY_KEY }))
    const headers: KafkaHeader[] = [
      { key: 'traceparent', value: Buffer.from('00-abc-01') },
      { key: 'nothing', value: null },
      { key: 'binary', value: Buffer.from([0x00, 0xff, 0x80, 0xc3]) },
      { key: 'empty', value: Buffer.alloc(0) },
      { key: 'binary', value: Buffer.from([0x01]) },
      { key: 'zoë ✓', value: Buffer.from('ünïcödé', 'utf8') },
    ]
    const value = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    // Offsets deliberately not in insertion order: replay order is the order they were stored.
    assert.equal(await store.addFollower(follower({ key: BINARY_KEY, offset: 130, seq: 7, value, headers, timestamp: 1_700_000_000_123 })), true)
    assert.equal(await store.addFollower(follower({ key: BINARY_KEY, offset: 110, value: null, headers: [] })), true)
    assert.equal(await store.addFollower(follower({ key: BINARY_KEY, offset: 120, seq: 2 ** 40, value: Buffer.alloc(0), timestamp: -1 })), true)
    assert.equal(await store.addFollower(follower({ key: Buffer.from('other'), offset: 115 })), true)
    assert.equal(await store.addFollower(follower({ key: BINARY_KEY, offset: 116, topic: 'payments' })), true)

    const rows = await store.records(GROUP, TOPIC, BINARY_KEY, 100)
    assert.deepEqual(
      rows.map((r) => r.offset),
      [130, 110, 120],
    )
    const ids = rows.map((r) => BigInt(r.id))
    assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!, 'ascending ids')
    for (const r of rows) {
      assert.ok(Buffer.isBuffer(r.key) && r.key.equals(BINARY_KEY), 'the key comes back byte for byte')
      assert.equal(r.topic, TOPIC)
      assert.equal(r.partition, 3)
      assert.ok(r.parkedAt instanceof Date)
    }
    const [a, b, c] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]]
    assert.ok(a.value !== null && a.value.equals(value))
    assert.equal(a.seq, 7)
    assert.equal(a.timestamp, 1_700_000_000_123)
    assert.deepEqual(a.headers, headers)
    assert.equal(b.value, null)
    assert.equal(b.seq, null)
    assert.deepEqual(b.headers, [])
    assert.ok(c.value !== null && c.value.length === 0)
    assert.equal(c.seq, 2 ** 40)
    assert.equal(c.timestamp, -1)

    assert.deepEqual(
      (await store.records(GROUP, TOPIC, BINARY_KEY, 2)).map((r) => r.offset),
      [130, 110],
      'limit',
    )
    assert.deepEqual(
      (await store.records(GROUP, TOPIC, BINARY_KEY, 10, a.id)).map((r) => r.offset),
      [110, 120],
      'after an id',
    )
    assert.deepEqual(await store.records(GROUP, TOPIC, BINARY_KEY, 10, c.id), [])
    assert.deepEqual(await store.records(GROUP, TOPIC, Buffer.from([0xff, 0x00]), 10), [], 'a key prefix is another key')

    await store.deleteRecord(b.id)
    assert.deepEqual(
      (await store.records(GROUP, TOPIC, BINARY_KEY, 10)).map((r) => r.offset),
      [130, 120],
    )
  })

  test(`${kind}: isHead is true only for the current token while parked`, async (t) => {
    const { store } = await setup(t, kind)
    const key = Buffer.from('k1')
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-1'), false, 'not parked yet')
    await store.moveHead(head())
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-1'), true)
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-x'), false)
    assert.equal(await store.isHead('shipping', TOPIC, key, 'token-1'), false, 'other group')
    assert.equal(await store.isHead(GROUP, 'payments', key, 'token-1'), false, 'other topic')
    assert.equal(await store.isHead(GROUP, TOPIC, Buffer.from('k2'), 'token-1'), false, 'other key')
    await store.moveHead(head({ token: 'token-2', headOffset: 101 }))
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-1'), false, 'a moved head makes the old token stale')
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-2'), true)
    await store.release({ group: GROUP, topic: TOPIC, key, actor: 'alice', reason: 'operator' })
    assert.equal(await store.isHead(GROUP, TOPIC, key, 'token-2'), false, 'released')
  })

  test(`${kind}: headSucceeded releases only with the current token`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    assert.equal(await store.headSucceeded(GROUP, TOPIC, key, 'token-1'), undefined, 'unknown key')
    await store.moveHead(head({ partition: 7 }))
    await store.moveHead(head({ partition: 7, token: 'token-2', headOffset: 101 }))
    assert.equal(await store.headSucceeded(GROUP, TOPIC, key, 'token-1'), undefined, 'stale token')
    assert.equal((await store.list())[0]!.status, 'parked')
    assert.deepEqual(
      (await eventsOf(db, key)).map((e) => e.event),
      ['parked', 'head-moved'],
      'a stale success writes no event',
    )

    assert.equal(await store.headSucceeded(GROUP, TOPIC, key, 'token-2'), 7)
    const [released] = await store.list()
    assert.equal(released!.status, 'released')
    assert.equal(released!.releaseReason, 'head-succeeded')
    assert.equal(released!.releasedBy, 'runtime')
    assert.ok(released!.releasedAt instanceof Date)
    const events = await eventsOf(db, key)
    assert.deepEqual(events.at(-1), { event: 'released', detail: { reason: 'head-succeeded' }, actor: 'runtime' })
    assert.equal(await store.headSucceeded(GROUP, TOPIC, key, 'token-2'), undefined, 'already released')
    assert.equal((await eventsOf(db, key)).length, events.length)
  })

  test(`${kind}: releasedKeys lists released keys of the given partitions only`, async (t) => {
    const { store } = await setup(t, kind)
    const k = (s: string) => Buffer.from(s)
    await store.moveHead(head({ key: k('p0'), partition: 0, token: 't0' }))
    await store.moveHead(head({ key: k('p1'), partition: 1, token: 't1' }))
    await store.moveHead(head({ key: k('p2'), partition: 2, token: 't2' }))
    await store.moveHead(head({ key: k('p0-parked'), partition: 0, token: 't3' }))
    await store.moveHead(head({ key: k('p0-other-topic'), partition: 0, token: 't4', topic: 'payments' }))
    await store.moveHead(head({ key: k('p0-other-group'), partition: 0, token: 't5', group: 'shipping' }))
    assert.equal(await store.headSucceeded(GROUP, TOPIC, k('p2'), 't2'), 2)
    assert.equal(await store.headSucceeded(GROUP, TOPIC, k('p0'), 't0'), 0)
    assert.equal(await store.headSucceeded(GROUP, TOPIC, k('p1'), 't1'), 1)
    assert.equal(await store.headSucceeded(GROUP, 'payments', k('p0-other-topic'), 't4'), 0)
    assert.equal(await store.headSucceeded('shipping', TOPIC, k('p0-other-group'), 't5'), 0)

    const show = (rows: Array<{ partition: number; key: Buffer }>) => rows.map((r) => ({ partition: r.partition, key: r.key.toString() }))
    assert.deepEqual(show(await store.releasedKeys(GROUP, TOPIC, [0])), [{ partition: 0, key: 'p0' }])
    assert.deepEqual(
      show(await store.releasedKeys(GROUP, TOPIC, [0, 2])).sort((a, b) => a.partition - b.partition),
      [
        { partition: 0, key: 'p0' },
        { partition: 2, key: 'p2' },
      ],
    )
    assert.equal((await store.releasedKeys(GROUP, TOPIC, [0, 1, 2])).length, 3)
    assert.deepEqual(await store.releasedKeys(GROUP, TOPIC, [5]), [])
    assert.deepEqual(await store.releasedKeys(GROUP, TOPIC, []), [])
    await store.moveHead(head({ key: BINARY_KEY, partition: 9, token: 'tb' }))
    assert.equal(await store.headSucceeded(GROUP, TOPIC, BINARY_KEY, 'tb'), 9)
    const [b] = await store.releasedKeys(GROUP, TOPIC, [9])
    assert.ok(b && Buffer.isBuffer(b.key) && b.key.equals(BINARY_KEY))
  })

  test(`${kind}: finishRelease forgets a released key only when nothing is parked behind it`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    await store.moveHead(head())
    assert.equal(await store.addFollower(follower({ offset: 101 })), true)
    assert.equal(await store.addFollower(follower({ offset: 102 })), true)
    // Another key's records do not hold this one back.
    assert.equal(await store.addFollower(follower({ key: Buffer.from('k2'), offset: 103 })), true)
    assert.equal(await store.headSucceeded(GROUP, TOPIC, key, 'token-1'), 3)

    assert.equal(await store.finishRelease(GROUP, TOPIC, key), false)
    assert.equal((await store.list()).length, 1, 'the key stays while records remain')
    for (const r of await store.records(GROUP, TOPIC, key, 10)) await store.deleteRecord(r.id)
    assert.equal(await store.finishRelease(GROUP, TOPIC, key), true)
    assert.deepEqual(await store.list(), [])
    assert.equal(await store.show(GROUP, TOPIC, key), undefined)
    assert.deepEqual((await eventsOf(db, key)).at(-1), { event: 'drained', detail: {}, actor: 'runtime' })
    assert.equal(await parkedRecordCount(db), 1, "k2's record is untouched")
  })

  test(`${kind}: finishRelease never deletes a key that is parked`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from('k1')
    await store.moveHead(head())
    await store.finishRelease(GROUP, TOPIC, key)
    const [parked] = await store.list()
    assert.equal(parked?.status, 'parked', 'a parked key (its head re-parked while draining) must survive')
    assert.deepEqual(
      (await eventsOf(db, key)).map((e) => e.event),
      ['parked'],
      'no drained event when nothing was deleted',
    )
  })

  test(`${kind}: saveSequences upserts and never moves a sequence back`, async (t) => {
    const { store } = await setup(t, kind)
    const seqs = async (partition: number) =>
      (await store.loadPartition(GROUP, TOPIC, partition)).sequences.map((s) => [s.key.toString('hex'), s.lastSeq] as const).sort(([a], [b]) => a.localeCompare(b))
    const a = Buffer.from('a')
    await store.saveSequences(GROUP, TOPIC, 0, [])
    assert.deepEqual(await seqs(0), [])
    await store.saveSequences(GROUP, TOPIC, 0, [
      [a, 5],
      [BINARY_KEY, 2 ** 40],
    ])
    assert.deepEqual(await seqs(0), [
      ['61', 5],
      ['ff0001', 2 ** 40],
    ])
    await store.saveSequences(GROUP, TOPIC, 0, [
      [a, 3],
      [BINARY_KEY, 2 ** 40 + 1],
    ])
    assert.deepEqual(
      await seqs(0),
      [
        ['61', 5],
        ['ff0001', 2 ** 40 + 1],
      ],
      'a lower sequence never moves a key back',
    )
    await store.saveSequences(GROUP, TOPIC, 0, [[a, 9]])
    assert.deepEqual((await seqs(0))[0], ['61', 9])
    // Keys and their bytes survive exactly (a comma, quotes, braces, backslash; the empty key: see below).
    const odd = [Buffer.from('a,b'), Buffer.from('"{}\\'), Buffer.from(HOSTILE), Buffer.from([0x00])]
    await store.saveSequences(GROUP, TOPIC, 1, odd.map((k, i) => [k, i] as const))
    const loaded = (await store.loadPartition(GROUP, TOPIC, 1)).sequences
    assert.equal(loaded.length, odd.length)
    for (const [i, k] of odd.entries()) {
      const found = loaded.find((s) => s.key.equals(k))
      assert.ok(found, `key ${JSON.stringify(k.toString())} round-trips`)
      assert.equal(found.lastSeq, i)
    }
    // A key moving to another partition follows it (and still never moves back).
    await store.saveSequences(GROUP, TOPIC, 2, [[a, 1]])
    assert.deepEqual(
      (await seqs(0)).map(([k]) => k),
      ['ff0001'],
    )
    assert.deepEqual(await seqs(2), [['61', 9]])
  })

  // An empty (zero-length, non-null) key hex-encodes to '': the array literal must quote it.
  test(`${kind}: saveSequences stores a sequence for the empty key`, async (t) => {
    const { store } = await setup(t, kind)
    await store.saveSequences(GROUP, TOPIC, 0, [[Buffer.alloc(0), 5]])
    await store.saveSequences(GROUP, TOPIC, 0, [
      [Buffer.from('a'), 1],
      [Buffer.alloc(0), 6],
    ])
    const loaded = (await store.loadPartition(GROUP, TOPIC, 0)).sequences.map((s) => [s.key.toString('hex'), s.lastSeq]).sort()
    assert.deepEqual(loaded, [
      ['', 6],
      ['61', 1],
    ])
  })

  test(`${kind}: an empty key parks, stores records and releases like any other`, async (t) => {
    const { store } = await setup(t, kind)
    const empty = Buffer.alloc(0)
    await store.moveHead(head({ key: empty }))
    assert.equal(await store.addFollower(follower({ key: empty, offset: 101 })), true)
    const shown = await store.show(GROUP, TOPIC, '')
    assert.ok(shown)
    assert.equal(shown.key.key.length, 0)
    assert.equal(shown.key.keyText, '')
    assert.equal(shown.records.length, 1)
    assert.equal(shown.records[0]!.key.length, 0)
    assert.equal(await store.headSucceeded(GROUP, TOPIC, empty, 'token-1'), 3)
    assert.equal((await store.releasedKeys(GROUP, TOPIC, [3]))[0]!.key.length, 0)
  })

  test(`${kind}: loadPartition returns the partition's parked keys with record counts, and its sequences`, async (t) => {
    const { store } = await setup(t, kind)
    await store.moveHead(head({ key: Buffer.from('k1'), partition: 3, headOffset: 100, token: 'ta' }))
    await store.moveHead(head({ key: BINARY_KEY, partition: 3, headOffset: 200, token: 'tb' }))
    await store.moveHead(head({ key: Buffer.from('elsewhere'), partition: 4, headOffset: 300, token: 'tc' }))
    await store.moveHead(head({ key: Buffer.from('other-topic'), partition: 3, topic: 'payments', token: 'td' }))
    await store.moveHead(head({ key: Buffer.from('other-group'), partition: 3, group: 'shipping', token: 'te' }))
    for (const offset of [101, 102, 103]) assert.equal(await store.addFollower(follower({ key: Buffer.from('k1'), offset })), true)
    assert.equal(await store.addFollower(follower({ key: Buffer.from('elsewhere'), partition: 4, offset: 301 })), true)
    assert.equal(await store.headSucceeded(GROUP, TOPIC, BINARY_KEY, 'tb'), 3)
    await store.saveSequences(GROUP, TOPIC, 3, [[Buffer.from('s3'), 11]])
    await store.saveSequences(GROUP, TOPIC, 4, [[Buffer.from('s4'), 12]])
    await store.saveSequences(GROUP, 'payments', 3, [[Buffer.from('s-other-topic'), 13]])
    await store.saveSequences('shipping', TOPIC, 3, [[Buffer.from('s-other-group'), 14]])

    const state = await store.loadPartition(GROUP, TOPIC, 3)
    const parked = state.parked.map((p) => ({ key: p.key.toString('hex'), status: p.status, headOffset: p.headOffset, headToken: p.headToken, records: p.records })).sort((a, b) => a.key.localeCompare(b.key))
    assert.deepEqual(parked, [
      { key: Buffer.from('k1').toString('hex'), status: 'parked', headOffset: 100, headToken: 'ta', records: 3 },
      { key: 'ff0001', status: 'released', headOffset: 200, headToken: 'tb', records: 0 },
    ])
    for (const p of state.parked) assert.ok(Buffer.isBuffer(p.key) && p.parkedAt instanceof Date)
    assert.deepEqual(
      state.sequences.map((s) => [s.key.toString(), s.lastSeq]),
      [['s3', 11]],
    )
    const four = await store.loadPartition(GROUP, TOPIC, 4)
    assert.deepEqual(
      four.parked.map((p) => [p.key.toString(), p.records]),
      [['elsewhere', 1]],
    )
    assert.deepEqual(await store.loadPartition(GROUP, TOPIC, 99), { parked: [], sequences: [] })
  })

  test(`${kind}: list() filters by group, topic, status and limit`, async (t) => {
    const { store } = await setup(t, kind)
    await store.moveHead(head({ key: Buffer.from('a'), token: 't1' }))
    await store.moveHead(head({ key: Buffer.from('b'), token: 't2' }))
    await store.moveHead(head({ key: Buffer.from('c'), token: 't3', topic: 'payments' }))
    await store.moveHead(head({ key: Buffer.from('d'), token: 't4', group: 'shipping' }))
    await store.release({ group: GROUP, topic: TOPIC, key: 'b', actor: 'alice', reason: 'operator' })
    assert.equal(await store.addFollower(follower({ key: Buffer.from('a'), offset: 500 })), true)

    const keys = (rows: Array<{ key: Buffer }>) => rows.map((r) => r.key.toString()).sort()
    assert.deepEqual(keys(await store.list()), ['a', 'b', 'c', 'd'])
    assert.deepEqual(keys(await store.list({ group: GROUP })), ['a', 'b', 'c'])
    assert.deepEqual(keys(await store.list({ topic: 'payments' })), ['c'])
    assert.deepEqual(keys(await store.list({ group: GROUP, topic: TOPIC })), ['a', 'b'])
    assert.deepEqual(keys(await store.list({ status: 'released' })), ['b'])
    assert.deepEqual(keys(await store.list({ status: 'parked' })), ['a', 'c', 'd'])
    assert.deepEqual(keys(await store.list({ group: 'shipping', status: 'released' })), [])
    assert.deepEqual(await store.list({ group: 'nobody' }), [])
    assert.equal((await store.list({ limit: 2 })).length, 2)
    assert.equal((await store.list({ limit: 1 })).length, 1)
    assert.equal((await store.list({ limit: 10_000 })).length, 4)
    const a = (await store.list({ group: GROUP, topic: TOPIC, status: 'parked' }))[0]!
    assert.equal(a.parkedRecords, 1)
    const b = (await store.list({ status: 'released' }))[0]!
    assert.equal(b.releaseReason, 'operator')
    assert.equal(b.releasedBy, 'alice')

    for (const limit of [0, 10_001, 1.5, -1, Number.NaN]) {
      await assert.rejects(store.list({ limit }), expectCode('LL_ARGUMENT_INVALID'), `limit ${limit}`)
    }
    for (const status of ['PARKED', 'drained', ''] as never[]) {
      await assert.rejects(store.list({ status }), expectCode('LL_ARGUMENT_INVALID'), `status ${JSON.stringify(status)}`)
    }
  })

  test(`${kind}: show() returns the key, its records and its events, newest first`, async (t) => {
    const { store } = await setup(t, kind)
    assert.equal(await store.show(GROUP, TOPIC, 'nope'), undefined)
    assert.equal(await store.show(GROUP, TOPIC, BINARY_KEY), undefined)
    await store.moveHead(head())
    for (const offset of [103, 101, 102]) assert.equal(await store.addFollower(follower({ offset })), true)
    await store.moveHead(head({ token: 'token-2', headOffset: 104 }))
    await store.release({ group: GROUP, topic: TOPIC, key: 'k1', actor: 'alice', reason: 'operator' })

    const shown = await store.show(GROUP, TOPIC, 'k1')
    assert.ok(shown)
    assert.ok(shown.key.key.equals(Buffer.from('k1')))
    assert.equal(shown.key.status, 'released')
    assert.equal(shown.key.parkedRecords, 3)
    assert.deepEqual(
      shown.records.map((r) => r.offset),
      [103, 101, 102],
    )
    assert.deepEqual(
      shown.events.map((e) => [e.event, e.actor]),
      [
        ['released', 'alice'],
        ['head-moved', null],
        ['parked', null],
      ],
    )
    assert.deepEqual(shown.events[0]!.detail, { reason: 'operator', headOffset: 104, headLocation: 'retry:1' })
    const ids = shown.events.map((e) => BigInt(e.id))
    assert.ok(ids[0]! > ids[1]! && ids[1]! > ids[2]!, 'newest first')
    for (const e of shown.events) assert.ok(e.at instanceof Date)

    const limited = await store.show(GROUP, TOPIC, Buffer.from('k1'), { limit: 1 })
    assert.deepEqual(
      limited!.records.map((r) => r.offset),
      [103],
    )
    assert.equal(limited!.key.parkedRecords, 3, 'the count is not limited')
    assert.equal(await store.show('shipping', TOPIC, 'k1'), undefined, 'another group')
  })

  test(`${kind}: release() validates, refuses keys that are not parked, and checks the head`, async (t) => {
    const { db } = await setup(t, kind)
    const keys = createParkedKeys(db)
    const request = { group: GROUP, topic: TOPIC, key: 'k1', actor: 'alice', reason: 'redriven' }
    await assert.rejects(keys.release({ ...request, actor: '' }), expectCode('LL_ARGUMENT_INVALID'))
    await assert.rejects(keys.release({ ...request, reason: '' }), expectCode('LL_ARGUMENT_INVALID'))
    await assert.rejects(keys.release(request), expectCode('LL_KEY_NOT_PARKED'), 'unknown key')

    const store = new OrderingStore(db)
    await store.moveHead(head({ headOffset: 100 }))
    assert.equal(await store.addFollower(follower({ offset: 101 })), true)
    await assert.rejects(keys.release({ ...request, actor: '' }), expectCode('LL_ARGUMENT_INVALID'), 'validation comes first')
    await assert.rejects(keys.release({ ...request, expectHeadOffset: 99 }), expectCode('LL_KEY_NOT_PARKED'), 'head moved')
    assert.equal((await keys.list())[0]!.status, 'parked', 'a mismatched head is not released')
    assert.deepEqual(
      (await eventsOf(db, Buffer.from('k1'))).map((e) => e.event),
      ['parked'],
    )

    const released = await keys.release({ ...request, expectHeadOffset: 100 })
    assert.ok(released.key.equals(Buffer.from('k1')))
    assert.equal(released.keyText, 'k1')
    assert.equal(released.status, 'released')
    assert.equal(released.releaseReason, 'redriven')
    assert.equal(released.releasedBy, 'alice')
    assert.ok(released.releasedAt instanceof Date)
    assert.equal(released.headOffset, 100)
    assert.equal(released.partition, 3)
    assert.equal(released.parkedRecords, 1)
    assert.deepEqual((await eventsOf(db, Buffer.from('k1'))).at(-1), { event: 'released', detail: { reason: 'redriven', headOffset: 100, headLocation: 'retry:1' }, actor: 'alice' })

    await assert.rejects(keys.release(request), expectCode('LL_KEY_NOT_PARKED'), 'already released')
    await assert.rejects(keys.release({ ...request, expectHeadOffset: 100 }), expectCode('LL_KEY_NOT_PARKED'), 'already released, same head')

    // Without expectHeadOffset any head is released; a Buffer key works as well as a string.
    await store.moveHead(head({ key: BINARY_KEY, headOffset: 7, token: 'tb' }))
    const binary = await keys.release({ ...request, key: BINARY_KEY })
    assert.ok(binary.key.equals(BINARY_KEY))
    assert.equal(binary.parkedRecords, 0)
  })

  test(`${kind}: keyText is the UTF-8 text of a key, or null when the key is not UTF-8`, async (t) => {
    const { store } = await setup(t, kind)
    const text = 'zoë ✓ 🚀'
    await store.moveHead(head({ key: Buffer.from(text, 'utf8'), token: 't1' }))
    await store.moveHead(head({ key: BINARY_KEY, token: 't2' }))
    await store.moveHead(head({ key: Buffer.from([0xc3]), token: 't3' })) // a truncated 2-byte sequence
    const rows = await store.list()
    const byHex = new Map(rows.map((r) => [r.key.toString('hex'), r.keyText]))
    assert.equal(byHex.get(Buffer.from(text, 'utf8').toString('hex')), text)
    assert.equal(byHex.get('ff0001'), null)
    assert.equal(byHex.get('c3'), null)
    const shown = await store.show(GROUP, TOPIC, BINARY_KEY)
    assert.equal(shown!.key.keyText, null)
    assert.ok(shown!.key.key.equals(BINARY_KEY))
    assert.equal((await store.show(GROUP, TOPIC, text))!.key.keyText, text, 'a string key is looked up as its UTF-8 bytes')
  })

  test(`${kind}: hostile group, topic and key text is stored and found back verbatim`, async (t) => {
    const { db, store } = await setup(t, kind)
    const key = Buffer.from(HOSTILE)
    const group = `g${HOSTILE}`
    const topic = `t${HOSTILE}`
    await store.moveHead(head({ group, topic, key, token: HOSTILE, location: HOSTILE, headTopic: HOSTILE, errorCode: HOSTILE, errorMessage: HOSTILE }))
    assert.equal(await store.addFollower(follower({ group, topic, key, headers: [{ key: HOSTILE, value: Buffer.from(HOSTILE) }] })), true)
    await store.saveSequences(group, topic, 3, [[key, 1]])

    const [found] = await store.list({ group, topic })
    assert.ok(found)
    assert.equal(found.group, group)
    assert.equal(found.topic, topic)
    assert.equal(found.keyText, HOSTILE)
    assert.equal(found.headToken, HOSTILE)
    assert.equal(found.headErrorMessage, HOSTILE)
    assert.equal(await store.isHead(group, topic, key, HOSTILE), true)
    const shown = await store.show(group, topic, HOSTILE)
    assert.ok(shown)
    assert.deepEqual(shown.records[0]!.headers, [{ key: HOSTILE, value: Buffer.from(HOSTILE) }])
    assert.equal((await store.loadPartition(group, topic, 3)).sequences[0]!.lastSeq, 1)
    const released = await store.release({ group, topic, key: HOSTILE, actor: HOSTILE, reason: HOSTILE })
    assert.equal(released.releasedBy, HOSTILE)
    assert.equal(released.releaseReason, HOSTILE)

    const { rows } = await db.query<{ n: number }>("select count(*)::int as n from information_schema.tables where table_name in ('lifeline_parked_keys', 'lifeline_parked_records', 'lifeline_key_sequences', 'lifeline_key_events')")
    assert.equal(rows[0]!.n, 4, 'every table still exists')
    assert.equal((await store.list()).length, 1)
  })
}
