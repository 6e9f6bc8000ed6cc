/**
 * Conformance of the runtime's ordering-state writes (src/ordering/protocol-store.ts) on every database
 * kind: embedded PGlite and (with DATABASE_URL) a PostgreSQL server. Every write is fenced by the epoch of
 * the partition it acts through, a compare-and-set on the key's status and head token, and idempotent
 * where a retry after a lost answer must not fail; each answer ('ok' / 'fenced' / 'conflict' and the
 * method-specific ones) is checked, and a refused write is checked to change nothing at all.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { ProtocolStore, type Fence, type HeadMove, type KeyRow, type OutgoingCopy, type StoredRecord } from '../../src/ordering/protocol-store.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { waitFor } from '../helpers/kafka.js'
import { connectAgain, databaseKinds, freshDatabase, type DatabaseKind } from '../helpers/db.js'

const GROUP = 'billing'
const TOPIC = 'orders'
const RETRY = 'billing.orders.retry.1'
const DLQ = 'billing.orders.dlq'
const K1 = Buffer.from('k1')
const BINARY_KEY = Buffer.from([0xff, 0x00, 0x01])
const HOSTILE = "'; drop table lifeline_parked_keys; --"

interface Setup {
  db: SqlExecutor
  ps: ProtocolStore
  /** Source partition 3 of TOPIC, claimed by member-a. */
  fence: Fence
}

async function setup(t: TestContext, kind: DatabaseKind): Promise<Setup> {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  const ps = new ProtocolStore(db)
  const { epoch } = await ps.claim(GROUP, TOPIC, 3, 'member-a', true)
  return { db, ps, fence: { topic: TOPIC, partition: 3, epoch } }
}

/** Claims another partition (a retry tier's, or another source partition) and returns its fence. */
async function fenceOf(ps: ProtocolStore, topic: string, partition: number, withKeys = topic === TOPIC): Promise<Fence> {
  return { topic, partition, epoch: (await ps.claim(GROUP, topic, partition, 'member-a', withKeys)).epoch }
}

function copyOf(overrides: Partial<OutgoingCopy> = {}): OutgoingCopy {
  return { topic: RETRY, partition: 0, key: K1, value: Buffer.from('v'), headers: [{ key: 'lifeline.park.token', value: Buffer.from('t1') }], timestamp: 1_700_000_000_000, ...overrides }
}

function move(overrides: Partial<HeadMove> = {}): HeadMove {
  return { topic: TOPIC, partition: 3, key: K1, expect: { status: 'none' }, token: 't1', headOffset: 100, location: 'retry:1', errorCode: 'E_TIMEOUT', errorMessage: 'upstream timed out', copy: copyOf(), ...overrides }
}

function record(overrides: Partial<StoredRecord> = {}): StoredRecord {
  return { topic: TOPIC, partition: 3, key: K1, offset: 101, value: Buffer.from('v'), headers: [], timestamp: 1_700_000_000_000, ...overrides }
}

/** The key's events, oldest first, straight from the table. */
async function eventsOf(db: SqlExecutor, key: Buffer): Promise<Array<{ event: string; detail: unknown; actor: string | null }>> {
  const { rows } = await db.query<{ event: string; detail: unknown; actor: string | null }>('select event, detail, actor from lifeline_key_events where group_id = $1 and topic = $2 and key = $3 order by id', [GROUP, TOPIC, key])
  return rows
}

const eventNames = async (db: SqlExecutor, key: Buffer): Promise<string[]> => (await eventsOf(db, key)).map((e) => e.event)

async function lastSeq(db: SqlExecutor, key: Buffer): Promise<number | undefined> {
  const { rows } = await db.query('select last_seq from lifeline_key_sequences where group_id = $1 and topic = $2 and key = $3', [GROUP, TOPIC, key])
  return rows[0] === undefined ? undefined : Number(rows[0].last_seq)
}

async function skipsOf(db: SqlExecutor, key: Buffer): Promise<Array<[number, number, string]>> {
  const { rows } = await db.query('select from_seq, to_seq, policy from lifeline_sequence_skips where group_id = $1 and topic = $2 and key = $3 order by from_seq', [GROUP, TOPIC, key])
  return rows.map((r) => [Number(r.from_seq), Number(r.to_seq), r.policy as string])
}

async function keyColumns(db: SqlExecutor, key: Buffer): Promise<SqlRow | undefined> {
  const { rows } = await db.query('select * from lifeline_parked_keys where group_id = $1 and topic = $2 and key = $3', [GROUP, TOPIC, key])
  return rows[0]
}

/** Every row of every ordering table: a refused write must leave this exactly as it was. */
async function snapshot(db: SqlExecutor): Promise<Record<string, SqlRow[]>> {
  const tables = [
    ['lifeline_partition_epochs', 'group_id, topic, partition'],
    ['lifeline_parked_keys', 'group_id, topic, key'],
    ['lifeline_parked_records', 'id'],
    ['lifeline_key_sequences', 'group_id, topic, key'],
    ['lifeline_key_events', 'id'],
    ['lifeline_sequence_skips', 'group_id, topic, key, from_seq'],
  ] as const
  const out: Record<string, SqlRow[]> = {}
  for (const [table, order] of tables) out[table] = (await db.query(`select * from ${table} order by ${order}`)).rows
  return out
}

/** A key's state in a comparable shape (without its timestamps). */
function shape(k: KeyRow): Record<string, unknown> {
  return { key: k.key.toString('hex'), status: k.status, headOffset: k.headOffset, token: k.token, headState: k.headState, location: k.location, records: k.records, gapFrom: k.gapFrom }
}

/** Parks K1 (or `key`) behind offset 100 with token `token`, and stores records behind it at the given offsets. */
async function parked(s: Setup, key = K1, token = 't1', offsets: number[] = []): Promise<string[]> {
  assert.equal(await s.ps.moveHead(s.fence, GROUP, move({ key, token, copy: copyOf({ key }) })), 'ok')
  for (const offset of offsets) assert.equal(await s.ps.store(s.fence, GROUP, record({ key, offset })), 'stored')
  return (await s.ps.records(GROUP, TOPIC, key, 100)).map((r) => r.id)
}

/** Parks the key, then its head succeeds: released with `token`. */
async function released(s: Setup, key = K1, token = 't1', offsets: number[] = []): Promise<string[]> {
  const ids = await parked(s, key, token, offsets)
  assert.deepEqual(await s.ps.releaseHead(s.fence, GROUP, TOPIC, key, token, 'head-succeeded'), { partition: 3 })
  return ids
}

/** Opens a gap on the key waiting for `from`, storing records of the given sequences (offsets `firstOffset`, +1, ...). */
async function gap(s: Setup, key: Buffer, token: string, from: number, seqs: number[], firstOffset = 200): Promise<void> {
  for (const [i, seq] of seqs.entries()) assert.equal(await s.ps.store(s.fence, GROUP, record({ key, offset: firstOffset + i, seq }), { from, token }), 'stored')
}

/** An executor over an open transaction: the store's statements then run inside it (uncommitted). */
function insideTransaction(tx: SqlQueryable): SqlExecutor {
  return {
    kind: 'postgres',
    query: <R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) => tx.query<R>(text, params),
    transaction: () => Promise.reject(new Error('already inside a transaction')),
    close: () => Promise.resolve(),
  }
}

for (const kind of databaseKinds()) {
  test(`${kind}: claim bumps the epoch of its (group, topic, partition) and records the member`, async (t) => {
    const { db, ps, fence } = await setup(t, kind)
    assert.equal(fence.epoch, 1, 'the first claim of a partition')
    assert.deepEqual(await ps.claim(GROUP, TOPIC, 3, 'member-b', true), { epoch: 2, keys: [], sequences: [], pending: [] })
    assert.equal((await ps.claim(GROUP, TOPIC, 3, 'member-c', true)).epoch, 3)
    assert.equal((await ps.claim(GROUP, TOPIC, 4, 'member-c', true)).epoch, 1, 'another partition')
    assert.equal((await ps.claim(GROUP, RETRY, 3, 'member-c', false)).epoch, 1, 'another topic')
    assert.equal((await ps.claim('shipping', TOPIC, 3, 'member-c', true)).epoch, 1, 'another group')
    const { rows } = await db.query('select epoch, member from lifeline_partition_epochs where group_id = $1 and topic = $2 and partition = 3', [GROUP, TOPIC])
    assert.deepEqual(rows.map((r) => [Number(r.epoch), r.member]), [[3, 'member-c']])
  })

  test(`${kind}: claim loads the partition's keys with record counts, its sequences and the pending copies written through it`, async (t) => {
    const s = await setup(t, kind)
    const { ps } = s
    await parked(s, K1, 't1', [101, 102]) // pending (its copy not acknowledged yet)
    await parked(s, Buffer.from('k2'), 't2')
    assert.equal(await ps.placed(s.fence, GROUP, TOPIC, Buffer.from('k2'), 't2'), 'ok')
    await released(s, Buffer.from('r'), 'tr', [103])
    await gap(s, Buffer.from('g'), 'tg', 5, [7])
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, [[Buffer.from('s3'), 11]]), 'ok')
    // Elsewhere: another partition, topic and group (none of them is partition 3's).
    const four = await fenceOf(ps, TOPIC, 4)
    assert.equal(await ps.moveHead(four, GROUP, move({ partition: 4, key: Buffer.from('elsewhere'), token: 'te' })), 'ok')
    assert.equal(await ps.saveSequences(four, GROUP, TOPIC, 4, [[Buffer.from('s4'), 12]]), 'ok')
    const payments = { topic: 'payments', partition: 3, epoch: (await ps.claim(GROUP, 'payments', 3, 'member-a', true)).epoch }
    assert.equal(await ps.moveHead(payments, GROUP, move({ topic: 'payments', key: Buffer.from('other-topic'), token: 'tp' })), 'ok')
    const shipping = { topic: TOPIC, partition: 3, epoch: (await ps.claim('shipping', TOPIC, 3, 'member-a', true)).epoch }
    assert.equal(await ps.moveHead(shipping, 'shipping', move({ key: Buffer.from('other-group'), token: 'ts' })), 'ok')
    // A head moved by a retry tier's consumer: its pending copy was written through the retry partition.
    const five = await fenceOf(ps, TOPIC, 5)
    assert.equal(await ps.moveHead(five, GROUP, move({ partition: 5, key: Buffer.from('x'), token: 'tx1' })), 'ok')
    assert.equal(await ps.placed(five, GROUP, TOPIC, Buffer.from('x'), 'tx1'), 'ok')
    const retry = await fenceOf(ps, RETRY, 0)
    const retryCopy = copyOf({ topic: 'billing.orders.retry.2', partition: 1, key: Buffer.from('x'), value: Buffer.from('x-value') })
    assert.equal(await ps.moveHead(retry, GROUP, move({ partition: 5, key: Buffer.from('x'), expect: { status: 'parked', token: 'tx1' }, token: 'tx2', headOffset: 500, location: 'retry:2', copy: retryCopy })), 'ok')

    const claimed = await ps.claim(GROUP, TOPIC, 3, 'member-b', true)
    assert.equal(claimed.epoch, 2)
    assert.deepEqual(claimed.keys.map(shape).sort((a, b) => String(a.key).localeCompare(String(b.key))), [
      { key: Buffer.from('g').toString('hex'), status: 'gap', headOffset: -1, token: 'tg', headState: 'placed', location: 'gap', records: 1, gapFrom: 5 },
      { key: K1.toString('hex'), status: 'parked', headOffset: 100, token: 't1', headState: 'pending', location: 'retry:1', records: 2, gapFrom: null },
      { key: Buffer.from('k2').toString('hex'), status: 'parked', headOffset: 100, token: 't2', headState: 'placed', location: 'retry:1', records: 0, gapFrom: null },
      { key: Buffer.from('r').toString('hex'), status: 'released', headOffset: 100, token: 'tr', headState: 'placed', location: 'retry:1', records: 1, gapFrom: null },
    ])
    for (const k of claimed.keys) {
      assert.ok(Buffer.isBuffer(k.key) && k.parkedAt instanceof Date)
      assert.equal(k.gapSince instanceof Date, k.status === 'gap', 'gapSince is set for a gap only')
    }
    assert.deepEqual(claimed.sequences.map((q) => [q.key.toString(), q.lastSeq]), [['s3', 11]])
    assert.deepEqual(claimed.pending, [{ topic: TOPIC, key: K1, token: 't1', location: 'retry:1', copy: copyOf() }], "only partition 3's own pending copy")

    const fifth = await ps.claim(GROUP, TOPIC, 5, 'member-b', true)
    assert.deepEqual(fifth.keys.map(shape), [{ key: Buffer.from('x').toString('hex'), status: 'parked', headOffset: 500, token: 'tx2', headState: 'pending', location: 'retry:2', records: 0, gapFrom: null }])
    assert.deepEqual(fifth.pending, [], 'the copy was written through the retry partition, whose owner produces it again')
    const retryClaim = await ps.claim(GROUP, RETRY, 0, 'member-b', false)
    assert.deepEqual(retryClaim, { epoch: 2, keys: [], sequences: [], pending: [{ topic: TOPIC, key: Buffer.from('x'), token: 'tx2', location: 'retry:2', copy: retryCopy }] })
    assert.deepEqual((await ps.claim(GROUP, TOPIC, 3, 'member-c', false)).keys, [], 'withKeys false loads no keys')
  })

  test(`${kind}: a write with an older epoch (or an unclaimed partition) is refused and changes nothing`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const old = s.fence
    const [stored] = await parked(s, K1, 't1', [101])
    const [behindReleased] = await released(s, Buffer.from('r'), 'tr', [102])
    await gap(s, Buffer.from('g'), 'tg', 5, [7])
    const fresh: Fence = { ...old, epoch: (await ps.claim(GROUP, TOPIC, 3, 'member-b', true)).epoch }
    const before = await snapshot(db)

    const refusals: Array<[string, () => Promise<unknown>]> = [
      ['moveHead (park)', () => ps.moveHead(old, GROUP, move({ key: Buffer.from('new'), token: 'tn' }))],
      ['moveHead (move)', () => ps.moveHead(old, GROUP, move({ expect: { status: 'parked', token: 't1' }, token: 't1b', fromParkedRecord: stored, seq: 9, skip: { from: 1, to: 8, policy: 'dead-letter' } }))],
      ['placed', () => ps.placed(old, GROUP, TOPIC, K1, 't1')],
      ['store', () => ps.store(old, GROUP, record({ offset: 150 }))],
      ['store (open a gap)', () => ps.store(old, GROUP, record({ key: Buffer.from('new'), offset: 151, seq: 3 }), { from: 1, token: 'tn' })],
      ['releaseHead', () => ps.releaseHead(old, GROUP, TOPIC, K1, 't1', 'head-succeeded')],
      ['replayed', () => ps.replayed(old, GROUP, { topic: TOPIC, partition: 3, key: Buffer.from('r'), id: behindReleased!, releaseToken: 'tr', seq: 4 })],
      ['finishRelease', () => ps.finishRelease(old, GROUP, TOPIC, Buffer.from('r'), 'tr')],
      ['reopenGap', () => ps.reopenGap(old, GROUP, TOPIC, Buffer.from('r'), 'tr', 'tr2', 9)],
      ['closeGap', () => ps.closeGap(old, GROUP, { topic: TOPIC, partition: 3, key: Buffer.from('g'), token: 'tg' })],
      ['closeGap (skip)', () => ps.closeGap(old, GROUP, { topic: TOPIC, partition: 3, key: Buffer.from('g'), token: 'tg', skip: 'skip' })],
      ['saveSequences', () => ps.saveSequences(old, GROUP, TOPIC, 3, [[K1, 50]])],
    ]
    const elsewhere: Fence[] = [
      { ...fresh, epoch: fresh.epoch + 1 }, // an epoch nobody took
      { topic: TOPIC, partition: 9, epoch: 1 }, // a partition nobody claimed
      { topic: RETRY, partition: 3, epoch: fresh.epoch }, // the right epoch number of another partition's row
    ]
    for (const [what, write] of refusals) assert.equal(await write(), 'fenced', `${what} with the old epoch`)
    for (const f of elsewhere) {
      assert.equal(await ps.moveHead(f, GROUP, move({ key: Buffer.from('new'), token: 'tn' })), 'fenced', `moveHead through ${JSON.stringify(f)}`)
      assert.equal(await ps.saveSequences(f, GROUP, TOPIC, 3, [[K1, 50]]), 'fenced', `saveSequences through ${JSON.stringify(f)}`)
    }
    assert.deepEqual(await snapshot(db), before, 'nothing changed')

    // The new owner's writes go through.
    assert.equal(await ps.placed(fresh, GROUP, TOPIC, K1, 't1'), 'ok')
    assert.deepEqual(await ps.releaseHead(fresh, GROUP, TOPIC, K1, 't1', 'head-succeeded'), { partition: 3 })
  })

  test(`${kind}: moveHead parks a key (expect none), storing its outgoing copy as pending; a key with state is a conflict`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ errorMessage: 'x'.repeat(5000) })), 'ok')
    const row = await ps.keyRow(GROUP, TOPIC, K1)
    assert.ok(row)
    assert.deepEqual(shape(row), { key: K1.toString('hex'), status: 'parked', headOffset: 100, token: 't1', headState: 'pending', location: 'retry:1', records: 0, gapFrom: null })
    assert.equal(row.gapSince, null)
    const cols = await keyColumns(db, K1)
    assert.equal(cols?.partition, 3)
    assert.equal(cols?.head_topic, RETRY)
    assert.equal(cols?.head_error_code, 'E_TIMEOUT')
    assert.equal(cols?.head_error_message, 'x'.repeat(2000), 'the error message is capped at 2000 characters')
    assert.deepEqual([cols?.writer_topic, cols?.writer_partition, Number(cols?.writer_epoch)], [TOPIC, 3, s.fence.epoch])
    assert.deepEqual(await eventsOf(db, K1), [{ event: 'parked', detail: { offset: 100, location: 'retry:1', topic: RETRY, errorCode: 'E_TIMEOUT' }, actor: null }])

    // A retry after a lost answer finds its own token in place: ok, and nothing written twice.
    const before = await snapshot(db)
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ errorMessage: 'x'.repeat(5000) })), 'ok')
    assert.deepEqual(await snapshot(db), before)
    // Expecting no state while the key has state (another token) is a conflict.
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ token: 't-other', headOffset: 120 })), 'conflict')
    assert.deepEqual(await snapshot(db), before)
  })

  test(`${kind}: moveHead moves a parked head (compare-and-set on status and token), idempotently`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await parked(s)
    const dlqCopy = copyOf({ topic: DLQ, partition: 2 })
    const next = move({ expect: { status: 'parked', token: 't1' }, token: 't2', headOffset: 105, location: 'dlq', errorCode: 'E_FATAL', copy: dlqCopy })
    const before = await snapshot(db)
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...next, expect: { status: 'parked', token: 't-wrong' } }), 'conflict', 'wrong token')
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...next, expect: { status: 'released', token: 't1' } }), 'conflict', 'wrong status')
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...next, expect: { status: 'gap', token: 't1' } }), 'conflict', 'wrong status')
    assert.deepEqual(await snapshot(db), before, 'a conflict changes nothing')

    assert.equal(await ps.moveHead(s.fence, GROUP, next), 'ok')
    assert.deepEqual(shape((await ps.keyRow(GROUP, TOPIC, K1))!), { key: K1.toString('hex'), status: 'parked', headOffset: 105, token: 't2', headState: 'pending', location: 'dlq', records: 0, gapFrom: null })
    assert.equal((await keyColumns(db, K1))?.head_topic, DLQ)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'head-moved', detail: { offset: 105, location: 'dlq', topic: DLQ, errorCode: 'E_FATAL' }, actor: null })
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't1'), false, 'the old head is stale')
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't2'), true)

    const after = await snapshot(db)
    assert.equal(await ps.moveHead(s.fence, GROUP, next), 'ok', 'a retry with the same new token')
    assert.deepEqual(await snapshot(db), after, 'and nothing written twice')
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...next, token: 't3' }), 'conflict', 'the old token no longer matches')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ key: Buffer.from('nobody'), expect: { status: 'parked', token: 't1' }, token: 't9' })), 'conflict', 'a key without state')
    assert.equal(await ps.keyRow(GROUP, TOPIC, Buffer.from('nobody')), undefined)
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...next, token: 't4', expect: { status: 'parked', token: 't2' }, event: 'redriven-again' }), 'ok')
    assert.equal((await eventsOf(db, K1)).at(-1)?.event, 'redriven-again', 'a named event')
  })

  test(`${kind}: moveHead re-parks a released key (expect released + token) and clears its release fields`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await released(s)
    assert.equal((await keyColumns(db, K1))?.release_reason, 'head-succeeded')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ expect: { status: 'released', token: 't-wrong' }, token: 't2' })), 'conflict')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ expect: { status: 'parked', token: 't1' }, token: 't2' })), 'conflict', 'the key is released, not parked')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ expect: { status: 'released', token: 't1' }, token: 't2', headOffset: 110 })), 'ok')
    const cols = await keyColumns(db, K1)
    assert.deepEqual([cols?.status, Number(cols?.head_offset), cols?.head_token, cols?.head_state], ['parked', 110, 't2', 'pending'])
    assert.deepEqual([cols?.release_reason, cols?.released_by, cols?.released_at], [null, null, null])
    assert.deepEqual(await eventNames(db, K1), ['parked', 'released', 'head-moved'])
  })

  test(`${kind}: moveHead from a gap (expect gap + token) takes a stored record as head in the same statement, saves its sequence and records the skipped range`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await gap(s, K1, 'tg', 5, [9, 12])
    const [first, second] = await ps.records(GROUP, TOPIC, K1, 10)
    assert.ok(first && second)
    assert.equal(first.seq, 9)
    const deadLettered = move({ expect: { status: 'gap', token: 'tg' }, token: 't2', headOffset: first.offset, location: 'dlq', copy: copyOf({ topic: DLQ }), fromParkedRecord: first.id, seq: 9, skip: { from: 5, to: 8, policy: 'dead-letter' } })
    const before = await snapshot(db)
    assert.equal(await ps.moveHead(s.fence, GROUP, { ...deadLettered, expect: { status: 'gap', token: 't-wrong' } }), 'conflict')
    assert.deepEqual(await snapshot(db), before, 'a refused move keeps the record, the sequence and the skips as they were')

    assert.equal(await ps.moveHead(s.fence, GROUP, deadLettered), 'ok')
    const row = (await ps.keyRow(GROUP, TOPIC, K1))!
    assert.deepEqual(shape(row), { key: K1.toString('hex'), status: 'parked', headOffset: 200, token: 't2', headState: 'pending', location: 'dlq', records: 1, gapFrom: null })
    assert.equal(row.gapSince, null)
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 10)).map((r) => r.id), [second.id], 'the head left the stored records')
    assert.equal(await lastSeq(db, K1), 9)
    assert.deepEqual(await skipsOf(db, K1), [[5, 8, 'dead-letter']])
    for (const [seq, skipped] of [[4, false], [5, true], [7, true], [8, true], [9, false], [12, false]] as const) {
      assert.equal(await ps.isSkipped(GROUP, TOPIC, K1, seq), skipped, `seq ${seq}`)
    }
    assert.equal(await ps.isSkipped(GROUP, 'payments', K1, 6), false, 'another topic')
    assert.equal(await ps.isSkipped(GROUP, TOPIC, Buffer.from('k2'), 6), false, 'another key')
    // The default event of a move out of a gap is `parked` (the key was not parked before).
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'parked', detail: { offset: 200, location: 'dlq', topic: DLQ, errorCode: 'E_TIMEOUT', skipped: [5, 8] }, actor: null })

    // A move whose sequence is lower than the saved one never moves the sequence back.
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, [[K1, 20]]), 'ok')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ expect: { status: 'parked', token: 't2' }, token: 't3', headOffset: 201, fromParkedRecord: second.id, seq: 12 })), 'ok')
    assert.equal(await lastSeq(db, K1), 20)
    assert.deepEqual(await ps.records(GROUP, TOPIC, K1, 10), [])
  })

  test(`${kind}: moveHead with fromParkedRecord is one statement: a failure keeps the record and the head`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const [first, second] = await parked(s, K1, 't1', [101, 102])
    // The event insert fails (a trigger refuses it): the delete of the stored record must roll back with the head move.
    await db.query(`create function refuse_event() returns trigger language plpgsql as $$ begin raise exception 'injected failure'; end $$`)
    await db.query('create trigger refuse_event before insert on lifeline_key_events for each row execute function refuse_event()')
    const next = move({ expect: { status: 'parked', token: 't1' }, token: 't2', headOffset: 101, fromParkedRecord: first, seq: 4 })
    await assert.rejects(ps.moveHead(s.fence, GROUP, next), /injected failure/)
    await db.query('drop trigger refuse_event on lifeline_key_events')
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 10)).map((r) => r.id), [first, second], 'the stored record is still there')
    assert.equal((await ps.keyRow(GROUP, TOPIC, K1))?.token, 't1', 'and the head where it was')
    assert.equal(await lastSeq(db, K1), undefined)

    assert.equal(await ps.moveHead(s.fence, GROUP, next), 'ok')
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 10)).map((r) => r.id), [second])
    assert.deepEqual(shape((await ps.keyRow(GROUP, TOPIC, K1))!), { key: K1.toString('hex'), status: 'parked', headOffset: 101, token: 't2', headState: 'pending', location: 'retry:1', records: 1, gapFrom: null })
    assert.equal(await lastSeq(db, K1), 4)
    assert.deepEqual(await eventNames(db, K1), ['parked', 'head-moved'])
  })

  test(`${kind}: the outgoing copy is stored byte-exact, returned pending by a later claim of its writer's partition, and cleared by placed()`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const headers: KafkaHeader[] = [
      { key: 'lifeline.park.token', value: Buffer.from('t1') },
      { key: 'nothing', value: null },
      { key: 'empty', value: Buffer.alloc(0) },
      { key: 'binary', value: Buffer.from([0x00, 0xff, 0x80, 0xc3]) },
      { key: 'binary', value: Buffer.from([0x01]) },
      { key: 'zoë ✓', value: Buffer.from('ünïcödé', 'utf8') },
    ]
    const value = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const exact = copyOf({ topic: DLQ, partition: 7, key: BINARY_KEY, value, headers, timestamp: 1_700_000_000_123 })
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ key: BINARY_KEY, token: 'tb', location: 'dlq', copy: exact })), 'ok')
    const bare = copyOf({ key: null, value: null, headers: [] })
    delete bare.timestamp
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ key: Buffer.alloc(0), token: 'te', copy: bare })), 'ok')

    const { pending } = await ps.claim(GROUP, TOPIC, 3, 'member-b', true)
    const byToken = new Map(pending.map((p) => [p.token, p]))
    assert.equal(pending.length, 2)
    assert.deepEqual(byToken.get('tb'), { topic: TOPIC, key: BINARY_KEY, token: 'tb', location: 'dlq', copy: exact })
    const got = byToken.get('tb')!.copy
    assert.equal(got.headers[1]!.value, null, 'a null header value stays null')
    assert.ok(got.headers[2]!.value !== null && got.headers[2]!.value.length === 0, 'an empty header value stays empty')
    assert.deepEqual(byToken.get('te'), { topic: TOPIC, key: Buffer.alloc(0), token: 'te', location: 'retry:1', copy: bare }, 'a null key and value, no timestamp')
    assert.equal('timestamp' in byToken.get('te')!.copy, false)

    const fresh: Fence = { ...s.fence, epoch: s.fence.epoch + 1 }
    const before = await snapshot(db)
    assert.equal(await ps.placed(fresh, GROUP, TOPIC, BINARY_KEY, 't-other'), 'conflict', 'another token')
    assert.equal(await ps.placed(fresh, GROUP, TOPIC, Buffer.from('nobody'), 'tb'), 'conflict', 'a key without state')
    assert.deepEqual(await snapshot(db), before)
    assert.equal(await ps.placed(fresh, GROUP, TOPIC, BINARY_KEY, 'tb'), 'ok')
    assert.equal(await ps.placed(fresh, GROUP, TOPIC, BINARY_KEY, 'tb'), 'ok', 'idempotent')
    assert.equal((await ps.keyRow(GROUP, TOPIC, BINARY_KEY))?.headState, 'placed')
    const cols = await keyColumns(db, BINARY_KEY)
    assert.deepEqual([cols?.out_key, cols?.out_value, cols?.out_headers], [null, null, null], 'the stored copy is dropped')
    assert.deepEqual([cols?.out_topic, cols?.out_partition], [DLQ, 7], 'where it went is kept')
    assert.deepEqual((await ps.claim(GROUP, TOPIC, 3, 'member-c', true)).pending.map((p) => p.token), ['te'])
  })

  test(`${kind}: store() stores behind a key with state, opens a gap for a key without, and knows a redelivery`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    // No state and no gap to open: a conflict, nothing stored.
    const before = await snapshot(db)
    assert.equal(await ps.store(s.fence, GROUP, record()), 'conflict')
    assert.deepEqual(await snapshot(db), before)

    await parked(s)
    const headers: KafkaHeader[] = [{ key: 'nothing', value: null }, { key: 'empty', value: Buffer.alloc(0) }, { key: HOSTILE, value: Buffer.from([0xff]) }]
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 101, value: null, headers, timestamp: -1 })), 'stored')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 101, value: Buffer.from('other') })), 'exists', 'a redelivered offset')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 102, seq: 2 ** 40, value: Buffer.alloc(0) })), 'stored')
    // With openGap on a key that has state: stored behind it, the key keeps its state.
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 103, seq: 3 }), { from: 1, token: 't-gap' }), 'stored')
    assert.deepEqual(shape((await ps.keyRow(GROUP, TOPIC, K1))!), { key: K1.toString('hex'), status: 'parked', headOffset: 100, token: 't1', headState: 'pending', location: 'retry:1', records: 3, gapFrom: null })
    assert.deepEqual(await eventNames(db, K1), ['parked'], 'no gap opened')
    const stored = await ps.records(GROUP, TOPIC, K1, 10)
    // Replay order: unsequenced first (by arrival), then by sequence.
    assert.deepEqual(stored.map((r) => [r.offset, r.seq]), [[101, null], [103, 3], [102, 2 ** 40]])
    const [a] = stored
    assert.equal(a!.value, null, 'the first copy is kept')
    assert.deepEqual(a!.headers, headers)
    assert.equal(a!.timestamp, -1)
    assert.ok(stored[2]!.value !== null && stored[2]!.value.length === 0)
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 2)).map((r) => r.offset), [101, 103], 'limit')

    // openGap on a key without state: a gap key is created, then the record stored behind it.
    const g = Buffer.from('g')
    assert.equal(await ps.store(s.fence, GROUP, record({ key: g, offset: 110, seq: 7 }), { from: 5, token: 'tg' }), 'stored')
    const row = (await ps.keyRow(GROUP, TOPIC, g))!
    assert.deepEqual(shape(row), { key: g.toString('hex'), status: 'gap', headOffset: -1, token: 'tg', headState: 'placed', location: 'gap', records: 1, gapFrom: 5 })
    assert.ok(row.gapSince instanceof Date)
    assert.deepEqual(await eventsOf(db, g), [{ event: 'gap-opened', detail: { missing: 5, offset: 110, seq: 7 }, actor: null }])
    assert.equal(await ps.store(s.fence, GROUP, record({ key: g, offset: 111, seq: 8 }), { from: 6, token: 'tg2' }), 'stored', 'the gap is open already')
    assert.equal(await ps.store(s.fence, GROUP, record({ key: g, offset: 112, seq: 9 })), 'stored', 'behind a gap key')
    const again = (await ps.keyRow(GROUP, TOPIC, g))!
    assert.deepEqual([again.token, again.gapFrom, again.records], ['tg', 5, 3], 'the first gap stays')
    assert.deepEqual(await eventNames(db, g), ['gap-opened'])

    // Behind a released key too (its owner replays it).
    await released(s, Buffer.from('r'), 'tr')
    assert.equal(await ps.store(s.fence, GROUP, record({ key: Buffer.from('r'), offset: 120 })), 'stored')
  })

  test(`${kind}: store() answers duplicate for a sequence already stored at another offset, and stores nothing`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await gap(s, K1, 'tg', 5, [7])
    const before = await snapshot(db)
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 250, seq: 7, value: Buffer.from('again') })), 'duplicate')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 251, seq: 7 }), { from: 5, token: 'tg' }), 'duplicate', 'with openGap too')
    assert.deepEqual(await snapshot(db), before)
    assert.equal(await ps.store(s.fence, GROUP, record({ key: Buffer.from('other'), offset: 252, seq: 7 }), { from: 5, token: 'to' }), 'stored', 'the same sequence of another key')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 253 })), 'stored', 'an unsequenced record is never a duplicate')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 254 })), 'stored')
    assert.equal(await ps.store(s.fence, GROUP, record({ offset: 255, seq: 8 })), 'stored')
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 10)).map((r) => [r.offset, r.seq]), [[253, null], [254, null], [200, 7], [255, 8]])
  })

  test(
    `${kind}: store() answers exists (not duplicate) for a redelivery of a sequenced record's own offset`,
    async (t) => {
      const s = await setup(t, kind)
      const { db, ps } = s
      const g = Buffer.from('g')
      assert.equal(await ps.store(s.fence, GROUP, record({ key: g, offset: 110, seq: 7 }), { from: 5, token: 'tg' }), 'stored')
      await parked(s, K1, 't1')
      assert.equal(await ps.store(s.fence, GROUP, record({ offset: 120, seq: 3 })), 'stored')
      const before = await snapshot(db)
      // A retry after a lost answer (or a redelivery after a crash) of the record that opened the gap.
      assert.equal(await ps.store(s.fence, GROUP, record({ key: g, offset: 110, seq: 7 }), { from: 5, token: 'tg' }), 'exists', 'a redelivery of the gap opener')
      assert.equal(await ps.store(s.fence, GROUP, record({ offset: 120, seq: 3 })), 'exists', 'a redelivery behind a parked key')
      assert.deepEqual(await snapshot(db), before)
    },
  )

  test(`${kind}: releaseHead releases the parked head with its token, answers a repeat with the partition, and is stale otherwise`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    assert.equal(await ps.releaseHead(s.fence, GROUP, TOPIC, K1, 't1', 'head-succeeded'), 'stale', 'a key without state')
    await parked(s, K1, 't1', [101])
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ expect: { status: 'parked', token: 't1' }, token: 't2' })), 'ok')
    const before = await snapshot(db)
    assert.equal(await ps.releaseHead(s.fence, GROUP, TOPIC, K1, 't1', 'head-succeeded'), 'stale', 'an earlier head')
    assert.deepEqual(await snapshot(db), before)

    // The head succeeded in a retry tier: released through the retry partition, answering the key's source partition.
    const retry = await fenceOf(ps, RETRY, 0)
    assert.deepEqual(await ps.releaseHead(retry, GROUP, TOPIC, K1, 't2', 'head-succeeded'), { partition: 3 })
    const cols = await keyColumns(db, K1)
    assert.deepEqual([cols?.status, cols?.head_state, cols?.release_reason, cols?.released_by], ['released', 'placed', 'head-succeeded', 'runtime'])
    assert.ok(cols?.released_at instanceof Date)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'released', detail: { reason: 'head-succeeded' }, actor: 'runtime' })
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't2'), false, 'a released key has no head to run')

    const after = await snapshot(db)
    assert.deepEqual(await ps.releaseHead(retry, GROUP, TOPIC, K1, 't2', 'head-succeeded'), { partition: 3 }, 'a repeat (lost answer)')
    assert.equal(await ps.releaseHead(retry, GROUP, TOPIC, K1, 't1', 'head-succeeded'), 'stale', 'another token of a released key')
    assert.deepEqual(await snapshot(db), after, 'a repeat writes nothing')

    await gap(s, Buffer.from('g'), 'tg', 5, [7])
    assert.equal(await ps.releaseHead(s.fence, GROUP, TOPIC, Buffer.from('g'), 'tg', 'head-succeeded'), 'stale', 'a gap key has no head')
    assert.equal((await ps.keyRow(GROUP, TOPIC, Buffer.from('g')))?.status, 'gap')
  })

  test(`${kind}: replayed deletes a stored record under the key's release token only, and saves its sequence`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const [first, second, third] = await parked(s, K1, 't1', [101, 102, 103])
    const p = { topic: TOPIC, partition: 3, key: K1, releaseToken: 't1' }
    let before = await snapshot(db)
    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: first! }), 'conflict', 'the key is still parked')
    assert.deepEqual(await snapshot(db), before)

    assert.deepEqual(await ps.releaseHead(s.fence, GROUP, TOPIC, K1, 't1', 'head-succeeded'), { partition: 3 })
    before = await snapshot(db)
    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: first!, releaseToken: 't-other' }), 'conflict', 'another release token')
    assert.deepEqual(await snapshot(db), before)

    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: first!, seq: 6 }), 'ok')
    assert.deepEqual((await ps.records(GROUP, TOPIC, K1, 10)).map((r) => r.id), [second, third])
    assert.equal(await lastSeq(db, K1), 6)
    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: first!, seq: 6 }), 'ok', 'a repeat')
    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: second!, seq: 4 }), 'ok', 'a duplicate skipped')
    assert.equal(await lastSeq(db, K1), 6, 'never moves back')
    assert.equal(await ps.replayed(s.fence, GROUP, { ...p, id: third! }), 'ok', 'an unsequenced record')
    assert.deepEqual(await ps.records(GROUP, TOPIC, K1, 10), [])
    assert.equal(await lastSeq(db, K1), 6)
  })

  test(`${kind}: finishRelease forgets a released key once nothing waits behind it`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const [first] = await released(s, K1, 't1', [101])
    assert.equal(await ps.store(s.fence, GROUP, record({ key: Buffer.from('k2'), offset: 150 }), { from: 1, token: 't-k2' }), 'stored')
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, K1, 't-other'), 'conflict', 'another release token')
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, K1, 't1'), 'records-left')
    assert.equal((await ps.keyRow(GROUP, TOPIC, K1))?.status, 'released', 'the key stays while records wait')
    assert.equal(await ps.replayed(s.fence, GROUP, { topic: TOPIC, partition: 3, key: K1, id: first!, releaseToken: 't1' }), 'ok')
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, K1, 't1'), 'done', "another key's records do not hold it back")
    assert.equal(await ps.keyRow(GROUP, TOPIC, K1), undefined)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'drained', detail: {}, actor: 'runtime' })
    assert.equal((await ps.keyRow(GROUP, TOPIC, Buffer.from('k2')))?.records, 1)
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, K1, 't1'), 'conflict', 'a key without state')

    // Re-parked meanwhile (its replayed record failed): the release is over, the key must survive.
    await released(s, Buffer.from('r'), 'tr')
    assert.equal(await ps.moveHead(s.fence, GROUP, move({ key: Buffer.from('r'), expect: { status: 'released', token: 'tr' }, token: 'tr2', headOffset: 130 })), 'ok')
    const before = await snapshot(db)
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, Buffer.from('r'), 'tr'), 'conflict')
    assert.deepEqual(await snapshot(db), before)
    assert.equal(await ps.finishRelease(s.fence, GROUP, TOPIC, Buffer.from('r'), 'tr2'), 'conflict', 'parked, not released')
    assert.equal((await ps.keyRow(GROUP, TOPIC, Buffer.from('r')))?.status, 'parked')
  })

  test(`${kind}: reopenGap turns a released key into a gap key with a new token, idempotently`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await released(s, K1, 't1', [101])
    let before = await snapshot(db)
    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, K1, 't-other', 'tg', 7), 'conflict', 'another release token')
    assert.deepEqual(await snapshot(db), before)

    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, K1, 't1', 'tg', 7), 'ok')
    const row = (await ps.keyRow(GROUP, TOPIC, K1))!
    assert.deepEqual(shape(row), { key: K1.toString('hex'), status: 'gap', headOffset: -1, token: 'tg', headState: 'placed', location: 'gap', records: 1, gapFrom: 7 })
    assert.ok(row.gapSince instanceof Date)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'gap-opened', detail: { missing: 7 }, actor: null })
    before = await snapshot(db)
    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, K1, 't1', 'tg', 7), 'ok', 'a repeat (lost answer)')
    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, K1, 't1', 'tg-other', 8), 'conflict', 'the release is over')
    assert.deepEqual(await snapshot(db), before)

    await parked(s, Buffer.from('p'), 'tp')
    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, Buffer.from('p'), 'tp', 'tg2', 3), 'conflict', 'a parked key')
    assert.equal(await ps.reopenGap(s.fence, GROUP, TOPIC, Buffer.from('nobody'), 'tp', 'tg3', 3), 'conflict', 'a key without state')
  })

  test(`${kind}: closeGap releases a gap key keeping its token and answers the first stored sequence`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await gap(s, K1, 'tg', 5, [9, 7])
    const p = { topic: TOPIC, partition: 3, key: K1, token: 'tg' }
    const before = await snapshot(db)
    assert.equal(await ps.closeGap(s.fence, GROUP, { ...p, token: 't-other' }), 'conflict', 'another token')
    assert.equal(await ps.closeGap(s.fence, GROUP, { ...p, key: Buffer.from('nobody') }), 'conflict', 'a key without state')
    assert.deepEqual(await snapshot(db), before)

    // The missing sequence arrived and was handled (its sequence saved by the caller): no skip.
    assert.deepEqual(await ps.closeGap(s.fence, GROUP, p), { firstStored: 7 })
    const row = (await ps.keyRow(GROUP, TOPIC, K1))!
    assert.deepEqual([row.status, row.token, row.records], ['released', 'tg', 2])
    assert.equal((await keyColumns(db, K1))?.release_reason, 'gap-filled')
    assert.deepEqual(await skipsOf(db, K1), [])
    assert.equal(await lastSeq(db, K1), undefined)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'gap-filled', detail: { missing: 5, firstStored: 7 }, actor: 'runtime' })
    assert.deepEqual(await ps.releasedKeys(GROUP, TOPIC, [3]), [{ partition: 3, key: K1, token: 'tg' }])
    assert.equal(await ps.closeGap(s.fence, GROUP, p), 'conflict', 'released, no longer a gap')
    assert.equal(await ps.closeGap(s.fence, GROUP, { ...p, skip: 'skip' }), 'conflict')

    await parked(s, Buffer.from('p'), 'tp')
    assert.equal(await ps.closeGap(s.fence, GROUP, { ...p, key: Buffer.from('p'), token: 'tp' }), 'conflict', 'a parked key')
  })

  test(`${kind}: closeGap with skip records the skipped range and saves the sequence before the first stored one`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await gap(s, K1, 'tg', 5, [9, 12])
    assert.deepEqual(await ps.closeGap(s.fence, GROUP, { topic: TOPIC, partition: 3, key: K1, token: 'tg', skip: 'skip' }), { firstStored: 9 })
    assert.equal((await ps.keyRow(GROUP, TOPIC, K1))?.status, 'released')
    assert.equal((await keyColumns(db, K1))?.release_reason, 'skip')
    assert.deepEqual(await skipsOf(db, K1), [[5, 8, 'skip']])
    assert.equal(await lastSeq(db, K1), 8)
    for (const [seq, skipped] of [[4, false], [5, true], [8, true], [9, false]] as const) assert.equal(await ps.isSkipped(GROUP, TOPIC, K1, seq), skipped, `seq ${seq}`)
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'gap-skipped', detail: { missing: 5, firstStored: 9 }, actor: 'runtime' })

    // Nothing stored with a sequence: no range to skip, no sequence to save.
    const e = Buffer.from('e')
    assert.equal(await ps.store(s.fence, GROUP, record({ key: e, offset: 300 }), { from: 3, token: 'te' }), 'stored')
    assert.deepEqual(await ps.closeGap(s.fence, GROUP, { topic: TOPIC, partition: 3, key: e, token: 'te', skip: 'skip' }), { firstStored: null })
    assert.deepEqual(await skipsOf(db, e), [])
    assert.equal(await lastSeq(db, e), undefined)
    assert.equal((await ps.keyRow(GROUP, TOPIC, e))?.status, 'released')

    // A saved sequence beyond the skip is never moved back.
    const h = Buffer.from('h')
    await gap(s, h, 'th', 2, [4], 400)
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, [[h, 10]]), 'ok')
    assert.deepEqual(await ps.closeGap(s.fence, GROUP, { topic: TOPIC, partition: 3, key: h, token: 'th', skip: 'skip' }), { firstStored: 4 })
    assert.equal(await lastSeq(db, h), 10)
  })

  test(`${kind}: moveHeads, placedMany and areHeads: one statement for several keys, each its own compare-and-set with its own answer; the fence refuses them all`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    await parked(s, K1, 't1')
    await released(s, Buffer.from('r'), 'tr')
    const fresh = Buffer.from('fresh')
    const batch: HeadMove[] = [
      move({ key: fresh, token: 'tf', headOffset: 200 }), // park (expect none)
      move({ expect: { status: 'parked', token: 't1' }, token: 't2', headOffset: 105, location: 'retry:2' }), // move a parked head
      move({ key: Buffer.from('r'), expect: { status: 'released', token: 't-wrong' }, token: 'tr2' }), // conflict: another token
      move({ key: BINARY_KEY, expect: { status: 'parked', token: 'tx' }, token: 'tb' }), // conflict: no state
    ]
    // Through an old epoch: every row refused, nothing written.
    const old = s.fence
    const newer: Fence = { ...old, epoch: (await ps.claim(GROUP, TOPIC, 3, 'member-b', true)).epoch }
    const before = await snapshot(db)
    assert.deepEqual(await ps.moveHeads(old, GROUP, batch), ['fenced', 'fenced', 'fenced', 'fenced'])
    assert.deepEqual(await ps.placedMany(old, GROUP, [{ topic: TOPIC, key: K1, token: 't1' }]), ['fenced'])
    assert.deepEqual(await snapshot(db), before, 'a refused batch changes nothing')

    assert.deepEqual(await ps.moveHeads(newer, GROUP, batch), ['ok', 'ok', 'conflict', 'conflict'])
    assert.deepEqual(shape((await ps.keyRow(GROUP, TOPIC, fresh))!), { key: fresh.toString('hex'), status: 'parked', headOffset: 200, token: 'tf', headState: 'pending', location: 'retry:1', records: 0, gapFrom: null })
    assert.deepEqual(shape((await ps.keyRow(GROUP, TOPIC, K1))!), { key: K1.toString('hex'), status: 'parked', headOffset: 105, token: 't2', headState: 'pending', location: 'retry:2', records: 0, gapFrom: null })
    assert.equal((await ps.keyRow(GROUP, TOPIC, Buffer.from('r')))?.status, 'released', 'a conflicting row changes nothing')
    assert.equal(await ps.keyRow(GROUP, TOPIC, BINARY_KEY), undefined)
    assert.deepEqual(await eventNames(db, fresh), ['parked'])
    assert.deepEqual((await eventsOf(db, K1)).at(-1), { event: 'head-moved', detail: { offset: 105, location: 'retry:2', topic: RETRY, errorCode: 'E_TIMEOUT' }, actor: null })
    const cols = await keyColumns(db, fresh)
    assert.deepEqual([cols?.writer_topic, cols?.writer_partition, Number(cols?.writer_epoch)], [TOPIC, 3, newer.epoch])
    // A retry of the batch after a lost answer: the moves that held find their own tokens.
    const after = await snapshot(db)
    assert.deepEqual(await ps.moveHeads(newer, GROUP, batch.slice(0, 2)), ['ok', 'ok'])
    assert.deepEqual(await snapshot(db), after, 'nothing written twice')

    assert.deepEqual(
      await ps.areHeads(GROUP, [
        { topic: TOPIC, key: K1, token: 't1' },
        { topic: TOPIC, key: K1, token: 't2' },
        { topic: TOPIC, key: fresh, token: 'tf' },
        { topic: TOPIC, key: Buffer.from('r'), token: 'tr' },
      ]),
      [false, true, true, false],
      'a stale token, the heads, a released key',
    )
    assert.deepEqual(
      await ps.placedMany(newer, GROUP, [
        { topic: TOPIC, key: fresh, token: 'tf' },
        { topic: TOPIC, key: K1, token: 't1' },
        { topic: TOPIC, key: K1.subarray(0, 1), token: 't2' },
      ]),
      ['ok', 'conflict', 'conflict'],
    )
    const placedCols = await keyColumns(db, fresh)
    assert.deepEqual([placedCols?.head_state, placedCols?.out_value], ['placed', null])
    assert.equal((await keyColumns(db, K1))?.head_state, 'pending', 'a copy of another token stays pending')
  })

  test(`${kind}: the store analyzes the ordering tables as it fills them, once 100 rows were written and again when they doubled`, async (t) => {
    const s = await setup(t, kind)
    const columnStats = async () =>
      (await s.db.query("select 1 from pg_stats where tablename = 'lifeline_parked_keys' and attname = 'group_id'")).rows.length
    const batch = (b: number) =>
      Array.from({ length: 20 }, (_, i) => {
        const key = Buffer.from(`k-${b}-${i}`)
        return move({ key, token: `t-${b}-${i}`, copy: copyOf({ key }) })
      })
    for (let b = 0; b < 4; b++) assert.deepEqual(await s.ps.moveHeads(s.fence, GROUP, batch(b)), Array(20).fill('ok'))
    assert.equal(s.ps.statistics.runs, 0, '80 rows: not yet')
    assert.equal(await columnStats(), 0, 'a table never analyzed has no column statistics: the planner guesses')
    assert.deepEqual(await s.ps.moveHeads(s.fence, GROUP, batch(4)), Array(20).fill('ok'))
    assert.equal(s.ps.statistics.runs, 1, '100 rows: ANALYZE started, in the background')
    await s.ps.statistics.settled()
    assert.equal(await columnStats(), 1, 'analyzed: group_id has statistics')
    const { rows } = await s.db.query("select reltuples from pg_class where relname = 'lifeline_parked_keys'")
    assert.ok(Number(rows[0]!.reltuples) >= 100, `the planner knows the table's size (reltuples ${String(rows[0]!.reltuples)})`)
    for (let b = 5; b < 9; b++) await s.ps.moveHeads(s.fence, GROUP, batch(b))
    assert.equal(s.ps.statistics.runs, 1, '180 rows: not doubled yet')
    await s.ps.moveHeads(s.fence, GROUP, batch(9))
    assert.equal(s.ps.statistics.runs, 2, '200 rows: doubled, analyzed again')
    await s.ps.statistics.settled()
  })

  test(`${kind}: isHead, keyRow, releasedKeys and recordEvent`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't1'), false, 'no state')
    assert.equal(await ps.keyRow(GROUP, TOPIC, K1), undefined)
    await parked(s, K1, 't1', [101, 102])
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't1'), true)
    assert.equal(await ps.isHead(GROUP, TOPIC, K1, 't-x'), false)
    assert.equal(await ps.isHead('shipping', TOPIC, K1, 't1'), false, 'another group')
    assert.equal(await ps.isHead(GROUP, 'payments', K1, 't1'), false, 'another topic')
    assert.equal(await ps.isHead(GROUP, TOPIC, Buffer.from('k2'), 't1'), false, 'another key')
    assert.equal(await ps.isHead(GROUP, TOPIC, Buffer.from('k'), 't1'), false, 'a key prefix is another key')
    assert.equal((await ps.keyRow(GROUP, TOPIC, K1))?.records, 2)
    assert.equal(await ps.keyRow('shipping', TOPIC, K1), undefined)

    // Released keys of the given partitions, oldest release first, with the token of their release.
    const p0 = await fenceOf(ps, TOPIC, 0)
    const p2 = await fenceOf(ps, TOPIC, 2)
    for (const [f, key, token] of [[p2, 'a', 'ta'], [p0, 'b', 'tb'], [s.fence, 'c', 'tc']] as const) {
      assert.equal(await ps.moveHead(f, GROUP, move({ partition: f.partition, key: Buffer.from(key), token })), 'ok')
      assert.deepEqual(await ps.releaseHead(f, GROUP, TOPIC, Buffer.from(key), token, 'head-succeeded'), { partition: f.partition })
    }
    await gap(s, Buffer.from('g'), 'tg', 1, [3])
    assert.deepEqual(
      (await ps.releasedKeys(GROUP, TOPIC, [0, 2, 3])).map((k) => ({ ...k, key: k.key.toString() })),
      [
        { partition: 2, key: 'a', token: 'ta' },
        { partition: 0, key: 'b', token: 'tb' },
        { partition: 3, key: 'c', token: 'tc' },
      ],
      'parked and gap keys are not released',
    )
    assert.deepEqual((await ps.releasedKeys(GROUP, TOPIC, [0])).map((k) => k.token), ['tb'])
    assert.deepEqual(await ps.releasedKeys(GROUP, TOPIC, [5]), [])
    assert.deepEqual(await ps.releasedKeys(GROUP, TOPIC, []), [])
    assert.deepEqual(await ps.releasedKeys('shipping', TOPIC, [0, 2, 3]), [])

    await ps.recordEvent(GROUP, TOPIC, K1, 'handler-failed', { attempt: 2, why: HOSTILE }, 'runtime')
    await ps.recordEvent(GROUP, TOPIC, K1, 'noted', {})
    assert.deepEqual((await eventsOf(db, K1)).slice(-2), [
      { event: 'handler-failed', detail: { attempt: 2, why: HOSTILE }, actor: 'runtime' },
      { event: 'noted', detail: {}, actor: null },
    ])
  })

  test(`${kind}: saveSequences upserts, never moves a sequence back, keeps any key's bytes, and is fenced`, async (t) => {
    const s = await setup(t, kind)
    const { db, ps } = s
    const seqs = async (partition: number) => (await ps.claim(GROUP, TOPIC, partition, 'member-a', true)).sequences.map((q) => [q.key.toString('hex'), q.lastSeq] as const).sort(([a], [b]) => a.localeCompare(b))
    const a = Buffer.from('a')
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, []), 'ok')
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, [[a, 5], [BINARY_KEY, 2 ** 40]]), 'ok')
    // Each claim bumps the epoch: take the fence anew after reading.
    assert.deepEqual(await seqs(3), [['61', 5], ['ff0001', 2 ** 40]])
    const f = { ...s.fence, epoch: s.fence.epoch + 1 }
    assert.equal(await ps.saveSequences(s.fence, GROUP, TOPIC, 3, [[a, 9]]), 'fenced', 'the epoch before the claim')
    assert.equal(await ps.saveSequences(f, GROUP, TOPIC, 3, [[a, 3], [BINARY_KEY, 2 ** 40 + 1]]), 'ok')
    assert.equal(await lastSeq(db, a), 5, 'a lower sequence never moves a key back')
    assert.equal(await lastSeq(db, BINARY_KEY), 2 ** 40 + 1)

    // Keys and their bytes survive exactly: a comma, quotes, braces, a backslash, NUL, hostile text, the empty key.
    const odd = [Buffer.from('a,b'), Buffer.from('"{}\\'), Buffer.from(HOSTILE), Buffer.from([0x00]), Buffer.alloc(0)]
    const one = await fenceOf(ps, TOPIC, 1)
    assert.equal(await ps.saveSequences(one, GROUP, TOPIC, 1, odd.map((k, i) => [k, i] as const)), 'ok')
    const loaded = (await ps.claim(GROUP, TOPIC, 1, 'member-a', true)).sequences
    assert.equal(loaded.length, odd.length)
    for (const [i, k] of odd.entries()) assert.equal(loaded.find((q) => q.key.equals(k))?.lastSeq, i, `key ${JSON.stringify(k.toString())} round-trips`)

    // A key moving to another partition follows it (and still never moves back).
    const two = await fenceOf(ps, TOPIC, 2)
    assert.equal(await ps.saveSequences(two, GROUP, TOPIC, 2, [[a, 1]]), 'ok')
    assert.deepEqual((await seqs(3)).map(([k]) => k), ['ff0001'])
    assert.deepEqual(await seqs(2), [['61', 5]])
  })

  test(`${kind}: hostile group, topic, key and token text is stored and found back verbatim`, async (t) => {
    const db = await freshDatabase(t, kind)
    await migrateLifeline(db)
    const ps = new ProtocolStore(db)
    const group = `g${HOSTILE}`
    const topic = `t${HOSTILE}`
    const key = Buffer.from(HOSTILE)
    const fence: Fence = { topic, partition: 3, epoch: (await ps.claim(group, topic, 3, HOSTILE, true)).epoch }
    const c = copyOf({ topic: HOSTILE, key, headers: [{ key: HOSTILE, value: Buffer.from(HOSTILE) }] })
    assert.equal(await ps.moveHead(fence, group, move({ topic, key, token: HOSTILE, location: HOSTILE, errorCode: HOSTILE, errorMessage: HOSTILE, copy: c })), 'ok')
    assert.equal(await ps.store(fence, group, record({ topic, key, headers: [{ key: HOSTILE, value: null }] })), 'stored')
    assert.equal(await ps.isHead(group, topic, key, HOSTILE), true)
    const claimed = await ps.claim(group, topic, 3, 'member-b', true)
    assert.deepEqual(claimed.pending, [{ topic, key, token: HOSTILE, location: HOSTILE, copy: c }])
    assert.deepEqual(claimed.keys.map((k) => [k.key.toString(), k.token, k.location, k.records]), [[HOSTILE, HOSTILE, HOSTILE, 1]])
    const shown = await createParkedKeys(db).show(group, topic, HOSTILE)
    assert.equal(shown?.key.headErrorMessage, HOSTILE)
    assert.deepEqual(shown?.records[0]?.headers, [{ key: HOSTILE, value: null }])
    const { rows } = await db.query("select count(*)::int as n from information_schema.tables where table_name like 'lifeline\\_%'")
    assert.ok(Number(rows[0]!.n) >= 6, 'every table still exists')
  })
}

// PGlite has one connection: two writers cannot interleave there. The server is where fencing has to hold.
const serverOnly = { skip: databaseKinds().includes('postgres') ? false : 'needs DATABASE_URL' }

/**
 * An executor on `db` whose transactions stop before COMMIT until `commit()`: `reached` resolves when a
 * transaction's work is done (its locks held). The store under test runs its real statements through it.
 */
function holdingCommits(db: SqlExecutor): { executor: SqlExecutor; reached: Promise<void>; commit: () => void } {
  let commit!: () => void
  const committing = new Promise<void>((resolve) => (commit = resolve))
  let reach!: () => void
  const reached = new Promise<void>((resolve) => (reach = resolve))
  const executor: SqlExecutor = {
    kind: db.kind,
    query: <R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) => db.query<R>(text, params),
    transaction: <T>(fn: (tx: SqlQueryable) => Promise<T>) =>
      db.transaction(async (tx) => {
        const out = await fn(tx)
        reach()
        await committing
        return out
      }),
    close: () => db.close(),
  }
  return { executor, reached, commit }
}

/** Whether a statement on the database of `db` waits for a lock (polled: never a fixed sleep). */
async function someoneWaitsForALock(db: SqlExecutor): Promise<boolean> {
  const { rows } = await db.query("select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'")
  return Number(rows[0]!.n) > 0
}

test('postgres: a claim waits for a fenced write in flight, loads what it wrote, and refuses the old epoch afterwards', serverOnly, async (t) => {
  const db = await freshDatabase(t, 'postgres')
  await migrateLifeline(db)
  const other = await connectAgain(t, db)
  const zombie = new ProtocolStore(db)
  const owner = new ProtocolStore(other)
  const old: Fence = { topic: TOPIC, partition: 3, epoch: (await zombie.claim(GROUP, TOPIC, 3, 'member-a', true)).epoch }
  assert.equal(await zombie.moveHead(old, GROUP, move({ key: Buffer.from('k0'), token: 't0' })), 'ok')

  // The old owner's write is in flight: done, its transaction still open (holding its share lock on the epoch).
  const held = holdingCommits(db)
  const inFlight = held.executor.transaction((tx) => new ProtocolStore(insideTransaction(tx)).moveHead(old, GROUP, move()))
  await Promise.race([held.reached, inFlight])
  // A fence is a share lock: another write of the same epoch is not held up by it.
  assert.equal(await owner.saveSequences(old, GROUP, TOPIC, 3, [[Buffer.from('k0'), 4]]), 'ok')

  let claimed = false
  const claiming = owner.claim(GROUP, TOPIC, 3, 'member-b', true).finally(() => (claimed = true))
  await waitFor(() => someoneWaitsForALock(other), 'the claim to wait for the lock of the write in flight', 60_000)
  assert.equal(claimed, false, 'the claim waits for the write in flight')
  held.commit()
  assert.equal(await inFlight, 'ok')
  const claim = await claiming
  assert.equal(claim.epoch, old.epoch + 1)
  assert.deepEqual(claim.keys.map((k) => k.key.toString()).sort(), ['k0', 'k1'], 'the claim loads what the write in flight committed')
  assert.deepEqual(claim.pending.map((p) => p.token).sort(), ['t0', 't1'])
  assert.deepEqual(claim.sequences.map((q) => [q.key.toString(), q.lastSeq]), [['k0', 4]])

  // From now on every write of the old epoch is refused, on either connection.
  const before = await snapshot(db)
  assert.equal(await zombie.placed(old, GROUP, TOPIC, K1, 't1'), 'fenced')
  assert.equal(await zombie.moveHead(old, GROUP, move({ key: Buffer.from('k2'), token: 't2' })), 'fenced')
  assert.equal(await owner.saveSequences(old, GROUP, TOPIC, 3, [[K1, 9]]), 'fenced')
  assert.deepEqual(await snapshot(db), before)
  assert.equal(await owner.placed({ ...old, epoch: claim.epoch }, GROUP, TOPIC, K1, 't1'), 'ok')
})

test('postgres: an old-epoch write that waits for a claim in flight is refused once the claim commits', serverOnly, async (t) => {
  const db = await freshDatabase(t, 'postgres')
  await migrateLifeline(db)
  const other = await connectAgain(t, db)
  const zombie = new ProtocolStore(db)
  const old: Fence = { topic: TOPIC, partition: 3, epoch: (await zombie.claim(GROUP, TOPIC, 3, 'member-a', true)).epoch }

  // The new owner's claim has bumped the epoch and loaded the partition; its transaction is not committed yet.
  const held = holdingCommits(other)
  const claim = new ProtocolStore(held.executor).claim(GROUP, TOPIC, 3, 'member-b', true)
  await Promise.race([held.reached, claim])
  let answered = false
  const write = zombie.moveHead(old, GROUP, move()).finally(() => (answered = true))
  await waitFor(() => someoneWaitsForALock(db), 'the old-epoch write to wait for the claim', 60_000)
  assert.equal(answered, false)
  held.commit()
  assert.equal((await claim).epoch, old.epoch + 1)
  assert.equal(await write, 'fenced', 'the write re-checks the epoch once the claim committed')
  assert.equal(await zombie.keyRow(GROUP, TOPIC, K1), undefined, 'and wrote nothing')
})

/** Runs `transition` while an operator release of `key` holds its row lock, uncommitted; returns its answer once the release committed. */
async function racingARelease(db: SqlExecutor, other: SqlExecutor, key: Buffer, transition: () => Promise<unknown>): Promise<unknown> {
  const held = holdingCommits(other)
  const releasing = createParkedKeys(held.executor).release({ group: GROUP, topic: TOPIC, key, actor: 'alice', reason: 'operator' })
  await Promise.race([held.reached, releasing])
  let answered = false
  const answer = transition().finally(() => (answered = true))
  await waitFor(() => someoneWaitsForALock(db), 'the runtime write to wait for the release', 60_000)
  assert.equal(answered, false)
  held.commit()
  assert.equal((await releasing).status, 'released')
  return answer
}

async function raceSetup(t: TestContext): Promise<{ s: Setup; other: SqlExecutor }> {
  const db = await freshDatabase(t, 'postgres')
  await migrateLifeline(db)
  const other = await connectAgain(t, db)
  const ps = new ProtocolStore(db)
  return { s: { db, ps, fence: { topic: TOPIC, partition: 3, epoch: (await ps.claim(GROUP, TOPIC, 3, 'member-a', true)).epoch } }, other }
}

test('postgres: a head move that loses the race to an operator release answers conflict and changes nothing', serverOnly, async (t) => {
  const { s, other } = await raceSetup(t)
  await parked(s, K1, 't1')
  // A retry tier moves the head on: compare-and-set on (parked, t1), which the release took away.
  assert.equal(await racingARelease(s.db, other, K1, () => s.ps.moveHead(s.fence, GROUP, move({ expect: { status: 'parked', token: 't1' }, token: 't2' }))), 'conflict')
  const row = await s.ps.keyRow(GROUP, TOPIC, K1)
  assert.deepEqual([row?.status, row?.token], ['released', 't1'])
  assert.deepEqual(await eventNames(s.db, K1), ['parked', 'released'])
})

test(
  'postgres: a closeGap that loses the race to an operator release answers conflict',
  {
    ...serverOnly,
  },
  async (t) => {
    const { s, other } = await raceSetup(t)
    const g = Buffer.from('g')
    await gap(s, g, 'tg', 5, [7])
    // The missing sequence arrived: gap → released, but the operator released the gap first (recording its own skip).
    const closed = await racingARelease(s.db, other, g, () => s.ps.closeGap(s.fence, GROUP, { topic: TOPIC, partition: 3, key: g, token: 'tg' }))
    assert.deepEqual(await skipsOf(s.db, g), [[5, 6, 'operator']])
    assert.equal((await keyColumns(s.db, g))?.release_reason, 'operator', 'the operator release won')
    assert.deepEqual(await eventNames(s.db, g), ['gap-opened', 'released'], 'closeGap wrote no event')
    assert.equal(closed, 'conflict', 'closeGap changed nothing, so it must not answer that it closed the gap')
  },
)
