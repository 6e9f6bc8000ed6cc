/**
 * Example: an order state machine fed by Kafka, exactly once under redelivery and in order under
 * reordering (seed 000). Order events (`CREATED → PAID → SHIPPED → DELIVERED`, `→ CANCELLED`) are applied to
 * `example_orders` by a Lifeline consumer that combines three of its layers:
 *
 * 1. **Sequences** (`sequence` option): each order's events carry `seq` 1, 2, 3, ...; the runtime hands them
 *    to the handler in that order, holds an event that arrives ahead of a gap until the gap fills, and skips
 *    a sequence it already handled.
 * 2. **The inbox** (`createInbox`): the event id (header `event-id`) is claimed in the same transaction as
 *    the effect, so an event that comes back after a crash (handled, not yet committed) is skipped.
 * 3. **A state machine guard** (`defineStateMachine`): a transition not allowed from the current state (a
 *    late `PAID` after `SHIPPED`, e.g. a payment callback re-sent with a new event id) is not applied and
 *    is recorded with its reason in `lifeline_ignored_events`.
 *
 * @module
 * @example
 * const db = await databaseFromEnv()
 * await setupOrders(db)
 * const orders = createOrdersConsumer({ brokers: ['127.0.0.1:9092'], db, topic: 'orders' })
 * await orders.consumer.start()
 * await sendOrderEvents(producer, 'orders', orderLifecycle('order-1', ['CREATED', 'PAID'], 1200))
 */
import { fileURLToPath } from 'node:url'
import Type from 'typebox'
import { createInbox, type Inbox } from '../../src/effects/inbox.js'
import { defineStateMachine } from '../../src/effects/guards.js'
import type { KafkaProducer, ProduceAck, ProduceRecord } from '../../src/kafka/types.js'
import type { Logger } from '../../src/logger.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { createConsumer, type LifelineConsumer } from '../../src/runtime/consumer.js'
import type { RetryOptions } from '../../src/runtime/options.js'
import type { SqlExecutor, SqlQueryable } from '../../src/store/executor.js'
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { migrateLifeline } from '../../src/store/schema.js'

export const ORDER_STATUSES = ['CREATED', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED'] as const
export type OrderStatus = (typeof ORDER_STATUSES)[number]

/** An order event's value. Its event id travels in the `event-id` header. */
export interface OrderEvent {
  orderId: string
  type: OrderStatus
  /** Position in the order's own stream, from 1; absent on events from outside it (they are not reordered). */
  seq?: number
  /** The order's amount in cents: required on CREATED. */
  amount?: number
}

/** An event as a producer publishes it: its id and its value. */
export interface PublishedOrderEvent {
  eventId: string
  event: OrderEvent
}

/** What the consumer validates every value against (a mismatch is dead-lettered at once: bytes never change). */
export const OrderEventSchema = Type.Object({
  orderId: Type.String({ minLength: 1, maxLength: 200 }),
  type: Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s))),
  seq: Type.Optional(Type.Integer({ minimum: 1 })),
  amount: Type.Optional(Type.Integer({ minimum: 0 })),
})

/** The fixed transitions of seed 000. A state without an entry (DELIVERED, CANCELLED) is final. */
export const orderMachine = defineStateMachine<OrderStatus>({
  entity: 'order',
  table: 'example_orders',
  idColumn: 'order_id',
  stateColumn: 'status',
  versionColumn: 'version',
  initial: ['CREATED'],
  transitions: { CREATED: ['PAID', 'CANCELLED'], PAID: ['SHIPPED', 'CANCELLED'], SHIPPED: ['DELIVERED'] },
})

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))

/** Creates Lifeline's tables (inbox, ignored events, ...) and the example's own, under their own migrations table. Idempotent. */
export async function setupOrders(db: SqlExecutor): Promise<void> {
  await migrateLifeline(db)
  await migrate(db, await loadMigrations(MIGRATIONS_DIR), { table: 'example_orders_migrations' })
}

export interface OrdersConsumerOptions {
  brokers: string[]
  /** PostgreSQL (or PGlite for one process): the orders, the inbox and the consumer's ordering state. */
  db: SqlExecutor
  topic: string
  /** Consumer group, also the inbox's namespace (default `examples-orders`). */
  groupId?: string
  /** Reorder each order's events by `seq` (default true). Without it the guard alone decides, in arrival order. */
  reorder?: boolean
  /** How long a sequence gap may stay open before a warning is logged (the events are held meanwhile), ms (default 30000). */
  gapTimeoutMs?: number
  retry?: RetryOptions
  /** Offset commit interval, ms (default 1000). */
  commitIntervalMs?: number
  /** Kafka session timeout, ms (default 10000): how long a crashed member keeps its partitions. */
  sessionTimeoutMs?: number
  logger?: Logger
}

export interface OrdersConsumer {
  readonly consumer: LifelineConsumer
  readonly inbox: Inbox<OrderEvent>
}

/** Builds (does not start) the orders consumer. Call {@link setupOrders} on the database first. */
export function createOrdersConsumer(options: OrdersConsumerOptions): OrdersConsumer {
  const groupId = options.groupId ?? 'examples-orders'
  const inbox = createInbox<OrderEvent>({
    db: options.db,
    consumer: groupId,
    missingId: 'reject', // an event without an id cannot be deduplicated across producers: dead-letter it
    handler: async (m, ctx) => {
      const { orderId, type, amount } = m.value
      if (type === 'CREATED' && amount === undefined) throw new NonRetriableError(`CREATED event ${ctx.eventId} of order ${orderId} has no amount`, { code: 'ORDER_NO_AMOUNT' })
      const set: Record<string, unknown> = { last_event_id: ctx.eventId, ...(type === 'CREATED' ? { amount } : {}) }
      const result = await orderMachine.transition(ctx, orderId, type, set)
      // Not applied: the guard already recorded why (lifeline_ignored_events). The event stays claimed.
      if (!result.applied) return
      await ctx.tx.query('insert into example_order_transitions (order_id, event_id, status, version) values ($1, $2, $3, $4)', [orderId, ctx.eventId, type, result.version ?? 0])
    },
  })
  const consumer = createConsumer<OrderEvent>({
    brokers: options.brokers,
    groupId,
    service: 'orders-example',
    topics: [options.topic],
    schema: OrderEventSchema,
    ordering: 'key', // the key is the order id: one event per order at a time, orders in parallel
    state: options.db,
    ...(options.reorder === false
      ? {}
      : { sequence: { extract: (m) => (m.value as OrderEvent).seq ?? null, firstSequence: 1, timeoutMs: options.gapTimeoutMs ?? 30_000, policy: 'hold' as const } }),
    retry: options.retry ?? { maxAttempts: 4, backoff: { type: 'exponential', baseMs: 200, maxMs: 5000 } },
    ...(options.commitIntervalMs === undefined ? {} : { commitIntervalMs: options.commitIntervalMs }),
    ...(options.sessionTimeoutMs === undefined ? {} : { sessionTimeoutMs: options.sessionTimeoutMs }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    handler: inbox.handler,
  })
  return { consumer, inbox }
}

// ---- producing ---------------------------------------------------------------------------------------

/** The Kafka record of an event: keyed by order id (one partition per order), event id in the `event-id` header. */
export function orderEventRecord(topic: string, published: PublishedOrderEvent): ProduceRecord {
  return {
    topic,
    key: published.event.orderId,
    value: JSON.stringify(published.event),
    headers: [{ key: 'event-id', value: Buffer.from(published.eventId) }],
  }
}

/** Sends events in the given order (duplicates and all); resolves when every one is acknowledged. */
export function sendOrderEvents(producer: KafkaProducer, topic: string, events: readonly PublishedOrderEvent[]): Promise<ProduceAck[]> {
  return producer.send(events.map((e) => orderEventRecord(topic, e)))
}

/** An order's events for these statuses, in order: `seq` 1..n, event ids `<orderId>/<seq>`, the amount on CREATED. */
export function orderLifecycle(orderId: string, statuses: readonly OrderStatus[], amount: number): PublishedOrderEvent[] {
  return statuses.map((type, i) => ({
    eventId: `${orderId}/${i + 1}`,
    event: { orderId, type, seq: i + 1, ...(type === 'CREATED' ? { amount } : {}) },
  }))
}

// ---- reading -----------------------------------------------------------------------------------------

export interface OrderRow {
  orderId: string
  status: OrderStatus
  version: number
  amount: number
  lastEventId: string
}

/** The orders with these ids (all when omitted), by id. */
export async function readOrders(db: SqlQueryable, ids?: readonly string[]): Promise<Map<string, OrderRow>> {
  const { rows } = await db.query<{ order_id: string; status: OrderStatus; version: number; amount: number; last_event_id: string }>(
    'select order_id, status, version, amount, last_event_id from example_orders where $1::text[] is null or order_id = any($1::text[]) order by order_id',
    [ids ?? null],
  )
  return new Map(rows.map((r) => [r.order_id, { orderId: r.order_id, status: r.status, version: Number(r.version), amount: Number(r.amount), lastEventId: r.last_event_id }]))
}

/** How many times each event id was applied (rows in the effect log), for these orders (all when omitted). */
export async function appliedCounts(db: SqlQueryable, ids?: readonly string[]): Promise<Map<string, number>> {
  const { rows } = await db.query<{ event_id: string; n: number }>(
    'select event_id, count(*)::int as n from example_order_transitions where $1::text[] is null or order_id = any($1::text[]) group by event_id',
    [ids ?? null],
  )
  return new Map(rows.map((r) => [r.event_id, Number(r.n)]))
}
