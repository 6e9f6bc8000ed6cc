/**
 * Rehearsal finding F9: a transient event's last attempt came due while the private PostgreSQL restarted;
 * the inbox's transaction could not start, the attempt counted, and the event was dead-lettered without its
 * handler running. An unreachable database is not the record's fault: the attempt must not count
 * (`retry.databaseOutage: 'wait'`, the default), and the record applies once the database is back.
 * `'attempt'` keeps the old counting, so the same scenario dead-letters (the control that shows the test
 * can fail).
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { startPostgres, type PostgresInstance } from '../../src/dev/postgres-launcher.js'
import { createInbox } from '../../src/effects/inbox.js'
import { openPostgres } from '../../src/store/postgres.js'
import { migrateLifeline } from '../../src/store/schema.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { defer } from '../helpers/cleanup.js'
import { producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'

/** A private PostgreSQL (stopped and started by the test), a migrated database on it with an effects table. */
async function privateDatabase(t: TestContext): Promise<{ pg: PostgresInstance; db: SqlExecutor }> {
  const pg = await startPostgres()
  defer(t, () => pg.close())
  const admin = await openPostgres({ url: pg.url('postgres'), poolSize: 1 })
  const name = randomName('outage').replaceAll('-', '_')
  await admin.query(`create database ${name}`)
  await admin.close()
  const db = await openPostgres({ url: pg.url(name), poolSize: 2 })
  defer(t, () => db.close())
  await migrateLifeline(db)
  await db.query('create table effects (id text primary key)')
  return { pg, db }
}

/**
 * One event whose first attempt fails (a transient error); the database goes down during its backoff, so
 * its second and last attempt meets the outage. Returns what happened once the database is back.
 */
async function lastAttemptMeetsOutage(t: TestContext, databaseOutage: 'wait' | 'attempt') {
  const { pg, db } = await privateDatabase(t)
  const source = await topic(t)
  const handled: number[] = []
  let firstFailed!: () => void
  const failedOnce = new Promise<void>((resolve) => (firstFailed = resolve))
  const groupId = randomName('outage')
  const inbox = createInbox<{ id: string }>({
    db,
    consumer: groupId,
    handler: async (m, { tx }) => {
      handled.push(m.attempt)
      if (m.attempt === 1) {
        firstFailed()
        throw new Error('transient: the first attempt fails')
      }
      await tx.query('insert into effects (id) values ($1)', [m.value.id])
    },
  })
  const deadLettered: unknown[] = []
  const retries: number[] = []
  const c = await lifeline<{ id: string }>(t, {
    groupId,
    topics: [source],
    retry: { maxAttempts: 2, backoff: { type: 'fixed', ms: 1500 }, databaseOutage },
    handler: inbox.handler,
  })
  c.on('dead-letter', (info) => deadLettered.push(info))
  c.on('retry', (info) => retries.push(info.attempt))
  await producer(t).send([{ topic: source, key: 'k', value: JSON.stringify({ id: 'e1' }), headers: [{ key: 'event-id', value: Buffer.from('e1') }] }])
  await failedOnce
  await pg.stop({ mode: 'immediate' }) // the second attempt comes due 1.5 s after the first failed, while it is down
  await new Promise((r) => setTimeout(r, 4000))
  await pg.start()
  return { db, handled, deadLettered, retries }
}

test('an attempt that meets a PostgreSQL restart does not count: the transient event applies once the database is back, not in the DLQ (F9)', { timeout: 180_000 }, async (t) => {
  const { db, handled, deadLettered, retries } = await lastAttemptMeetsOutage(t, 'wait')
  await waitFor(async () => (await db.query<{ n: number }>('select count(*)::int as n from effects')).rows[0]!.n === 1, 'the effect after the restart', 60_000)
  assert.deepEqual(handled, [1, 2], 'the handler ran twice: the failed first attempt and the second, after the restart')
  assert.equal(deadLettered.length, 0, 'nothing was dead-lettered')
  assert.ok(retries.filter((a) => a === 2).length >= 2, `the second attempt waited for the database at least once (retry events: ${retries.join(', ')})`)
})

test('a first attempt that meets the database down (started at once by the dispatcher) runs again when it is back, not from its old result', { timeout: 180_000 }, async (t) => {
  const { pg, db } = await privateDatabase(t)
  const source = await topic(t)
  const groupId = randomName('outage')
  const handled: number[] = []
  const inbox = createInbox<{ id: string }>({
    db,
    consumer: groupId,
    handler: async (m, { tx }) => {
      handled.push(m.attempt)
      await tx.query('insert into effects (id) values ($1)', [m.value.id])
    },
  })
  const retries: number[] = []
  const c = await lifeline<{ id: string }>(t, { groupId, topics: [source], retry: { maxAttempts: 1 }, handler: inbox.handler })
  c.on('retry', (info) => retries.push(info.attempt))
  await pg.stop({ mode: 'immediate' })
  await producer(t).send([{ topic: source, key: 'k', value: JSON.stringify({ id: 'e1' }), headers: [{ key: 'event-id', value: Buffer.from('e1') }] }])
  await waitFor(() => retries.length >= 2, 'the first attempt to wait for the database twice', 30_000)
  await pg.start()
  await waitFor(async () => (await db.query<{ n: number }>('select count(*)::int as n from effects')).rows[0]!.n === 1, 'the effect after the restart', 60_000)
  assert.deepEqual(handled, [1], 'the handler ran once, after the restart: every earlier try failed before it')
  assert.ok(retries.every((a) => a === 1), `every wait was for attempt 1 (retry events: ${retries.join(', ')})`)
})

test("retry.databaseOutage 'attempt': the same outage spends the last attempt and dead-letters the event (the old behaviour)", { timeout: 180_000 }, async (t) => {
  const { handled, deadLettered } = await lastAttemptMeetsOutage(t, 'attempt')
  await waitFor(() => deadLettered.length === 1, 'the dead-letter', 60_000)
  assert.deepEqual(handled, [1], 'the second attempt failed before the handler ran')
})
