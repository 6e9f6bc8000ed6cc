/**
 * The runs and findings tables (`migrations/0003_reconciliation.sql`): every SQL string of reconciliation
 * lives here. A run is claimed under a per-name advisory lock; its `attempts` fences the writes of a
 * process that another one has taken the run over from.
 *
 * @module
 */
import { createHash } from 'node:crypto'
import { LifelineError, isLifelineError } from '../../errors.js'
import type { SqlExecutor, SqlQueryable } from '../../store/executor.js'
import { migrateLifeline } from '../../store/schema.js'
import { listLimit } from '../../util/limit.js'
import type { ReconcileDifference, ReconcileKind, ReconcilePhase, ReconcileStatus } from './define.js'

/** A run as recorded in `lifeline_reconcile_runs`. */
export interface ReconcileRun {
  id: string
  name: string
  status: ReconcileStatus
  repair: boolean
  phase: ReconcilePhase
  /** The next batch's cursor within `phase` (null: the phase's start). */
  cursor: string | null
  batchSize: number
  batches: number
  /** Source rows compared, plus target rows found extra. */
  checked: number
  missing: number
  extra: number
  different: number
  repaired: number
  /** Findings whose last repair attempt failed. */
  repairFailed: number
  /** 1, plus one per resume. */
  attempts: number
  errorCode: string | null
  error: string | null
  startedAt: Date
  heartbeatAt: Date
  finishedAt: Date | null
}

/** A finding as recorded in `lifeline_reconcile_findings`. */
export interface ReconcileFinding {
  id: string
  runId: string
  kind: ReconcileKind
  key: string
  /** The values as read, as JSON (null on the side the row is absent from). */
  source: unknown
  target: unknown
  diff: unknown
  repaired: boolean
  repairError: string | null
  foundAt: Date
  repairedAt: Date | null
}

const RUN_COLUMNS = 'id, name, status, repair, phase, resume_cursor, batch_size, batches, checked, missing, extra, different, repaired, repair_failed, attempts, error_code, error, started_at, heartbeat_at, finished_at'

function toRun(r: Record<string, unknown>): ReconcileRun {
  const n = (c: string) => Number(r[c])
  return {
    id: String(r.id), name: r.name as string, status: r.status as ReconcileStatus, repair: r.repair as boolean, phase: r.phase as ReconcilePhase,
    cursor: r.resume_cursor as string | null, batchSize: n('batch_size'), batches: n('batches'), checked: n('checked'), missing: n('missing'),
    extra: n('extra'), different: n('different'), repaired: n('repaired'), repairFailed: n('repair_failed'), attempts: n('attempts'),
    errorCode: r.error_code as string | null, error: r.error as string | null, startedAt: r.started_at as Date, heartbeatAt: r.heartbeat_at as Date, finishedAt: r.finished_at as Date | null,
  }
}

const migrated = new WeakMap<SqlExecutor, Promise<unknown>>()
/** Lifeline's migrations, applied once per executor (a failure is retried on the next call). */
export function ensureSchema(db: SqlExecutor): Promise<unknown> {
  let done = migrated.get(db)
  if (done === undefined) {
    done = migrateLifeline(db)
    migrated.set(db, done)
    done.catch(() => migrated.delete(db))
  }
  return done
}

const limitOf = (limit: number | undefined): number => listLimit(limit)

function runIdOf(id: string): string {
  if (!/^[1-9]\d{0,17}$/.test(id)) throw new LifelineError('LL_ARGUMENT_INVALID', `a run id is a positive integer, got ${JSON.stringify(id)}`)
  return id
}

/** The latest runs, newest first, of one reconciliation or all; `limit` 1 to 10 000 (default 100). Applies Lifeline's migrations first. */
export async function listReconciliationRuns(db: SqlExecutor, filter: { name?: string; limit?: number } = {}): Promise<ReconcileRun[]> {
  const limit = limitOf(filter.limit)
  await ensureSchema(db)
  const { rows } = await db.query(`select ${RUN_COLUMNS} from lifeline_reconcile_runs where ($1::text is null or name = $1) order by id desc limit $2`, [filter.name ?? null, limit])
  return rows.map(toRun)
}

/** One run; LL_NOT_FOUND when there is none with that id. */
export async function getReconciliationRun(db: SqlExecutor, id: string): Promise<ReconcileRun> {
  await ensureSchema(db)
  const { rows } = await db.query(`select ${RUN_COLUMNS} from lifeline_reconcile_runs where id = $1`, [runIdOf(id)])
  if (rows[0] === undefined) throw new LifelineError('LL_NOT_FOUND', `reconciliation run ${id} does not exist`, { details: { runId: id } })
  return toRun(rows[0])
}

/** A run's findings in the order found, optionally of one kind; `limit` 1 to 10 000 (default 100). LL_NOT_FOUND for an unknown run. */
export async function listReconciliationFindings(db: SqlExecutor, runId: string, filter: { kind?: ReconcileKind; repaired?: boolean; limit?: number } = {}): Promise<ReconcileFinding[]> {
  const limit = limitOf(filter.limit)
  if (filter.kind !== undefined && !['missing', 'extra', 'different'].includes(filter.kind)) throw new LifelineError('LL_ARGUMENT_INVALID', `kind must be missing, extra or different, got ${String(filter.kind)}`)
  await getReconciliationRun(db, runId)
  const { rows } = await db.query(
    `select id, run_id, kind, key, source, target, diff, repaired, repair_error, found_at, repaired_at from lifeline_reconcile_findings
      where run_id = $1 and ($2::text is null or kind = $2) and ($3::boolean is null or repaired = $3) order by id limit $4`,
    [runId, filter.kind ?? null, filter.repaired ?? null, limit],
  )
  return rows.map((r) => ({
    id: String(r.id), runId: String(r.run_id), kind: r.kind as ReconcileKind, key: r.key as string, source: r.source, target: r.target, diff: r.diff,
    repaired: r.repaired as boolean, repairError: r.repair_error as string | null, foundAt: r.found_at as Date, repairedAt: r.repaired_at as Date | null,
  }))
}

export interface ReconcileRunResult extends ReconcileRun {
  /** True when this call continued an earlier run. */
  resumed: boolean
}

function lockKey(name: string): string {
  return createHash('sha256').update(`lifeline:reconcile:${name}`).digest().readBigInt64BE(0).toString()
}

export const describeError = (err: unknown): string => (isLifelineError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err))

/** JSON for a jsonb column: bigints as strings, values that cannot be serialised as a note. */
function toJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null')
  } catch (err) {
    return { unserializable: describeError(err) }
  }
}

/** Starts a new run or takes over the latest unfinished one, under a per-name lock so two processes never run one name at once. */
export async function claimRun(db: SqlExecutor, name: string, want: { repair: boolean | undefined; resume: false | 'strict' | 'compatible'; batchSize: number; staleAfterMs: number }): Promise<ReconcileRunResult> {
  return db.transaction(async (tx) => {
    await tx.query('select pg_advisory_xact_lock($1::int8)', [lockKey(name)])
    const { rows } = await tx.query(`select ${RUN_COLUMNS}, heartbeat_at < now() - make_interval(secs => $2::float8) as stale from lifeline_reconcile_runs where name = $1 order by id desc limit 1`, [name, want.staleAfterMs / 1000])
    const latest = rows[0] === undefined ? undefined : { ...toRun(rows[0]), stale: rows[0].stale === true }
    if (latest?.status === 'running' && !latest.stale) {
      throw new LifelineError('LL_RECONCILE', `reconciliation ${name} is already running (run ${latest.id}, heartbeat at ${latest.heartbeatAt.toISOString()})`, { retriable: true, details: { name, runId: latest.id, reason: 'already-running' } })
    }
    const mismatch = want.repair !== undefined && latest !== undefined && want.repair !== latest.repair
    if (want.resume !== false && latest !== undefined && latest.status !== 'completed' && !(mismatch && want.resume === 'compatible')) {
      if (mismatch) {
        throw new LifelineError('LL_ARGUMENT_INVALID', `run ${latest.id} of ${name} is a ${latest.repair ? 'repair' : 'dry'} run: resume it ${latest.repair ? 'with' : 'without'} repair`, { details: { name, runId: latest.id } })
      }
      const resumed = await tx.query(
        `update lifeline_reconcile_runs set status = 'running', attempts = attempts + 1, batch_size = $2, error_code = null, error = null, heartbeat_at = now(), finished_at = null where id = $1 returning ${RUN_COLUMNS}`,
        [latest.id, want.batchSize],
      )
      return { ...toRun(resumed.rows[0]!), resumed: true }
    }
    if (latest?.status === 'running') {
      await tx.query(`update lifeline_reconcile_runs set status = 'failed', error_code = 'LL_RECONCILE', error = $2, finished_at = now() where id = $1`, [latest.id, `abandoned: no heartbeat since ${latest.heartbeatAt.toISOString()} (its process died); replaced by a new run`])
    }
    const created = await tx.query(`insert into lifeline_reconcile_runs (name, status, repair, batch_size) values ($1, 'running', $2, $3) returning ${RUN_COLUMNS}`, [name, want.repair ?? false, want.batchSize])
    return { ...toRun(created.rows[0]!), resumed: false }
  })
}

export interface Finding { kind: ReconcileKind; keyText: string; key: unknown; source?: unknown; target?: unknown; diff?: ReconcileDifference }
export interface Outcome { repaired: boolean; repairError: string | null }
export type Before = { repaired: boolean; failed: boolean } | undefined

/** Records a batch's findings and moves the run's cursor, in one transaction; returns the count changes. */
export async function recordBatch(db: SqlExecutor, run: ReconcileRun, step: { findings: Finding[]; outcomes: Outcome[]; before: Before[]; checked: number; phase: ReconcilePhase; cursor: string | null; complete: boolean }) {
  const delta = { missing: 0, extra: 0, different: 0, repaired: 0, repairFailed: 0 }
  const byKind = { found: new Map<ReconcileKind, number>(), repaired: new Map<ReconcileKind, number>(), failed: new Map<ReconcileKind, number>() }
  const bump = (m: Map<ReconcileKind, number>, k: ReconcileKind) => m.set(k, (m.get(k) ?? 0) + 1)
  step.findings.forEach((f, i) => {
    const before = step.before[i]
    const out = step.outcomes[i]!
    if (before === undefined) {
      delta[f.kind] += 1
      bump(byKind.found, f.kind)
    }
    if (out.repaired && before?.repaired !== true) {
      delta.repaired += 1
      bump(byKind.repaired, f.kind)
    }
    if (out.repairError !== null) bump(byKind.failed, f.kind)
    delta.repairFailed += (out.repairError !== null ? 1 : 0) - (before?.failed === true && (out.repaired || out.repairError !== null) ? 1 : 0)
  })
  const records = step.findings.map((f, i) => ({
    kind: f.kind, key: f.keyText, source: f.kind === 'extra' ? null : toJson(f.source), target: f.kind === 'missing' ? null : toJson(f.target),
    diff: f.diff === undefined ? null : toJson(f.diff), repaired: step.outcomes[i]!.repaired, repair_error: step.outcomes[i]!.repairError,
  }))
  const updated = await db.transaction(async (tx: SqlQueryable) => {
    if (records.length > 0) {
      await tx.query(
        `insert into lifeline_reconcile_findings (run_id, kind, key, source, target, diff, repaired, repair_error, repaired_at)
         select $1, f.kind, f.key, f.source, f.target, f.diff, f.repaired, f.repair_error, case when f.repaired then now() end
           from jsonb_to_recordset($2::jsonb) as f(kind text, key text, source jsonb, target jsonb, diff jsonb, repaired boolean, repair_error text)
         on conflict (run_id, kind, key) do update set source = excluded.source, target = excluded.target, diff = excluded.diff,
           repaired = lifeline_reconcile_findings.repaired or excluded.repaired,
           repair_error = case when lifeline_reconcile_findings.repaired or excluded.repaired then null else coalesce(excluded.repair_error, lifeline_reconcile_findings.repair_error) end,
           repaired_at = coalesce(lifeline_reconcile_findings.repaired_at, excluded.repaired_at)`,
        [run.id, JSON.stringify(records)],
      )
    }
    const { rows } = await tx.query(
      `update lifeline_reconcile_runs set phase = $2, resume_cursor = $3, batches = batches + 1, checked = checked + $4, missing = missing + $5, extra = extra + $6,
         different = different + $7, repaired = repaired + $8, repair_failed = repair_failed + $9, heartbeat_at = now(),
         status = case when $10::boolean then 'completed' else status end, finished_at = case when $10::boolean then now() end
       where id = $1 and status = 'running' and attempts = $11 returning ${RUN_COLUMNS}`,
      [run.id, step.phase, step.cursor, step.checked, delta.missing, delta.extra, delta.different, delta.repaired, delta.repairFailed, step.complete, run.attempts],
    )
    if (rows[0] === undefined) throw new LifelineError('LL_RECONCILE', `run ${run.id} is no longer running here: another process took it over after its heartbeat went stale`, { details: { runId: run.id } })
    return toRun(rows[0])
  })
  return { run: updated, byKind }
}


/** Findings an earlier batch of this run recorded (a key read twice, or a batch redone after an interruption), in the order of `findings`. */
export async function recordedBefore(db: SqlExecutor, runId: string, findings: Finding[]): Promise<Before[]> {
  if (findings.length === 0) return findings.map(() => undefined)
  const { rows } = await db.query(
    `select f.kind, f.key, f.repaired, f.repair_error is not null as failed
       from jsonb_to_recordset($2::jsonb) as q(kind text, key text)
       join lifeline_reconcile_findings f on f.run_id = $1 and f.kind = q.kind and f.key = q.key`,
    [runId, JSON.stringify(findings.map((f) => ({ kind: f.kind, key: f.keyText })))],
  )
  const seen = new Map(rows.map((r) => [`${String(r.kind)}\u0000${String(r.key)}`, { repaired: r.repaired === true, failed: r.failed === true }]))
  return findings.map((f) => seen.get(`${f.kind}\u0000${f.keyText}`))
}

/** Tells other processes the run is alive; matches nothing once another process took it over (`fence`: the attempts this process claimed). */
export async function heartbeatRun(db: SqlExecutor, runId: string, fence: number): Promise<void> {
  await db.query(`update lifeline_reconcile_runs set heartbeat_at = now() where id = $1 and status = 'running' and attempts = $2`, [runId, fence])
}

/** Records a run that failed or was aborted, unless another process took it over. */
export async function endRun(db: SqlExecutor, runId: string, fence: number, end: { status: ReconcileStatus; code: string; error: string }): Promise<void> {
  await db.query(`update lifeline_reconcile_runs set status = $2, error_code = $3, error = $4, finished_at = now() where id = $1 and status = 'running' and attempts = $5`, [runId, end.status, end.code, end.error, fence])
}

/** Milliseconds until the name is due again (0: now): `everyMs` after its last completed run finished, by the database's clock. */
export async function msUntilDue(db: SqlExecutor, name: string, everyMs: number): Promise<number> {
  const { rows } = await db.query(
    `select extract(epoch from (max(finished_at) + make_interval(secs => $2::float8) - now())) * 1000 as wait from lifeline_reconcile_runs where name = $1 and status = 'completed'`,
    [name, everyMs / 1000],
  )
  return Math.max(0, Math.ceil(Number(rows[0]?.wait ?? 0)))
}
