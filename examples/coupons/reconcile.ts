/**
 * Reconciliation between Redis and PostgreSQL for the coupons example (seed 003's "Redis ↔ DB 정합성 검증
 * batch"), on Lifeline's `defineReconciliation` / `runReconciliation`. The DB is the source of truth.
 *
 * - `coupon-issues`, one key per issue (`<coupon>/<user>`):
 *   - **missing**: a row in example_coupon_issues whose user is not in the Redis issued set (Redis lost a
 *     write: a failover, a restore from an old snapshot). Repair: add the user back and take the stock.
 *   - **extra**: a user in the issued set without a row (the issuer died between Redis and Kafka, a
 *     compensation that never ran). Repair: give the coupon back (the compensation's own script).
 *     Users issued less than `graceMs` ago are left alone: their event may still be on its way.
 * - `coupon-stock`, one key per coupon: Redis's remaining stock must be `total - issued set size`
 *   (**different**; **missing** when Redis has no stock key). Repair: set it to that, never below 0.
 *
 * Run `coupon-issues` before `coupon-stock`: the first makes the issued set match the DB, the second makes
 * the counter match the set. Every repair is idempotent (a Lua script that checks before it writes), so a
 * repair interrupted and run again does no harm.
 *
 * @module
 */
import { defineReconciliation, type Reconciliation } from '../../src/effects/reconcile.js'
import type { SqlQueryable } from '../../src/store/executor.js'
import type { RedisClient, RedisReply } from '../lib/redis.js'
import { couponKeyList, couponKeys, readdScript, resetStockScript, restoreScript } from './index.js'

/** One coupon issue. */
export interface IssueKey {
  couponId: string
  userId: string
}
/** The DB side of an issue. */
export interface IssueRow {
  eventId: string
}
/** The Redis side of an issue: when it was issued (ms), null when unknown. */
export interface IssueMember {
  issuedAt: number | null
}
export interface CouponTotal {
  total: number
}
export interface CouponStock {
  stock: number
  issued: number
}

export interface CouponReconciliationOptions {
  redis: RedisClient
  /** Leave Redis-only users issued less than this long ago alone (their event may be in flight), ms (default 60000). */
  graceMs?: number
  /** Rows per batch (default 500). */
  batchSize?: number
  /** Releases the Redis connection: the `lifeline reconcile` CLI calls it when its command ends. */
  close?: () => unknown
}

const issueText = (k: IssueKey) => `${k.couponId}/${k.userId}`

/** Reads coupon ids in order after `after` (keyset pagination). */
async function couponIdsAfter(db: SqlQueryable, after: string | null, limit: number): Promise<string[]> {
  const { rows } = await db.query<{ coupon_id: string }>('select coupon_id from example_coupons where $1::text is null or coupon_id > $1 order by coupon_id limit $2', [after, limit])
  return rows.map((r) => r.coupon_id)
}

const toNumber = (v: RedisReply) => (v === null ? null : Number(v))

export function couponReconciliations(options: CouponReconciliationOptions): { issues: Reconciliation<IssueKey, IssueRow, IssueMember>; stock: Reconciliation<string, CouponTotal, CouponStock> } {
  const { redis } = options
  const graceMs = options.graceMs ?? 60_000
  const batch = { ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }), ...(options.close === undefined ? {} : { close: options.close }) }

  const issues = defineReconciliation<IssueKey, IssueRow, IssueMember>({
    name: 'coupon-issues',
    description: 'issue rows (PostgreSQL) against the issued sets (Redis)',
    ...batch,
    key: issueText,
    source: {
      // Issue rows in (coupon, user) order; the cursor is the last key of the batch.
      async read(cursor, limit, { db }) {
        const after = cursor === null ? null : (JSON.parse(cursor) as [string, string])
        const { rows } = await db.query<{ coupon_id: string; user_id: string; event_id: string }>(
          `select coupon_id, user_id, event_id from example_coupon_issues
            where $1::text is null or (coupon_id, user_id) > ($1::text, $2::text) order by coupon_id, user_id limit $3`,
          [after?.[0] ?? null, after?.[1] ?? null, limit],
        )
        const last = rows.at(-1)
        return {
          rows: rows.map((r) => ({ key: { couponId: r.coupon_id, userId: r.user_id }, value: { eventId: r.event_id } })),
          next: rows.length < limit || last === undefined ? null : JSON.stringify([last.coupon_id, last.user_id]),
        }
      },
      async get(keys, { db }) {
        const { rows } = await db.query<{ coupon_id: string; user_id: string; event_id: string }>(
          'select i.coupon_id, i.user_id, i.event_id from example_coupon_issues i join unnest($1::text[], $2::text[]) as k(coupon_id, user_id) using (coupon_id, user_id)',
          [keys.map((k) => k.couponId), keys.map((k) => k.userId)],
        )
        return new Map(rows.map((r) => [issueText({ couponId: r.coupon_id, userId: r.user_id }), { eventId: r.event_id }]))
      },
    },
    target: {
      async get(keys) {
        const found = new Map<string, IssueMember>()
        const byCoupon = new Map<string, IssueKey[]>()
        for (const key of keys) byCoupon.set(key.couponId, [...(byCoupon.get(key.couponId) ?? []), key])
        for (const [couponId, ks] of byCoupon) {
          const k = couponKeys(couponId)
          const users = ks.map((x) => x.userId)
          const [member, at] = await Promise.all([redis.command(['SMISMEMBER', k.issued, ...users]), redis.command(['HMGET', k.issuedAt, ...users])])
          users.forEach((userId, i) => {
            if ((member as number[])[i] === 1) found.set(issueText({ couponId, userId }), { issuedAt: toNumber((at as RedisReply[])[i]!) })
          })
        }
        return found
      },
      // SSCAN through each coupon's issued set; the cursor is [coupon, SSCAN cursor].
      async read(cursor, limit, { db }) {
        const [at0, scan] = cursor === null ? [null, '0'] : (JSON.parse(cursor) as [string, string])
        const couponId = at0 ?? (await couponIdsAfter(db, null, 1))[0]
        if (couponId === undefined) return { rows: [], next: null }
        const k = couponKeys(couponId)
        const [nextScan, users] = (await redis.command(['SSCAN', k.issued, scan, 'COUNT', limit])) as [string, string[]]
        const at = users.length === 0 ? [] : ((await redis.command(['HMGET', k.issuedAt, ...users])) as RedisReply[])
        const settledBefore = Date.now() - graceMs
        const rows = users
          .map((userId, i) => ({ key: { couponId, userId }, value: { issuedAt: toNumber(at[i] ?? null) } }))
          .filter((r) => r.value.issuedAt === null || r.value.issuedAt <= settledBefore)
        if (nextScan !== '0') return { rows, next: JSON.stringify([couponId, nextScan]) }
        const following = (await couponIdsAfter(db, couponId, 1))[0]
        return { rows, next: following === undefined ? null : JSON.stringify([following, '0']) }
      },
    },
    compare: () => 'equal', // present on both sides is all there is to check
    repair: {
      missing: ({ key }) => readdScript.run(redis, couponKeyList(key.couponId), [key.userId, Date.now()]),
      extra: ({ key }) => restoreScript.run(redis, couponKeyList(key.couponId), [key.userId]),
    },
  })

  const stock = defineReconciliation<string, CouponTotal, CouponStock>({
    name: 'coupon-stock',
    description: 'remaining stock (Redis) against total - issued',
    ...batch,
    key: (couponId) => couponId,
    source: {
      async read(cursor, limit, { db }) {
        const { rows } = await db.query<{ coupon_id: string; total_stock: number }>('select coupon_id, total_stock from example_coupons where $1::text is null or coupon_id > $1 order by coupon_id limit $2', [cursor, limit])
        return { rows: rows.map((r) => ({ key: r.coupon_id, value: { total: Number(r.total_stock) } })), next: rows.length < limit ? null : rows.at(-1)!.coupon_id }
      },
    },
    target: {
      async get(couponIds) {
        const found = new Map<string, CouponStock>()
        await Promise.all(
          couponIds.map(async (couponId) => {
            const k = couponKeys(couponId)
            const [stockValue, issued] = await Promise.all([redis.command(['GET', k.stock]), redis.command(['SCARD', k.issued])])
            if (stockValue !== null) found.set(couponId, { stock: Number(stockValue), issued: Number(issued) })
          }),
        )
        return found
      },
    },
    compare: (source, target) => {
      const expected = Math.max(0, source.total - target.issued)
      return target.stock === expected ? 'equal' : { stock: target.stock, expected, issued: target.issued, total: source.total }
    },
    repair: {
      missing: ({ key, source }) => resetStockScript.run(redis, couponKeyList(key), [source.total]),
      different: ({ key, source }) => resetStockScript.run(redis, couponKeyList(key), [source.total]),
    },
  })
  return { issues, stock }
}
