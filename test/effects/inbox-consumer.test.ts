import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createInbox } from '../../src/effects/inbox.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { stateDatabase } from '../helpers/db.js'
import { consumer as rawConsumer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'

test('inbox on a real consumer: events re-produced and redelivered apply once; stored positions win over an older group commit', async (t) => {
  const source = await topic(t, { partitions: 2 })
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  await db.query('create table effects (id text primary key, n int not null)')
  const groupId = randomName('inbox')
  const seen: number[] = []
  const inbox = createInbox<{ id: string; n: number }>({
    db,
    consumer: groupId,
    storeOffsets: true,
    handler: async (m, { tx }) => void (await tx.query('insert into effects (id, n) values ($1, $2)', [m.value.id, m.value.n])),
  })
  const options = { groupId, topics: [source], ordering: 'partition' as const, startOffsets: inbox.startOffsets, handler: async (m: Parameters<typeof inbox.handler>[0]) => { seen.push(m.offset); await inbox.handler(m) } }
  const p = producer(t)
  // 40 events, each produced 1 to 3 times (a producer retrying), interleaved.
  const records = []
  for (let i = 0; i < 40; i++) for (let copy = 0; copy <= i % 3; copy++) records.push({ topic: source, key: `k${i % 5}`, value: JSON.stringify({ id: `e${i}`, n: i }), headers: [{ key: 'event-id', value: Buffer.from(`e${i}`) }] })
  await p.send(records)
  const first = await lifeline(t, options)
  await waitFor(() => seen.length === records.length, 'every copy handled')
  await first.close()
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from effects')
  assert.equal(rows[0]!.n, 40, 'one effect per event')
  assert.equal(inbox.stats().duplicates, records.length - 40)

  // The group's committed offsets go back to 0 (as after a crash before any commit): the stored positions win.
  const raw = rawConsumer(t, { groupId })
  raw.subscribe([source])
  await waitFor(async () => (await raw.poll(10, 100), raw.assignment().length === 2), 'the raw member to get both partitions')
  await raw.commit([{ topic: source, partition: 0, offset: 0 }, { topic: source, partition: 1, offset: 0 }])
  await raw.close()
  seen.length = 0
  const second = await lifeline(t, options)
  await p.send([{ topic: source, key: 'k0', value: JSON.stringify({ id: 'e40', n: 40 }), headers: [{ key: 'event-id', value: Buffer.from('e40') }] }])
  await waitFor(() => seen.length >= 1, 'the new event')
  await second.close()
  assert.equal(seen.length, 1, `nothing before the stored positions was fetched again (saw offsets ${seen.join(', ')})`)
  const after = await db.query<{ n: number }>('select count(*)::int as n from effects')
  assert.equal(after.rows[0]!.n, 41)
})

test('startOffsets needs partition ordering (a stored position is only safe when every lower offset is finished)', async () => {
  const { createConsumer } = await import('../../src/runtime/consumer.js')
  assert.throws(() => createConsumer({ brokers: ['x:1'], groupId: 'g', service: 's', topics: ['t'], handler: () => undefined, startOffsets: async () => [] }), { code: 'LL_OPTIONS_INVALID', message: /ordering 'partition'/ })
})
