/**
 * Issue 10's scenarios that need a process killed at the wrong moment (a worker process, SIGKILL, offsets
 * never committed before the kill): a redelivered head (scenario 2) and a redelivered retry-tier copy after
 * the head moved on (scenario 5) must never run as a second copy of their head.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { listRecords } from '../../src/dlq/records.js'
import { replayRecord } from '../../src/dlq/redrive/replay.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { openPostgres } from '../../src/store/postgres.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { databaseEnv } from '../helpers/protocol-workload.js'
import { startWorker, type Worker } from '../helpers/worker.js'

const server = process.env.DATABASE_URL ? false : 'needs DATABASE_URL (the test reads the workers\' database)'

async function setup(t: TestContext): Promise<{ source: string; env: Record<string, string>; db: SqlExecutor }> {
  const source = await topic(t, { partitions: 1 })
  const dbEnv = await databaseEnv(t, 'postgres')
  const db = await openPostgres({ url: dbEnv.DATABASE_URL!, poolSize: 2 })
  defer(t, () => db.close())
  // Offsets are never committed before the kill: everything the first worker did is redelivered.
  return { source, db, env: { TOPIC: source, GROUP: randomName('proto'), COMMIT_INTERVAL_MS: '3600000', ...dbEnv } }
}

const invocations = (w: Worker, id: string) => w.events.filter((e) => e.ev === 'invoke' && e.id === id)
const ev = (key: string, seq: number, more: Record<string, unknown> = {}) => ({ id: `${key}#${seq}`, key, seq, ...more })

test('scenario 2: a head delivered again on its topic after a crash never runs again; its DLQ copy, redriven, runs once before what waited', { skip: server, timeout: 180_000 }, async (t) => {
  const { source, env, db } = await setup(t)
  const a = await startWorker(t, { ...env, TIERS: '300' }, 'a')
  const p = producer(t)
  await p.send([ev('K', 1, { poison: true }), ev('K', 2), ev('K', 3)].map((v) => ({ topic: source, key: 'K', value: JSON.stringify(v) })))
  await waitFor(async () => (await createParkedKeys(db).list({ group: env.GROUP! })).some((k) => k.headLocation === 'dlq' && (k.headState ?? 'placed') === 'placed' && k.parkedRecords === 2), 'K parked behind K#1 in the DLQ, K#2 and K#3 stored')
  a.child.kill('SIGKILL')
  await a.exited
  // The poison's cause is fixed before the restart: a copy that runs now succeeds.
  await db.query('create table if not exists fixed (id text primary key)')
  await db.query("insert into fixed (id) values ('K#1') on conflict do nothing")
  const b = await startWorker(t, { ...env, TIERS: '300' }, 'b')
  // Another key's record behind the redelivered ones: once it ran, the redeliveries were handled.
  await p.send([{ topic: source, key: 'marker', value: JSON.stringify(ev('marker', 1)) }])
  await b.next((e) => e.ev === 'invoke' && e.id === 'marker#1', 60_000)
  const original = invocations(a, 'K#1')[0]!.offset
  // The operator redrives the DLQ copy to its origin: it runs as the head, then K#2 and K#3.
  const indexer = createDlqIndexer({ brokers: brokers(), db, topics: [`proto.${source}.dlq`], groupId: randomName('indexer') })
  defer(t, () => indexer.close())
  await indexer.start()
  let id: string | undefined
  await waitFor(async () => (id = (await listRecords(db, {}))[0]?.id) !== undefined, 'the dead letter indexed')
  await replayRecord({ db, producer: p, kafka: { brokers: brokers() }, parkedKeys: createParkedKeys(db) }, id!, { actor: 'operator' })
  await waitFor(async () => (await db.query<{ id: string }>("select id from effects where key = 'K' order by n")).rows.length === 3, 'K applied', 60_000)
  const { rows } = await db.query<{ id: string }>("select id from effects where key = 'K' order by n")
  assert.deepEqual(rows.map((r) => r.id), ['K#1', 'K#2', 'K#3'])
  // The head ran once on the new member, and from its redriven copy: the redelivered one (at its original
  // offset) never ran, its DLQ copy being the one runnable copy.
  assert.deepEqual(invocations(b, 'K#1').map((e) => e.offset !== original), [true], `the head ran once, from its redriven copy (original offset ${original})`)
  await waitFor(async () => (await createParkedKeys(db).list({ group: env.GROUP! })).length === 0, 'K released and forgotten')
  await b.close()
})

test('scenario 5: a retry-tier copy delivered again after its head moved to the next tier never runs; the head runs once per tier', { skip: server, timeout: 180_000 }, async (t) => {
  const { source, env, db } = await setup(t)
  // K#1 fails twice in place and in tier 1; tier 2 (10 s) lets it succeed.
  const a = await startWorker(t, { ...env, TIERS: '300,10000' }, 'a')
  const p = producer(t)
  await p.send([ev('K', 1, { fails: 3 }), ev('K', 2)].map((v) => ({ topic: source, key: 'K', value: JSON.stringify(v) })))
  await a.next((e) => e.ev === 'retry-tier' && e.tier === 2, 60_000)
  await waitFor(async () => (await createParkedKeys(db).list({ group: env.GROUP! })).some((k) => k.headLocation === 'retry:2' && (k.headState ?? 'placed') === 'placed'), 'the head placed in tier 2')
  a.child.kill('SIGKILL') // the tier-1 copy's offset was never committed
  await a.exited
  const b = await startWorker(t, { ...env, TIERS: '300,10000' }, 'b')
  await waitFor(async () => (await db.query<{ id: string }>("select id from effects where key = 'K'")).rows.length === 2, 'K#1 (from tier 2) and K#2 applied', 90_000)
  assert.deepEqual(invocations(b, 'K#1').map((e) => e.tier), [2], 'only the tier-2 copy ran on the new member: the redelivered tier-1 copy was stale')
  const { rows } = await db.query<{ id: string }>("select id from effects where key = 'K' order by n")
  assert.deepEqual(rows.map((r) => r.id), ['K#1', 'K#2'])
  await b.close()
})
