/**
 * The orders example (examples/orders) against the real broker and database: duplicates and reordering,
 * late transitions, and a consumer killed between its effects and its offset commit.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { appliedCounts, createOrdersConsumer, orderLifecycle, readOrders, sendOrderEvents, setupOrders, type OrderStatus, type PublishedOrderEvent } from '../../examples/orders/index.js'
import { seededRandom, shuffled } from '../../examples/lib/env.js'
import { listIgnoredEvents } from '../../src/effects/guards.js'
import { dlqTopicName } from '../../src/runtime/options.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { stateDatabase } from '../helpers/db.js'
import { admin, brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { fastRetry } from '../helpers/lifeline.js'

const LIFECYCLES: OrderStatus[][] = [
  ['CREATED', 'PAID', 'SHIPPED', 'DELIVERED'],
  ['CREATED', 'PAID', 'SHIPPED'],
  ['CREATED', 'CANCELLED'],
  ['CREATED', 'PAID', 'CANCELLED'],
  ['CREATED'],
]

/** `orders` orders cycling through the lifecycles; every event repeated 1..maxCopies times; all shuffled. */
function plan(prefix: string, orders: number, maxCopies: number, random: () => number) {
  const expected = new Map<string, OrderStatus[]>()
  const copies: PublishedOrderEvent[] = []
  for (let i = 0; i < orders; i++) {
    const orderId = `${prefix}-${i}`
    const statuses = LIFECYCLES[i % LIFECYCLES.length]!
    expected.set(orderId, statuses)
    for (const e of orderLifecycle(orderId, statuses, 100 * (i + 1))) {
      const times = 1 + Math.floor(random() * maxCopies)
      for (let k = 0; k < times; k++) copies.push(e)
    }
  }
  const distinct = new Set(copies.map((e) => e.eventId))
  return { expected, stream: shuffled(copies, random), distinct }
}

/** Every order in its lifecycle's last state, at version n-1, with the lifecycle applied once per event, in order. */
async function assertFinal(db: SqlExecutor, expected: Map<string, OrderStatus[]>, distinct: Set<string>): Promise<void> {
  const ids = [...expected.keys()]
  const rows = await readOrders(db, ids)
  for (const [id, statuses] of expected) {
    const row = rows.get(id)
    assert.ok(row, `order ${id} exists`)
    assert.equal(row.status, statuses.at(-1), `final state of ${id}`)
    assert.equal(row.version, statuses.length - 1, `version of ${id}`)
  }
  const counts = await appliedCounts(db, ids)
  assert.deepEqual([...counts.keys()].sort(), [...distinct].sort(), 'every event applied, and nothing else')
  for (const [eventId, n] of counts) assert.equal(n, 1, `event ${eventId} applied ${n} times`)
  const { rows: log } = await db.query<{ order_id: string; status: string }>('select order_id, status from example_order_transitions where order_id = any($1::text[]) order by id', [ids])
  for (const [id, statuses] of expected) assert.deepEqual(log.filter((r) => r.order_id === id).map((r) => r.status), statuses, `transitions of ${id} applied in order`)
}

function cleanupDlq(t: Parameters<typeof admin>[0], source: string): void {
  const a = admin(t)
  defer(t, () => a.deleteTopics([dlqTopicName('orders-example', source)]).catch(() => undefined))
}

describe('examples/orders', () => {
  test('every event delivered 1-5 times and out of order: exactly one effect each and the right final state', async (t) => {
    const db = await stateDatabase(t)
    await setupOrders(db)
    const source = await topic(t, { partitions: 3 })
    cleanupDlq(t, source)
    const seed = Date.now() % 1_000_000
    t.diagnostic(`seed ${seed}`)
    const { expected, stream, distinct } = plan(randomName('o'), 40, 5, seededRandom(seed))
    await sendOrderEvents(producer(t), source, stream)

    const { consumer, inbox } = createOrdersConsumer({ brokers: brokers(), db, topic: source, groupId: randomName('orders'), retry: fastRetry, commitIntervalMs: 100 })
    defer(t, () => consumer.close())
    let sequenceDuplicates = 0
    consumer.on('duplicate', () => sequenceDuplicates++)
    await consumer.start()
    // Every copy was seen: applied once, or skipped as a duplicate (by its sequence, or by the inbox).
    await waitFor(() => inbox.stats().applied + inbox.stats().duplicates + sequenceDuplicates >= stream.length, 'every record handled', 30_000)

    assert.equal(inbox.stats().applied + inbox.stats().duplicates + sequenceDuplicates, stream.length, 'each copy handled once')
    assert.equal(inbox.stats().applied, distinct.size)
    assert.equal(inbox.stats().ignored, 0, 'reordered by sequence, no transition was refused')
    assert.ok(stream.length > distinct.size * 2, `the stream carries duplicates (${stream.length} records, ${distinct.size} events)`)
    await assertFinal(db, expected, distinct)
    const { rows } = await db.query<{ n: number }>('select count(*)::int as n from lifeline_inbox where event_id = any($1::text[])', [[...distinct]])
    assert.equal(Number(rows[0]!.n), distinct.size, 'one inbox claim per event')
  })

  test('a late transition is not applied: it lands in lifeline_ignored_events with its reason', async (t) => {
    const db = await stateDatabase(t)
    await setupOrders(db)
    const source = await topic(t, { partitions: 2 })
    cleanupDlq(t, source)
    const groupId = randomName('orders')
    const id = randomName('o')
    const p = producer(t)
    await sendOrderEvents(p, source, [
      ...orderLifecycle(`${id}-shipped`, ['CREATED', 'PAID', 'SHIPPED'], 1200),
      ...orderLifecycle(`${id}-cancelled`, ['CREATED', 'CANCELLED'], 900),
    ])
    const { consumer, inbox } = createOrdersConsumer({ brokers: brokers(), db, topic: source, groupId, retry: fastRetry, commitIntervalMs: 100 })
    defer(t, () => consumer.close())
    await consumer.start()
    await waitFor(async () => (await readOrders(db, [`${id}-shipped`])).get(`${id}-shipped`)?.status === 'SHIPPED', 'the order to ship', 30_000)

    // Events from outside the orders' sequences (no seq): the payment provider re-sends PAID with a new
    // event id (and that callback twice), a carrier reports a cancelled order shipped, a PAID for an order
    // that never existed.
    const latePaid: PublishedOrderEvent = { eventId: `${id}/callback-1`, event: { orderId: `${id}-shipped`, type: 'PAID' } }
    await sendOrderEvents(p, source, [
      latePaid,
      latePaid,
      { eventId: `${id}/carrier-1`, event: { orderId: `${id}-cancelled`, type: 'SHIPPED' } },
      { eventId: `${id}/callback-2`, event: { orderId: `${id}-unknown`, type: 'PAID' } },
    ])
    await waitFor(() => inbox.stats().ignored === 3 && inbox.stats().duplicates === 1, 'the late events to be handled', 30_000)

    const ignored = await listIgnoredEvents(db, { consumer: groupId })
    const byEvent = new Map(ignored.map((e) => [e.eventId, e]))
    assert.equal(ignored.length, 3, 'the duplicate callback is skipped by the inbox, not recorded twice')
    assert.equal(byEvent.get(`${id}/callback-1`)?.reason, 'transition SHIPPED → PAID not allowed')
    assert.deepEqual(byEvent.get(`${id}/callback-1`)?.detail, { from: 'SHIPPED', to: 'PAID' })
    assert.equal(byEvent.get(`${id}/callback-1`)?.entity, 'order')
    assert.equal(byEvent.get(`${id}/callback-1`)?.entityId, `${id}-shipped`)
    assert.equal(byEvent.get(`${id}/callback-1`)?.topic, source)
    assert.equal(byEvent.get(`${id}/carrier-1`)?.reason, 'transition CANCELLED → SHIPPED not allowed')
    assert.equal(byEvent.get(`${id}/callback-2`)?.reason, 'not found (PAID cannot create it)')

    const rows = await readOrders(db, [`${id}-shipped`, `${id}-cancelled`, `${id}-unknown`])
    assert.deepEqual(
      [...rows.values()].map((r) => [r.orderId, r.status, r.version]),
      [[`${id}-cancelled`, 'CANCELLED', 1], [`${id}-shipped`, 'SHIPPED', 2]],
      'the late events changed nothing',
    )
    const counts = await appliedCounts(db, [`${id}-shipped`, `${id}-cancelled`, `${id}-unknown`])
    assert.equal(counts.size, 5, 'only the five in-sequence events have effects')
  })

  test(
    'a consumer killed (SIGKILL) between its effects and its offset commit: the events come back and are applied once',
    { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL: the killed process and the test share the database (PGlite is single-process)' },
    async (t) => {
      const db = await stateDatabase(t)
      await setupOrders(db)
      const { rows } = await db.query<{ db: string }>('select current_database() as db')
      const url = new URL(process.env.DATABASE_URL!)
      url.pathname = `/${rows[0]!.db}`
      const source = await topic(t, { partitions: 3 })
      cleanupDlq(t, source)
      const groupId = randomName('orders-crash')
      const seed = Date.now() % 1_000_000
      t.diagnostic(`seed ${seed}`)
      const { expected, stream, distinct } = plan(randomName('o'), 30, 2, seededRandom(seed))
      await sendOrderEvents(producer(t), source, stream)

      const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/examples-orders-consumer.ts', import.meta.url).pathname], {
        env: { ...process.env, DATABASE_URL: url.href, TOPIC: source, GROUP: groupId, COMMIT_INTERVAL_MS: '3600000' },
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      defer(t, () => child.kill('SIGKILL'))
      let output = ''
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
      const effects = async () => Number((await db.query<{ n: number }>('select count(*)::int as n from example_order_transitions')).rows[0]!.n)
      await waitFor(async () => (await effects()) === distinct.size, 'the child to apply every event', 30_000)
      child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
      assert.ok(output.includes('STARTED'), 'the child ran')
      assert.ok(!output.includes('COMMIT'), `the child committed no offset before it was killed: ${output}`)

      // The restarted consumer gets every record again (nothing was committed): the inbox skips them all.
      const { consumer, inbox } = createOrdersConsumer({ brokers: brokers(), db, topic: source, groupId, retry: fastRetry, commitIntervalMs: 100, sessionTimeoutMs: 6000 })
      defer(t, () => consumer.close())
      let sequenceDuplicates = 0
      consumer.on('duplicate', () => sequenceDuplicates++)
      await consumer.start()
      await waitFor(() => inbox.stats().duplicates + sequenceDuplicates >= stream.length, 'every record to be redelivered', 40_000)
      // At least once each: a rebalance while the killed member's session expires can deliver a record a
      // second time (CI under load counted 114 for 113); what must hold is that none applies again.
      assert.ok(inbox.stats().duplicates + sequenceDuplicates >= stream.length)
      assert.equal(inbox.stats().applied, 0, 'nothing applied a second time')
      // Each event comes back and is skipped: by the inbox, or already by its sequence (records replayed from
      // behind a gap save their sequence as they run, so a restart knows them without a commit).
      const redeliveredTwice = inbox.stats().duplicates + sequenceDuplicates - stream.length
      assert.ok(inbox.stats().duplicates <= distinct.size + redeliveredTwice, 'each event skipped at most once by the inbox (per delivery)')
      assert.equal(await effects(), distinct.size)
      await assertFinal(db, expected, distinct)
    },
  )
})
