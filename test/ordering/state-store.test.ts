/**
 * Conformance of the operators' API over the ordering state (list / show / release of parked keys,
 * src/ordering/state-store.ts) on every database kind: embedded PGlite and (with DATABASE_URL) a PostgreSQL
 * server. The state is written the way the runtime writes it: through ProtocolStore, after claiming the
 * partition (tests of those writes: protocol-store.test.ts).
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { isLifelineError, type ErrorCode } from '../../src/errors.js'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { ProtocolStore, type Fence, type HeadMove, type StoredRecord } from '../../src/ordering/protocol-store.js'
import { createParkedKeys, type ParkedKeys } from '../../src/ordering/state-store.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase, type DatabaseKind } from '../helpers/db.js'

const GROUP = 'billing'
const TOPIC = 'orders'
const RETRY = 'billing.orders.retry.1'
const K1 = Buffer.from('k1')
const BINARY_KEY = Buffer.from([0xff, 0x00, 0x01])
const HOSTILE = "'; drop table lifeline_parked_keys; --"

/** The runtime's writer of one source partition (claimed) and the operators' API, on one fresh database. */
interface Setup {
  db: SqlExecutor
  ps: ProtocolStore
  keys: ParkedKeys
  /** Park a key, store records behind it, open a gap: as the owner of `partition` of `topic` in `group`. */
  writer(group?: string, topic?: string, partition?: number): Promise<Writer>
}

interface Writer {
  fence: Fence
  park(overrides?: Partial<HeadMove>): Promise<void>
  store(overrides?: Partial<StoredRecord>, openGap?: { from: number; token: string }): Promise<void>
}

async function setup(t: TestContext, kind: DatabaseKind): Promise<Setup> {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  const ps = new ProtocolStore(db)
  const writer = async (group = GROUP, topic = TOPIC, partition = 3): Promise<Writer> => {
    const fence: Fence = { topic, partition, epoch: (await ps.claim(group, topic, partition, 'member-a', true)).epoch }
    return {
      fence,
      async park(overrides = {}) {
        const key = overrides.key ?? K1
        const move: HeadMove = {
          topic, partition, key, expect: { status: 'none' }, token: 't1', headOffset: 100, location: 'retry:1', errorCode: 'E_TIMEOUT', errorMessage: 'upstream timed out',
          copy: { topic: RETRY, partition: 0, key, value: Buffer.from('v'), headers: [], timestamp: 1_700_000_000_000 },
          ...overrides,
        }
        assert.equal(await ps.moveHead(fence, group, move), 'ok')
      },
      async store(overrides = {}, openGap) {
        const r: StoredRecord = { topic, partition, key: K1, offset: 101, value: Buffer.from('v'), headers: [], timestamp: 1_700_000_000_000, ...overrides }
        assert.equal(await ps.store(fence, group, r, openGap), 'stored')
      },
    }
  }
  return { db, ps, keys: createParkedKeys(db), writer }
}

function expectCode(code: ErrorCode, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(isLifelineError(err, code), `expected ${code}, got ${String(err)}`)
    if (message) assert.match((err as Error).message, message)
    return true
  }
}

/** The key's events, oldest first, straight from the table. */
async function eventsOf(db: SqlExecutor, key: Buffer, group = GROUP, topic = TOPIC): Promise<Array<{ event: string; detail: unknown; actor: string | null }>> {
  const { rows } = await db.query<{ event: string; detail: unknown; actor: string | null }>('select event, detail, actor from lifeline_key_events where group_id = $1 and topic = $2 and key = $3 order by id', [group, topic, key])
  return rows
}

async function lastSeq(db: SqlExecutor, key: Buffer): Promise<number | undefined> {
  const { rows } = await db.query('select last_seq from lifeline_key_sequences where group_id = $1 and topic = $2 and key = $3', [GROUP, TOPIC, key])
  return rows[0] === undefined ? undefined : Number(rows[0].last_seq)
}

async function skipsOf(db: SqlExecutor, key: Buffer): Promise<Array<[number, number, string]>> {
  const { rows } = await db.query('select from_seq, to_seq, policy from lifeline_sequence_skips where group_id = $1 and topic = $2 and key = $3 order by from_seq', [GROUP, TOPIC, key])
  return rows.map((r) => [Number(r.from_seq), Number(r.to_seq), r.policy as string])
}

const keysOf = (rows: Array<{ key: Buffer }>): string[] => rows.map((r) => r.key.toString()).sort()

for (const kind of databaseKinds()) {
  test(`${kind}: list() shows a parked key with its head, its error and what waits behind it`, async (t) => {
    const s = await setup(t, kind)
    const w = await s.writer()
    await w.park({ errorMessage: 'x'.repeat(5000) })
    await w.store({ offset: 101 })
    const [k] = await s.keys.list()
    assert.ok(k)
    assert.equal(k.group, GROUP)
    assert.equal(k.topic, TOPIC)
    assert.equal(k.partition, 3)
    assert.ok(k.key.equals(K1))
    assert.equal(k.keyText, 'k1')
    assert.equal(k.status, 'parked')
    assert.equal(k.headOffset, 100)
    assert.equal(k.headToken, 't1')
    assert.equal(k.headLocation, 'retry:1')
    assert.equal(k.headState, 'pending', 'its copy is not acknowledged yet')
    assert.equal(k.headTopic, RETRY)
    assert.equal(k.headErrorCode, 'E_TIMEOUT')
    assert.equal(k.headErrorMessage, 'x'.repeat(2000))
    assert.equal(k.gapFrom, null)
    assert.equal(k.gapSince, null)
    assert.ok(k.parkedAt instanceof Date && k.updatedAt instanceof Date)
    assert.deepEqual([k.releaseReason, k.releasedBy, k.releasedAt], [null, null, null])
    assert.equal(k.parkedRecords, 1)

    assert.equal(await s.ps.placed(w.fence, GROUP, TOPIC, K1, 't1'), 'ok')
    assert.equal((await s.keys.list())[0]!.headState, 'placed')
  })

  test(`${kind}: list() filters by group, topic, status (parked, released, gap) and limit`, async (t) => {
    const s = await setup(t, kind)
    const w = await s.writer()
    await w.park({ key: Buffer.from('a'), token: 'ta' })
    await w.park({ key: Buffer.from('b'), token: 'tb' })
    await w.store({ key: Buffer.from('g'), offset: 300, seq: 4 }, { from: 2, token: 'tg' })
    await (await s.writer(GROUP, 'payments')).park({ topic: 'payments', key: Buffer.from('c'), token: 'tc' })
    await (await s.writer('shipping')).park({ key: Buffer.from('d'), token: 'td' })
    await s.keys.release({ group: GROUP, topic: TOPIC, key: 'b', actor: 'alice', reason: 'operator' })
    await w.store({ key: Buffer.from('a'), offset: 500 })

    assert.deepEqual(keysOf(await s.keys.list()), ['a', 'b', 'c', 'd', 'g'])
    assert.deepEqual(keysOf(await s.keys.list({ group: GROUP })), ['a', 'b', 'c', 'g'])
    assert.deepEqual(keysOf(await s.keys.list({ topic: 'payments' })), ['c'])
    assert.deepEqual(keysOf(await s.keys.list({ group: GROUP, topic: TOPIC })), ['a', 'b', 'g'])
    assert.deepEqual(keysOf(await s.keys.list({ status: 'released' })), ['b'])
    assert.deepEqual(keysOf(await s.keys.list({ status: 'parked' })), ['a', 'c', 'd'])
    assert.deepEqual(keysOf(await s.keys.list({ status: 'gap' })), ['g'])
    assert.deepEqual(keysOf(await s.keys.list({ group: 'shipping', status: 'released' })), [])
    assert.deepEqual(await s.keys.list({ group: 'nobody' }), [])
    assert.equal((await s.keys.list({ limit: 2 })).length, 2)
    assert.equal((await s.keys.list({ limit: 1 })).length, 1)
    assert.equal((await s.keys.list({ limit: 10_000 })).length, 5)
    assert.equal((await s.keys.list({ status: 'parked', group: GROUP, topic: TOPIC }))[0]!.parkedRecords, 1)
    const b = (await s.keys.list({ status: 'released' }))[0]!
    assert.deepEqual([b.releaseReason, b.releasedBy], ['operator', 'alice'])
    const g = (await s.keys.list({ status: 'gap' }))[0]!
    assert.deepEqual([g.headOffset, g.headToken, g.headLocation, g.headState, g.gapFrom, g.parkedRecords], [-1, 'tg', 'gap', 'placed', 2, 1])
    assert.ok(g.gapSince instanceof Date)

    for (const limit of [0, 10_001, 1.5, -1, Number.NaN]) await assert.rejects(s.keys.list({ limit }), expectCode('LL_ARGUMENT_INVALID'), `limit ${limit}`)
    for (const status of ['PARKED', 'drained', ''] as never[]) await assert.rejects(s.keys.list({ status }), expectCode('LL_ARGUMENT_INVALID', /parked, released, gap/), `status ${JSON.stringify(status)}`)
  })

  test(`${kind}: show() returns the key, its records in replay order and its events, newest first`, async (t) => {
    const s = await setup(t, kind)
    assert.equal(await s.keys.show(GROUP, TOPIC, 'nope'), undefined)
    assert.equal(await s.keys.show(GROUP, TOPIC, BINARY_KEY), undefined)
    const w = await s.writer()
    await w.park()
    const headers: KafkaHeader[] = [{ key: 'nothing', value: null }, { key: 'empty', value: Buffer.alloc(0) }, { key: 'bin', value: Buffer.from([0xff, 0x00]) }]
    // Replay order: unsequenced records first, by arrival; then by sequence (they may arrive out of order).
    await w.store({ offset: 103, seq: 9 })
    await w.store({ offset: 101, headers, value: null })
    await w.store({ offset: 102, seq: 8 })
    await w.store({ offset: 104 })
    assert.equal(await s.ps.moveHead(w.fence, GROUP, { topic: TOPIC, partition: 3, key: K1, expect: { status: 'parked', token: 't1' }, token: 't2', headOffset: 105, location: 'dlq', errorCode: 'E_FATAL', errorMessage: 'boom', copy: { topic: 'billing.orders.dlq', partition: 0, key: K1, value: null, headers: [] } }), 'ok')
    await s.keys.release({ group: GROUP, topic: TOPIC, key: 'k1', actor: 'alice', reason: 'operator' })

    const shown = await s.keys.show(GROUP, TOPIC, 'k1')
    assert.ok(shown)
    assert.ok(shown.key.key.equals(K1))
    assert.equal(shown.key.status, 'released')
    assert.equal(shown.key.headTopic, 'billing.orders.dlq')
    assert.equal(shown.key.parkedRecords, 4)
    assert.deepEqual(shown.records.map((r) => [r.offset, r.seq]), [[101, null], [104, null], [102, 8], [103, 9]])
    assert.deepEqual(shown.records[0]!.headers, headers)
    assert.equal(shown.records[0]!.value, null)
    for (const r of shown.records) assert.ok(r.key.equals(K1) && r.topic === TOPIC && r.partition === 3 && r.parkedAt instanceof Date)
    assert.deepEqual(shown.events.map((e) => [e.event, e.actor]), [['released', 'alice'], ['head-moved', null], ['parked', null]])
    assert.deepEqual(shown.events[0]!.detail, { reason: 'operator', headOffset: 105, headLocation: 'dlq' })
    const ids = shown.events.map((e) => BigInt(e.id))
    assert.ok(ids[0]! > ids[1]! && ids[1]! > ids[2]!, 'newest first')
    for (const e of shown.events) assert.ok(e.at instanceof Date)

    const limited = await s.keys.show(GROUP, TOPIC, K1, { limit: 1 })
    assert.deepEqual(limited!.records.map((r) => r.offset), [101])
    assert.equal(limited!.key.parkedRecords, 4, 'the count is not limited')
    await assert.rejects(s.keys.show(GROUP, TOPIC, K1, { limit: 0 }), expectCode('LL_ARGUMENT_INVALID'))
    assert.equal(await s.keys.show('shipping', TOPIC, 'k1'), undefined, 'another group')
    assert.equal(await s.keys.show(GROUP, 'payments', 'k1'), undefined, 'another topic')

    // A gap key: no head, the first missing sequence and since when it waits.
    await w.store({ key: Buffer.from('g'), offset: 300, seq: 7 }, { from: 5, token: 'tg' })
    const g = await s.keys.show(GROUP, TOPIC, 'g')
    assert.ok(g)
    assert.deepEqual([g.key.status, g.key.headOffset, g.key.headLocation, g.key.gapFrom], ['gap', -1, 'gap', 5])
    assert.ok(g.key.gapSince instanceof Date)
    assert.deepEqual(g.records.map((r) => r.seq), [7])
    assert.deepEqual(g.events.map((e) => [e.event, e.detail]), [['gap-opened', { missing: 5, offset: 300, seq: 7 }]])
  })

  test(`${kind}: release() validates, refuses keys that are not parked, and checks the head's offset and token`, async (t) => {
    const s = await setup(t, kind)
    const request = { group: GROUP, topic: TOPIC, key: 'k1', actor: 'alice', reason: 'redriven' }
    await assert.rejects(s.keys.release({ ...request, actor: '' }), expectCode('LL_ARGUMENT_INVALID'))
    await assert.rejects(s.keys.release({ ...request, reason: '' }), expectCode('LL_ARGUMENT_INVALID'))
    await assert.rejects(s.keys.release(request), expectCode('LL_KEY_NOT_PARKED', /^key "k1" of orders in group billing is not parked$/), 'unknown key')

    const w = await s.writer()
    await w.park({ headOffset: 100, token: 't1' })
    await w.store({ offset: 101 })
    await assert.rejects(s.keys.release({ ...request, actor: '' }), expectCode('LL_ARGUMENT_INVALID'), 'validation comes first')
    await assert.rejects(s.keys.release({ ...request, expectHeadOffset: 99 }), expectCode('LL_KEY_NOT_PARKED', /is not parked behind offset 99$/), 'head moved')
    await assert.rejects(s.keys.release({ ...request, expectToken: 't0' }), expectCode('LL_KEY_NOT_PARKED', /is not parked with head token t0$/), 'another head')
    await assert.rejects(s.keys.release({ ...request, expectHeadOffset: 100, expectToken: 't0' }), expectCode('LL_KEY_NOT_PARKED', /not parked behind offset 100 with head token t0$/), 'both must match')
    await assert.rejects(s.keys.release({ ...request, expectHeadOffset: 99, expectToken: 't1' }), expectCode('LL_KEY_NOT_PARKED'), 'both must match')
    const still = (await s.keys.list())[0]!
    assert.deepEqual([still.status, still.headState], ['parked', 'pending'], 'a mismatched head is not released')
    assert.deepEqual((await eventsOf(s.db, K1)).map((e) => e.event), ['parked'])

    const released = await s.keys.release({ ...request, expectHeadOffset: 100, expectToken: 't1' })
    assert.ok(released.key.equals(K1))
    assert.equal(released.keyText, 'k1')
    assert.equal(released.status, 'released')
    assert.equal(released.releaseReason, 'redriven')
    assert.equal(released.releasedBy, 'alice')
    assert.ok(released.releasedAt instanceof Date)
    assert.equal(released.headOffset, 100)
    assert.equal(released.headToken, 't1')
    assert.equal(released.headState, 'placed', 'a head still waiting for its copy is given up')
    assert.equal(released.partition, 3)
    assert.equal(released.parkedRecords, 1)
    assert.deepEqual((await eventsOf(s.db, K1)).at(-1), { event: 'released', detail: { reason: 'redriven', headOffset: 100, headLocation: 'retry:1' }, actor: 'alice' })
    // The owner finds it among the released keys of its partition (with the token to replay under), and no copy to produce.
    assert.deepEqual(await s.ps.releasedKeys(GROUP, TOPIC, [3]), [{ partition: 3, key: K1, token: 't1' }])
    assert.deepEqual((await s.ps.claim(GROUP, TOPIC, 3, 'member-b', true)).pending, [])
    assert.equal(await s.ps.isHead(GROUP, TOPIC, K1, 't1'), false, 'its retry is stale')

    await assert.rejects(s.keys.release(request), expectCode('LL_KEY_NOT_PARKED'), 'already released')
    await assert.rejects(s.keys.release({ ...request, expectHeadOffset: 100, expectToken: 't1' }), expectCode('LL_KEY_NOT_PARKED'), 'already released, same head')

    // Without expectations any head is released; a Buffer key works as well as a string.
    const w2 = await s.writer(GROUP, TOPIC, 0)
    await w2.park({ partition: 0, key: BINARY_KEY, headOffset: 7, token: 'tb' })
    const binary = await s.keys.release({ ...request, key: BINARY_KEY })
    assert.ok(binary.key.equals(BINARY_KEY))
    assert.equal(binary.keyText, null)
    assert.equal(binary.partition, 0)
    assert.equal(binary.parkedRecords, 0)
  })

  test(`${kind}: releasing a gap key records the skipped range and saves the last sequence before the first stored one`, async (t) => {
    const s = await setup(t, kind)
    const w = await s.writer()
    const g = Buffer.from('g')
    await w.store({ key: g, offset: 300, seq: 9 }, { from: 5, token: 'tg' })
    await w.store({ key: g, offset: 301, seq: 12 })
    await assert.rejects(s.keys.release({ group: GROUP, topic: TOPIC, key: g, actor: 'alice', reason: 'lost for good', expectToken: 'tx' }), expectCode('LL_KEY_NOT_PARKED', /with head token tx$/))
    assert.deepEqual(await skipsOf(s.db, g), [], 'a refused release skips nothing')

    const released = await s.keys.release({ group: GROUP, topic: TOPIC, key: g, actor: 'alice', reason: 'lost for good', expectHeadOffset: -1, expectToken: 'tg' })
    assert.deepEqual([released.status, released.headToken, released.releaseReason, released.releasedBy, released.parkedRecords], ['released', 'tg', 'lost for good', 'alice', 2])
    assert.deepEqual(await skipsOf(s.db, g), [[5, 8, 'operator']])
    assert.equal(await lastSeq(s.db, g), 8)
    for (const [seq, skipped] of [[4, false], [5, true], [8, true], [9, false]] as const) assert.equal(await s.ps.isSkipped(GROUP, TOPIC, g, seq), skipped, `seq ${seq}`)
    assert.deepEqual((await eventsOf(s.db, g)).at(-1), { event: 'released', detail: { reason: 'lost for good', headOffset: -1, headLocation: 'gap', missing: 5 }, actor: 'alice' })
    // The owner replays what waits under the gap's token.
    assert.deepEqual(await s.ps.releasedKeys(GROUP, TOPIC, [3]), [{ partition: 3, key: g, token: 'tg' }])

    // A last sequence saved beyond the skipped range is not moved back.
    const h = Buffer.from('h')
    await w.store({ key: h, offset: 400, seq: 4 }, { from: 2, token: 'th' })
    assert.equal(await s.ps.saveSequences(w.fence, GROUP, TOPIC, 3, [[h, 10]]), 'ok')
    await s.keys.release({ group: GROUP, topic: TOPIC, key: h, actor: 'alice', reason: 'operator' })
    assert.equal(await lastSeq(s.db, h), 10)
    assert.deepEqual(await skipsOf(s.db, h), [[2, 3, 'operator']])

    // A gap with nothing sequenced behind it: nothing to skip, no sequence to save.
    const e = Buffer.from('e')
    await w.store({ key: e, offset: 500 }, { from: 3, token: 'te' })
    assert.equal((await s.keys.release({ group: GROUP, topic: TOPIC, key: e, actor: 'alice', reason: 'operator' })).status, 'released')
    assert.deepEqual(await skipsOf(s.db, e), [])
    assert.equal(await lastSeq(s.db, e), undefined)
  })

  test(`${kind}: keyText is the UTF-8 text of a key, or null when the key is not UTF-8`, async (t) => {
    const s = await setup(t, kind)
    const w = await s.writer()
    const text = 'zoë ✓ 🚀'
    await w.park({ key: Buffer.from(text, 'utf8'), token: 't1' })
    await w.park({ key: BINARY_KEY, token: 't2' })
    await w.park({ key: Buffer.from([0xc3]), token: 't3' }) // a truncated 2-byte sequence
    const byHex = new Map((await s.keys.list()).map((r) => [r.key.toString('hex'), r.keyText]))
    assert.equal(byHex.get(Buffer.from(text, 'utf8').toString('hex')), text)
    assert.equal(byHex.get('ff0001'), null)
    assert.equal(byHex.get('c3'), null)
    const shown = await s.keys.show(GROUP, TOPIC, BINARY_KEY)
    assert.equal(shown!.key.keyText, null)
    assert.ok(shown!.key.key.equals(BINARY_KEY))
    assert.equal((await s.keys.show(GROUP, TOPIC, text))!.key.keyText, text, 'a string key is looked up as its UTF-8 bytes')
    assert.equal(await s.keys.show(GROUP, TOPIC, Buffer.from([0xff, 0x00])), undefined, 'a key prefix is another key')
  })

  test(`${kind}: an empty key parks, stores records, shows and releases like any other`, async (t) => {
    const s = await setup(t, kind)
    const w = await s.writer()
    const empty = Buffer.alloc(0)
    await w.park({ key: empty, token: 'te' })
    await w.store({ key: empty, offset: 101 })
    const shown = await s.keys.show(GROUP, TOPIC, '')
    assert.ok(shown)
    assert.equal(shown.key.key.length, 0)
    assert.equal(shown.key.keyText, '')
    assert.deepEqual(shown.records.map((r) => r.key.length), [0])
    assert.equal((await s.keys.release({ group: GROUP, topic: TOPIC, key: '', actor: 'alice', reason: 'operator', expectToken: 'te' })).status, 'released')
    assert.deepEqual((await s.ps.releasedKeys(GROUP, TOPIC, [3])).map((k) => [k.key.length, k.token]), [[0, 'te']])
  })

  test(`${kind}: hostile group, topic, key and text is stored and found back verbatim`, async (t) => {
    const s = await setup(t, kind)
    const key = Buffer.from(HOSTILE)
    const group = `g${HOSTILE}`
    const topic = `t${HOSTILE}`
    const w = await s.writer(group, topic)
    await w.park({ topic, key, token: HOSTILE, location: HOSTILE, errorCode: HOSTILE, errorMessage: HOSTILE, copy: { topic: HOSTILE, partition: 0, key, value: null, headers: [] } })
    await w.store({ topic, key, headers: [{ key: HOSTILE, value: Buffer.from(HOSTILE) }] })

    const [found] = await s.keys.list({ group, topic })
    assert.ok(found)
    assert.deepEqual([found.group, found.topic, found.keyText, found.headToken, found.headLocation, found.headTopic, found.headErrorCode, found.headErrorMessage], [group, topic, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE])
    const shown = await s.keys.show(group, topic, HOSTILE)
    assert.deepEqual(shown?.records[0]!.headers, [{ key: HOSTILE, value: Buffer.from(HOSTILE) }])
    await assert.rejects(s.keys.release({ group, topic, key: HOSTILE, actor: HOSTILE, reason: HOSTILE, expectToken: `${HOSTILE}x` }), expectCode('LL_KEY_NOT_PARKED'))
    const released = await s.keys.release({ group, topic, key: HOSTILE, actor: HOSTILE, reason: HOSTILE, expectToken: HOSTILE })
    assert.deepEqual([released.releasedBy, released.releaseReason], [HOSTILE, HOSTILE])

    const { rows } = await s.db.query("select count(*)::int as n from information_schema.tables where table_name in ('lifeline_parked_keys', 'lifeline_parked_records', 'lifeline_key_sequences', 'lifeline_key_events', 'lifeline_sequence_skips', 'lifeline_partition_epochs')")
    assert.equal(Number(rows[0]!.n), 6, 'every table still exists')
    assert.equal((await s.keys.list()).length, 1)
  })
}
