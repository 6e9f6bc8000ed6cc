/**
 * The coupons reconciliations for the `lifeline reconcile` CLI, on the Redis that REDIS_URL names
 * (default redis://127.0.0.1:6379) and the database of DATABASE_URL / --database:
 *
 *   npm run lifeline -- reconcile list --module examples/coupons/reconcile.config.ts
 *   npm run lifeline -- reconcile run coupon-issues --module examples/coupons/reconcile.config.ts            # dry run
 *   npm run lifeline -- reconcile run coupon-issues --module examples/coupons/reconcile.config.ts --repair
 *   npm run lifeline -- reconcile run coupon-stock --module examples/coupons/reconcile.config.ts --repair
 *
 * COUPON_GRACE_MS (default 60000): Redis-only issues younger than this are left alone (still in flight).
 */
import { connectRedis } from '../lib/redis.js'
import { couponReconciliations } from './reconcile.js'

const redis = connectRedis({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' })
// close(): the CLI calls it when its command ends (once: both definitions share it).
const close = () => redis.close()
export const { issues: couponIssues, stock: couponStock } = couponReconciliations({ redis, graceMs: Number(process.env.COUPON_GRACE_MS ?? 60_000), close })
