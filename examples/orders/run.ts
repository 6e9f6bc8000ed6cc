/**
 * Runs the orders example end to end against a real broker and database:
 *
 *   KAFKA_BOOTSTRAP=127.0.0.1:9092 [DATABASE_URL=postgres://...] node --import tsx examples/orders/run.ts [orders] [seed]
 *
 * Without DATABASE_URL the embedded PGlite database in `.lifeline/db` (or LIFELINE_DATA_DIR) is used.
 * It publishes the events of `orders` orders (default 12), every event 1-3 times, shuffled; starts the
 * orders consumer; waits until each order reached its final state; then re-sends a late PAID for a shipped
 * order (a payment callback replayed with a new event id) and shows it ignored with its reason.
 */
import { listIgnoredEvents } from '../../src/effects/guards.js'
import { createProducer } from '../../src/kafka/index.js'
import { createLogger } from '../../src/logger.js'
import { databaseFromEnv, describeDatabase } from '../../src/store/index.js'
import { brokersFromEnv, ensureTopic, seededRandom, shuffled, waitUntil } from '../lib/env.js'
import { appliedCounts, createOrdersConsumer, orderLifecycle, readOrders, sendOrderEvents, setupOrders, type OrderStatus, type PublishedOrderEvent } from './index.js'

const TOPIC = 'lifeline-examples.orders'
const GROUP = 'examples-orders'
const LIFECYCLES: OrderStatus[][] = [
  ['CREATED', 'PAID', 'SHIPPED', 'DELIVERED'],
  ['CREATED', 'PAID', 'SHIPPED'],
  ['CREATED', 'CANCELLED'],
  ['CREATED', 'PAID', 'CANCELLED'],
]

const count = Number(process.argv[2] ?? 12)
const seed = Number(process.argv[3] ?? Date.now() % 100_000)
const random = seededRandom(seed)
const brokers = brokersFromEnv()
const db = await databaseFromEnv()
console.log(`database: ${await describeDatabase(db)}; kafka: ${brokers.join(',')}; seed ${seed}`)
await setupOrders(db)
await ensureTopic(brokers, TOPIC, 3)

// Order ids are unique per run, so the example can run again against the same topic and database.
const run = Date.now().toString(36)
const expected = new Map<string, OrderStatus[]>()
const published: PublishedOrderEvent[] = []
for (let i = 0; i < count; i++) {
  const orderId = `order-${run}-${i}`
  const statuses = LIFECYCLES[i % LIFECYCLES.length]!
  expected.set(orderId, statuses)
  for (const e of orderLifecycle(orderId, statuses, 1000 + 250 * (i % 8))) {
    const times = 1 + Math.floor(random() * 3)
    for (let k = 0; k < times; k++) published.push(e)
  }
}
const stream = shuffled(published, random)
const distinct = new Set(published.map((e) => e.eventId)).size
const ids = [...expected.keys()]

const producer = createProducer({ brokers })
await sendOrderEvents(producer, TOPIC, stream)
console.log(`published ${stream.length} records for ${distinct} events of ${count} orders (duplicated and shuffled), e.g. ${stream.slice(0, 4).map((e) => `${e.event.orderId.split('-').at(-1)}:${e.event.type}#${e.event.seq}`).join(' ')} ...`)

const orders = createOrdersConsumer({ brokers, db, topic: TOPIC, groupId: GROUP, logger: createLogger({ name: 'orders-example', level: process.env.LIFELINE_LOG_LEVEL ?? 'warn' }) })
let sequenceDuplicates = 0
orders.consumer.on('duplicate', () => sequenceDuplicates++)
await orders.consumer.start()
const finalOf = (statuses: OrderStatus[]) => statuses.at(-1)!
await waitUntil(async () => {
  const rows = await readOrders(db, ids)
  return ids.every((id) => rows.get(id)?.status === finalOf(expected.get(id)!))
}, 'every order to reach its final state')

const rows = await readOrders(db, ids)
const applied = await appliedCounts(db, ids)
console.log('\norder                status      version  amount')
for (const id of ids) {
  const r = rows.get(id)!
  console.log(`${id.padEnd(20)} ${r.status.padEnd(11)} ${String(r.version).padStart(7)}  ${String(r.amount).padStart(6)}   (${expected.get(id)!.join(' → ')})`)
}
const stats = orders.inbox.stats()
console.log(`\napplied ${stats.applied} events (effect log: ${[...applied.values()].reduce((a, b) => a + b, 0)} rows, max ${Math.max(...applied.values())} per event);` +
  ` duplicates skipped: ${sequenceDuplicates} by sequence, ${stats.duplicates} by the inbox`)

// A late PAID for a shipped order: not part of the order's sequence, so the guard decides.
const shipped = ids.find((id) => rows.get(id)!.status === 'SHIPPED') ?? ids.find((id) => rows.get(id)!.status === 'DELIVERED')!
await sendOrderEvents(producer, TOPIC, [{ eventId: `${shipped}/payment-callback-replay`, event: { orderId: shipped, type: 'PAID' } }])
console.log(`\nsent a late PAID for ${shipped} (now ${rows.get(shipped)!.status})`)
await waitUntil(async () => (await listIgnoredEvents(db, { consumer: GROUP, entity: 'order', entityId: shipped })).length > 0, 'the late event to be recorded')
for (const e of await listIgnoredEvents(db, { consumer: GROUP, entity: 'order', entityId: shipped })) {
  console.log(`ignored ${e.eventId} (${e.topic}[${e.partition}]@${e.offset}): ${e.reason}`)
}
console.log(`${shipped} is still ${(await readOrders(db, [shipped])).get(shipped)!.status}`)

await orders.consumer.close()
await producer.close()
await db.close()
