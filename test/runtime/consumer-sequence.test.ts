import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import { stateDatabase } from '../helpers/db.js'
import { producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline, readAll } from '../helpers/lifeline.js'

type Rec = { key: string; seq: number | string }
const bySeq = { extract: (m: { value: unknown }) => (m.value as Rec).seq as number, firstSequence: 1 }

test('sequence: out-of-order records are applied in order, duplicates skipped and counted, and the last sequence survives a restart', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('seq')
  const registry = new Registry()
  const applied: string[] = []
  const handler = ({ value }: { value: Rec }) => void applied.push(`${value.key}${value.seq}`)
  const first = await lifeline<Rec>(t, { groupId, topics: [source], state: db, metrics: { registry }, sequence: bySeq, handler })
  const duplicates: number[] = []
  first.on('duplicate', (d) => duplicates.push(d.seq))
  const p = producer(t)
  const send = (rs: Array<[string, number]>) => p.send(rs.map(([key, seq]) => ({ topic: source, key, value: JSON.stringify({ key, seq }) })))
  await send([['A', 1], ['A', 3], ['B', 2], ['A', 2], ['A', 2], ['B', 1], ['A', 4], ['A', 1]])
  await waitFor(() => applied.length === 6, 'A1..A4 and B1, B2')
  assert.deepEqual(applied.filter((x) => x.startsWith('A')), ['A1', 'A2', 'A3', 'A4'])
  assert.deepEqual(applied.filter((x) => x.startsWith('B')), ['B1', 'B2'])
  await waitFor(() => duplicates.length === 2, 'the two duplicates')
  assert.deepEqual(duplicates.sort(), [1, 2])
  assert.match(await registry.getSingleMetricAsString('lifeline_sequence_duplicates_total'), / 2$/m)
  await first.close()
  const { rows } = await db.query<{ key: Buffer; last_seq: string }>('select key, last_seq from lifeline_key_sequences order by key')
  assert.deepEqual(rows.map((r) => [r.key.toString(), Number(r.last_seq)]), [['A', 4], ['B', 2]], 'last sequences saved before the offsets were committed')

  // A new member of the group (a restart) knows the last sequences: an old one is a duplicate, the next one applies.
  const second = await lifeline<Rec>(t, { groupId, topics: [source], state: db, sequence: bySeq, handler })
  const later: number[] = []
  second.on('duplicate', (d) => later.push(d.seq))
  await send([['A', 3], ['A', 5], ['B', 3]])
  await waitFor(() => applied.length === 8, 'A5 and B3')
  assert.deepEqual(applied.slice(6).sort(), ['A5', 'B3'])
  await waitFor(() => later.length === 1, 'A3 skipped')
})

test('sequence gap policies: skip applies the held records after the timeout; dead-letter dead-letters the first and parks the rest behind it; hold alerts and waits', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const run = async (policy: 'skip' | 'dead-letter' | 'hold') => {
    const applied: number[] = []
    const gaps: Array<{ policy: string; missing: readonly number[]; records: number }> = []
    const groupId = randomName(policy)
    const c = await lifeline<Rec>(t, { groupId, topics: [source], state: db, parking: { pollMs: 50 }, sequence: { ...bySeq, timeoutMs: 300, policy }, handler: ({ value, key }) => void (key?.toString() === policy && applied.push(value.seq as number)) })
    c.on('sequence-gap', (g) => g.key.toString() === policy && gaps.push({ policy: g.policy, missing: g.missing, records: g.records }))
    return { c, applied, gaps, groupId }
  }
  const skip = await run('skip')
  const dl = await run('dead-letter')
  const hold = await run('hold')
  const p = producer(t)
  for (const key of ['skip', 'dead-letter', 'hold']) await p.send([1, 3, 4].map((seq) => ({ topic: source, key, value: JSON.stringify({ key, seq }) })))

  await waitFor(() => skip.applied.length === 3, 'skip: 3 and 4 applied after the timeout')
  assert.deepEqual(skip.applied, [1, 3, 4])
  assert.deepEqual(skip.gaps, [{ policy: 'skip', missing: [2, 2], records: 2 }])

  // Every group sees every key; the dead-letter group dead-letters the first held record of all three, and
  // the rest of each run parks behind it, in order, for an operator to redrive or discard.
  const dlq = (await readAll(t, `svc.${source}.dlq`, 3)).filter((r) => r.key?.toString() === 'dead-letter')
  assert.deepEqual(dlq.map((r) => decodeFailureHeaders(r.headers)?.errorCode), ['LL_SEQUENCE_GAP'])
  assert.deepEqual(dlq.map((r) => JSON.parse(r.value!.toString()).seq), [3])
  assert.deepEqual(dl.applied, [1])
  const parked = (await createParkedKeys(db).list({ group: dl.groupId })).filter((k) => k.keyText === 'dead-letter')
  assert.equal(parked.length, 1, 'the dead-lettered key is parked behind its first dead letter')
  assert.equal(parked[0]!.headOffset, 4, "its seq 3 (offset 4)")
  await waitFor(async () => (await createParkedKeys(db).show(dl.groupId, source, 'dead-letter'))?.records.length === 1, 'seq 4 parked behind it')

  await waitFor(() => hold.gaps.length >= 2, 'hold: alerted again after another timeout')
  assert.ok(hold.gaps.every((g) => g.policy === 'hold'))
  assert.deepEqual(hold.applied, [1], 'hold applies nothing past the gap')
  assert.equal(hold.c.stats().reorderBuffered, 6, 'the hold group holds seq 3 and 4 of all three keys')
  // The missing record arrives: everything applies in order; a late arrival of a skipped sequence is a
  // straggler: not applied after its successors, not dropped either — dead-lettered (LL_SEQUENCE_LATE).
  await p.send([{ topic: source, key: 'hold', value: JSON.stringify({ key: 'hold', seq: 2 }) }, { topic: source, key: 'skip', value: JSON.stringify({ key: 'skip', seq: 2 }) }])
  await waitFor(() => hold.applied.length === 4, 'hold: the gap filled')
  assert.deepEqual(hold.applied, [1, 2, 3, 4])
  assert.deepEqual(skip.applied, [1, 3, 4], 'skip: the late record is not applied after its successors')
  // 3 gap dead letters of the dead-letter group, and 4 stragglers: keys skip and hold of the skip group and
  // of the dead-letter group, whose seq 2 each of them moved past (the hold group was still waiting for it).
  const all = await readAll(t, `svc.${source}.dlq`, 7)
  const late = all.filter((r) => decodeFailureHeaders(r.headers)?.errorCode === 'LL_SEQUENCE_LATE')
  for (const group of [skip.groupId, dl.groupId]) {
    const mine = late.filter((r) => decodeFailureHeaders(r.headers)?.group === group)
    assert.deepEqual(mine.map((r) => [r.key?.toString(), JSON.parse(r.value!.toString()).seq]).sort(), [['hold', 2], ['skip', 2]], group)
  }
  assert.equal(late.length, 4)
})

test('sequence: an extractor that throws or returns garbage dead-letters the record (LL_SEQUENCE_INVALID); records without a sequence just run', async (t) => {
  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const applied: unknown[] = []
  await lifeline<Rec>(t, {
    topics: [source],
    state: db,
    ordering: 'key',
    sequence: {
      extract: (m) => {
        const seq = (m.value as Rec).seq
        if (seq === 'boom') throw new Error('cannot read the sequence')
        return seq as number
      },
      firstSequence: 1,
    },
    handler: ({ value }) => void applied.push(value.seq),
  })
  const p = producer(t)
  await p.send([
    { topic: source, key: 'a', value: JSON.stringify({ key: 'a', seq: 'boom' }) },
    { topic: source, key: 'b', value: JSON.stringify({ key: 'b', seq: -4 }) },
    { topic: source, key: 'c', value: JSON.stringify({ key: 'c', seq: 1.5 }) },
    { topic: source, key: 'd', value: JSON.stringify({ key: 'd' }) },
    { topic: source, key: 'e', value: JSON.stringify({ key: 'e', seq: 1 }) },
  ])
  const dlq = await readAll(t, `svc.${source}.dlq`, 3)
  assert.deepEqual(dlq.map((r) => decodeFailureHeaders(r.headers)?.errorCode), ['LL_SEQUENCE_INVALID', 'LL_SEQUENCE_INVALID', 'LL_SEQUENCE_INVALID'])
  // Keys a, b and c run in parallel: their DLQ records may come in any order.
  const a = dlq.find((r) => r.key?.toString() === 'a')
  assert.match(decodeFailureHeaders(a!.headers)!.errorMessage!, /cannot read the sequence/)
  await waitFor(() => applied.length === 2, 'the record without a sequence and the valid one')
  assert.deepEqual(applied.sort(), [1, undefined])
})

test('options: retry tiers or sequences with key ordering and no state database are refused with a clear error', () => {
  const base = { brokers: ['127.0.0.1:1'], groupId: 'g', service: 's', topics: ['t'], handler: () => undefined }
  return import('../../src/runtime/consumer.js').then(({ createConsumer }) => {
    assert.throws(() => createConsumer({ ...base, retryTopics: { delaysMs: [1000] } }), { code: 'LL_OPTIONS_INVALID', message: /needs a state database/ })
    assert.throws(() => createConsumer({ ...base, sequence: { extract: () => 1 } }), { code: 'LL_OPTIONS_INVALID', message: /sequence needs a state database/ })
    assert.throws(() => createConsumer({ ...base, retryTopics: { delaysMs: [] } }), { code: 'LL_OPTIONS_INVALID', message: /retryTopics\.delaysMs/ })
    assert.throws(() => createConsumer({ ...base, topics: ['t', 's.t.retry.1'], ordering: 'none', retryTopics: { delaysMs: [1] } }), { code: 'LL_OPTIONS_INVALID', message: /already a source/ })
    // ordering 'none': independent retries need no state.
    assert.ok(createConsumer({ ...base, ordering: 'none', retryTopics: { delaysMs: [1000] } }))
  })
})

// Rehearsal finding F5 (rh-20261205T212906-960029): a member found its key in a gap whose missing sequence
// was already handled (the key's last sequence past it) or stored behind the key itself; under `hold` it
// waited for it forever and the key's later records were lost to the run. Both states, as a restarted
// member finds them in the database: the gap is closed as filled and what waits applies in order.
test('sequence: a gap whose missing sequence was already handled, or is stored behind the key, is closed and the held records apply in order (F5)', async (t) => {
  const db = await stateDatabase(t)
  const p = producer(t)
  for (const variant of ['handled', 'stored'] as const) {
    const source = await topic(t, { partitions: 1 })
    const groupId = randomName(`f5-${variant}`)
    const key = `k-${variant}`
    const applied: number[] = []
    const options = { groupId, topics: [source], state: db, parking: { pollMs: 50 }, sequence: { ...bySeq, timeoutMs: 60_000, policy: 'hold' as const }, handler: ({ value }: { value: Rec }) => void (value.key === key && applied.push(value.seq as number)) }
    const first = await lifeline<Rec>(t, options)
    await p.send([1, 3, 4].map((seq) => ({ topic: source, key, value: JSON.stringify({ key, seq }) })))
    await waitFor(() => first.stats().reorderBuffered === 2 && applied.length === 1, `${variant}: seq 1 applied, 3 and 4 stored behind the gap`)
    await first.close()
    assert.deepEqual(applied, [1])
    const k = Buffer.from(key)
    if (variant === 'handled') {
      // Seq 2 handled by a member whose transition of the key never reached the database.
      await db.query('update lifeline_key_sequences set last_seq = 2 where group_id = $1 and key = $2', [groupId, k])
    } else {
      // The missing sequence itself stored behind the key (its offset committed: it never comes again).
      await db.query(
        `insert into lifeline_parked_records (group_id, topic, partition, key, "offset", seq, value, headers, "timestamp")
         select group_id, topic, partition, key, 1000, 2, $3, headers, "timestamp" from lifeline_parked_records where group_id = $1 and key = $2 and seq = 3`,
        [groupId, k, Buffer.from(JSON.stringify({ key, seq: 2 }))],
      )
    }
    const second = await lifeline<Rec>(t, options)
    const expected = variant === 'handled' ? [1, 3, 4] : [1, 2, 3, 4]
    await waitFor(() => applied.length === expected.length, `${variant}: the held records applied after the restart, without waiting for the gap's timeout`)
    assert.deepEqual(applied, expected, variant)
    await waitFor(async () => (await db.query('select 1 from lifeline_parked_keys where group_id = $1 and key = $2', [groupId, k])).rows.length === 0, `${variant}: the key is free again`)
    await second.close()
  }
})
