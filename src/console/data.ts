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
