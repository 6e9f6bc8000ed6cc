/**
 * Example: first-come coupon issuance (seed 003). The request path takes the stock in Redis with one Lua
 * script (refuse a second coupon per user, `DECR` the stock only while it is above zero, `SADD` the user to
 * the coupon's issued set) and publishes a `coupon issued` event; a Lifeline consumer writes the issue row
 * to PostgreSQL through the inbox (exactly once per event). When a record fails for good (retries used up,
 * or a permanent error such as a constraint violation) it is dead-lettered and `compensateOnFailure` gives
 * the stock back in Redis (`SREM` + `INCR`, also a Lua script, idempotent), retrying that compensation with
 * backoff and recording every attempt on a failure record (PENDING until an operator resolves or ignores
 * it). Reconciliation (./reconcile.ts) finds and repairs whatever drift is left between Redis and the DB.
 *
 * Redis keys per coupon share a hash tag, so the scripts also work on Redis Cluster:
 * `coupon:{id}:stock` (remaining), `coupon:{id}:issued` (set of user ids), `coupon:{id}:issued_at`
 * (hash user → issue time in ms, which lets reconciliation leave events still in flight alone).
 *
 * @module
 */
import { fileURLToPath } from 'node:url'
import Type from 'typebox'
import { compensateOnFailure, listFailures, type FailureRecord } from '../../src/effects/compensation.js'
import { createInbox, type Inbox } from '../../src/effects/inbox.js'
import type { KafkaProducer } from '../../src/kafka/types.js'
import type { Logger } from '../../src/logger.js'
import { createConsumer, type LifelineConsumer } from '../../src/runtime/consumer.js'
import type { RetryOptions } from '../../src/runtime/options.js'
import type { SqlExecutor, SqlQueryable } from '../../src/store/executor.js'
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { defineScript, type RedisClient } from '../lib/redis.js'

/** The `coupon issued` event's value. Its event id (header `event-id`) is derived from coupon and user. */
export interface CouponIssued {
  couponId: string
  userId: string
  /** When Redis granted it, ISO 8601. */
  requestedAt: string
}

const ID = '^[A-Za-z0-9._-]{1,100}$'
export const CouponIssuedSchema = Type.Object({
  couponId: Type.String({ pattern: ID }),
  userId: Type.String({ pattern: ID }),
  requestedAt: Type.String(),
})

/** The Redis keys of a coupon (one hash tag: one cluster slot). */
export function couponKeys(couponId: string): { stock: string; issued: string; issuedAt: string } {
  if (!new RegExp(ID).test(couponId)) throw new Error(`a coupon id matches ${ID}, got ${JSON.stringify(couponId)}`)
  const tag = `{${couponId}}`
  return { stock: `coupon:${tag}:stock`, issued: `coupon:${tag}:issued`, issuedAt: `coupon:${tag}:issued_at` }
}
/** The KEYS of every script below: stock, issued, issued_at. */
export function couponKeyList(couponId: string): string[] {
  const k = couponKeys(couponId)
  return [k.stock, k.issued, k.issuedAt]
}

/** The event id of a coupon issue: one coupon per user, so a re-sent event is the same event. */
export const couponEventId = (couponId: string, userId: string) => `coupon-issue/${couponId}/${userId}`

/**
 * Takes one coupon for a user, atomically: 1 issued, 0 sold out, -1 this user already has one, -2 no stock
 * key (unknown coupon). KEYS: stock, issued, issued_at; ARGV: user, now (ms).
 */
export const issueScript = defineScript(`
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -1 end
local stock = redis.call('GET', KEYS[1])
if not stock then return -2 end
if tonumber(stock) <= 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1`)

/**
 * Gives a user's coupon back (the compensation): only when the user is in the issued set, so running it
 * twice (a retried compensation, a compensation and a reconciliation) restores the stock once. 1 restored, 0 nothing to do.
 */
export const restoreScript = defineScript(`
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1`)

/** Puts back a user the DB says has the coupon (a reconciliation repair): 1 added, 0 already there. ARGV: user, now. */
export const readdScript = defineScript(`
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1`)

/** Sets the stock to total - issued (a reconciliation repair), never below 0; returns it. ARGV: total. */
export const resetStockScript = defineScript(`
local remaining = tonumber(ARGV[1]) - redis.call('SCARD', KEYS[2])
if remaining < 0 then remaining = 0 end
redis.call('SET', KEYS[1], remaining)
return remaining`)

export async function restoreStock(redis: RedisClient, couponId: string, userId: string): Promise<boolean> {
  return (await restoreScript.run(redis, couponKeyList(couponId), [userId])) === 1
}

// ---- set-up ------------------------------------------------------------------------------------------

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))

/** Creates Lifeline's tables and the example's own (under their own migrations table). Idempotent. */
export async function setupCoupons(db: SqlExecutor): Promise<void> {
  await migrateLifeline(db)
  await migrate(db, await loadMigrations(MIGRATIONS_DIR), { table: 'example_coupons_migrations' })
}

/** Registers a coupon in the DB and loads its stock into Redis (issued set emptied). */
export async function createCoupon(db: SqlQueryable, redis: RedisClient, couponId: string, totalStock: number): Promise<void> {
  const k = couponKeys(couponId)
  await db.query('insert into example_coupons (coupon_id, total_stock) values ($1, $2)', [couponId, totalStock])
  await redis.command(['DEL', k.issued, k.issuedAt])
  await redis.command(['SET', k.stock, totalStock])
}

// ---- the request path ----------------------------------------------------------------------------------

export type IssueOutcome = 'issued' | 'sold-out' | 'already-issued' | 'unknown-coupon'
const OUTCOMES: Record<number, IssueOutcome> = { 1: 'issued', 0: 'sold-out', [-1]: 'already-issued', [-2]: 'unknown-coupon' }

export interface CouponIssuer {
  /** Takes a coupon in Redis and publishes the event; a failed publish gives the coupon back and throws. */
  issue(couponId: string, userId: string): Promise<IssueOutcome>
}

export function createCouponIssuer(options: { redis: RedisClient; producer: KafkaProducer; topic: string }): CouponIssuer {
  const { redis, producer, topic } = options
  return {
    async issue(couponId, userId) {
      const now = Date.now()
      const result = await issueScript.run(redis, couponKeyList(couponId), [userId, now])
      const outcome = OUTCOMES[result as number]
      if (outcome === undefined) throw new Error(`the issue script returned ${JSON.stringify(result)}`)
      if (outcome !== 'issued') return outcome
      const event: CouponIssued = { couponId, userId, requestedAt: new Date(now).toISOString() }
      try {
        await producer.send([{ topic, key: `${couponId}:${userId}`, value: JSON.stringify(event), headers: [{ key: 'event-id', value: Buffer.from(couponEventId(couponId, userId)) }] }])
      } catch (err) {
        // Not published: nobody will write the row, so give the coupon back now. If this fails too (or the
        // process dies right here) reconciliation finds the user in Redis without a row and restores it.
        await restoreStock(redis, couponId, userId)
        throw err
      }
      return outcome
    },
  }
}

// ---- the consumer ---------------------------------------------------------------------------------------

export interface CouponConsumerOptions {
  brokers: string[]
  db: SqlExecutor
  redis: RedisClient
  topic: string
  /** Consumer group, inbox namespace and failure records' consumer (default `examples-coupons`). */
  groupId?: string
  /** In-place attempts before the DLQ (default 3 attempts, 1 s doubling, like the seed's main consumer). */
  retry?: RetryOptions
  /** Attempts of the Redis compensation per dead letter, and the backoff between them (default 5, 200 ms doubling). */
  compensation?: { maxAttempts?: number; backoffMs?: number }
  /** Fault injection for demos and tests (the seed's "memberId 10 fails"): events for which the handler throws. */
  failWhen?: (event: CouponIssued) => boolean
  commitIntervalMs?: number
  logger?: Logger
}

export interface CouponConsumer {
  readonly consumer: LifelineConsumer
  readonly inbox: Inbox<CouponIssued>
}

const isCouponIssued = (v: unknown): v is CouponIssued =>
  typeof v === 'object' && v !== null && typeof (v as CouponIssued).couponId === 'string' && typeof (v as CouponIssued).userId === 'string'

/** Builds (does not start) the consumer that writes issue rows. Call {@link setupCoupons} on the database first. */
export function createCouponConsumer(options: CouponConsumerOptions): CouponConsumer {
  const groupId = options.groupId ?? 'examples-coupons'
  const inbox = createInbox<CouponIssued>({
    db: options.db,
    consumer: groupId,
    missingId: 'reject',
    handler: async (m, ctx) => {
      const { couponId, userId } = m.value
      if (options.failWhen?.(m.value)) throw new Error(`injected failure for ${couponId}/${userId}`)
      // A foreign-key violation (a coupon Redis knows and the DB does not) is permanent: dead-lettered at once.
      const inserted = await ctx.tx.query('insert into example_coupon_issues (coupon_id, user_id, event_id) values ($1, $2, $3) on conflict (coupon_id, user_id) do nothing', [couponId, userId, ctx.eventId])
      if (inserted.rowCount === 0) await ctx.ignore('already issued to this user by another event', { entity: 'coupon-issue', entityId: `${couponId}/${userId}` })
    },
  })
  const onDeadLetter = compensateOnFailure<unknown>({
    db: options.db,
    consumer: groupId,
    maxAttempts: options.compensation?.maxAttempts ?? 5,
    backoffMs: options.compensation?.backoffMs ?? 200,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    compensations: [
      {
        name: 'restore-redis-stock',
        // The value is undefined when the record could not be decoded: then there is nothing to restore
        // from it (reconciliation finds the user left in Redis); the failure record keeps the error.
        run: async (m) => {
          if (isCouponIssued(m.value)) await restoreStock(options.redis, m.value.couponId, m.value.userId)
        },
      },
    ],
  })
  const consumer = createConsumer<CouponIssued>({
    brokers: options.brokers,
    groupId,
    service: 'coupons-example',
    topics: [options.topic],
    schema: CouponIssuedSchema,
    retry: options.retry ?? { maxAttempts: 3, backoff: { type: 'exponential', baseMs: 1000, factor: 2, jitter: 'none' } },
    handler: inbox.handler,
    onDeadLetter,
    ...(options.commitIntervalMs === undefined ? {} : { commitIntervalMs: options.commitIntervalMs }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  })
  return { consumer, inbox }
}

// ---- reading -----------------------------------------------------------------------------------------

export interface CouponSnapshot {
  couponId: string
  total: number | null
  /** Rows in example_coupon_issues. */
  rows: number
  redisStock: number | null
  redisIssued: number
}

/** One coupon as the DB and Redis see it. */
export async function couponSnapshot(db: SqlQueryable, redis: RedisClient, couponId: string): Promise<CouponSnapshot> {
  const k = couponKeys(couponId)
  const [{ rows: coupon }, { rows: issued }, stock, members] = await Promise.all([
    db.query<{ total_stock: number }>('select total_stock from example_coupons where coupon_id = $1', [couponId]),
    db.query<{ n: number }>('select count(*)::int as n from example_coupon_issues where coupon_id = $1', [couponId]),
    redis.command(['GET', k.stock]),
    redis.command(['SCARD', k.issued]),
  ])
  return { couponId, total: coupon[0] ? Number(coupon[0].total_stock) : null, rows: Number(issued[0]!.n), redisStock: stock === null ? null : Number(stock), redisIssued: Number(members) }
}

/** The failure records of the coupons consumer, newest first. */
export function couponFailures(db: SqlQueryable, groupId = 'examples-coupons'): Promise<FailureRecord[]> {
  return listFailures(db, { consumer: groupId })
}
