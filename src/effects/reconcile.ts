/**
 * Reconciliation: compare a source of truth with a target derived from it (DB rows and Redis stock, an
 * order service and a ledger, ...) in resumable batches, record what differs, and optionally repair it.
 * Idempotent consumers and ordering keep most drift out; this is the safety net that finds the rest.
 *
 * A run reads the source in batches (`source.read(cursor, limit)`, cursor-based) and looks the batch's keys
 * up in the target (`target.get(keys)`): keys absent there are `missing`, keys whose `compare` is not
 * `'equal'` are `different`. When the target can be read too (`target.read`) and the source looked up
 * (`source.get`), a second pass reads the target and reports keys absent from the source as `extra`.
 * Each batch's findings are written in one transaction with the run's cursor, so an interrupted run
 * resumes at the first unfinished batch. Runs are dry by default: repairs run only with `repair: true`, one
 * finding at a time, and a failed repair is recorded on its finding without stopping the run.
 * Tables: `migrations/0003_reconciliation.sql`; see docs/reconciliation.md.
 *
 * This is the entry point; the implementation lives in ./reconcile/, one job a module: `define.ts` (types,
 * defaults, schemas, the default compare), `registry.ts`, `store.ts` (every SQL string), `detect.ts` (one
 * batch: read, look up, compare; one repair), `metrics.ts`, `run.ts` (a run's loop), `schedule.ts`.
 *
 * @module
 * @example
 * const stock = defineReconciliation({
 *   name: 'coupon-stock',
 *   source: { read: (cursor, limit, { db }) => readCoupons(db, cursor, limit), get: (ids, { db }) => couponsById(db, ids) },
 *   target: { get: (ids) => redisStock(ids), read: (cursor, limit) => scanStock(cursor, limit) },
 *   key: (id: string) => id,
 *   compare: (row, stock) => (row.remaining === stock ? 'equal' : { remaining: row.remaining, redis: stock }),
 *   repair: { missing: ({ key, source }) => redis.set(key, source.remaining), different: ({ key, source }) => redis.set(key, source.remaining) },
 * })
 * const run = await runReconciliation(stock, { db, repair: true })
 */
export {
  defineReconciliation,
  isReconciliation,
  diffFields,
  reconcileDefaults,
  type ReconcileKind,
  type ReconcileStatus,
  type ReconcilePhase,
  type ReconcileDifference,
  type ReconcileContext,
  type ReconcileBatch,
  type ReconcileLookup,
  type ReconcileReader,
  type ReconcileSource,
  type ReconcileTarget,
  type ReconcileRepair,
  type ReconciliationSpec,
  type Reconciliation,
  type AnyReconciliation,
  type RunReconciliationOptions,
} from './reconcile/define.js'
export { registerReconciliation, unregisterReconciliation, listReconciliations, getReconciliation } from './reconcile/registry.js'
export { listReconciliationRuns, getReconciliationRun, listReconciliationFindings, type ReconcileRun, type ReconcileFinding, type ReconcileRunResult } from './reconcile/store.js'
export { runReconciliation } from './reconcile/run.js'
export { scheduleReconciliation, type ScheduleReconciliationOptions, type ReconciliationSchedule } from './reconcile/schedule.js'
