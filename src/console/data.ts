/**
 * The overview's reads that no API endpoint serves (one aggregate query each).
 *
 * @module
 */
import type { SqlQueryable } from '../store/executor.js'

/** How many keys are parked (behind a dead letter or a retry, or waiting for a gap) and since when the oldest. */
export async function parkedSummary(db: SqlQueryable): Promise<{ count: number; oldest: Date | null }> {
  const { rows } = await db.query(`select count(*)::int8 as n, min(parked_at) as oldest from lifeline_parked_keys where status = 'parked'`)
  const oldest = rows[0]?.oldest
  return { count: Number(rows[0]?.n ?? 0), oldest: oldest === null || oldest === undefined ? null : new Date(oldest as Date | string) }
}

/** How many dead letters were indexed after record `id` (the records page's "new since you loaded it"; a primary-key range). */
export async function countNewer(db: SqlQueryable, id: number): Promise<number> {
  const { rows } = await db.query('select count(*)::int8 as n from lifeline_dlq_record_bodies where id > $1', [id])
  return Number(rows[0]?.n ?? 0)
}

/** The highest record id (0 when there is none). */
export async function latestId(db: SqlQueryable): Promise<number> {
  const { rows } = await db.query('select coalesce(max(id), 0)::int8 as id from lifeline_dlq_record_bodies')
  return Number(rows[0]?.id ?? 0)
}
