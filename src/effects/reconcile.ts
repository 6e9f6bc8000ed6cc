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
import { createHash } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { Counter, Gauge, type Registry } from 'prom-client'
import Type from 'typebox'
import { LifelineError, isLifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import { migrateLifeline } from '../store/schema.js'
import { validateOptions } from '../util/options.js'
import { listLimit } from '../util/limit.js'
import { metric } from '../util/metric.js'

export type ReconcileKind = 'missing' | 'extra' | 'different'
export type ReconcileStatus = 'running' | 'completed' | 'failed' | 'aborted'
/** `source`: reading the source (missing, different); `target`: reading the target (extra). */
export type ReconcilePhase = 'source' | 'target'
/** What `compare` returns for rows that differ: a text or a JSON-able object, stored as the finding's `diff`. */
export type ReconcileDifference = string | Record<string, unknown>

/** Handed to every reader, lookup and repair of a run. */
export interface ReconcileContext {
  readonly name: string
  readonly runId: string
  readonly repair: boolean
  /** The database the run is recorded in; a source or target living there may use it. */
  readonly db: SqlExecutor
  /** Aborted when the run is cancelled (`options.signal`, a schedule's `stop()`). */
  readonly signal: AbortSignal
  readonly logger: Logger
}

/** One batch of a reader: its rows and the cursor of the next batch (null: this was the last). */
export interface ReconcileBatch<K, V> {
  rows: Array<{ key: K; value: V }>
  next: string | null
}

/**
 * A batch lookup: the values of the keys that exist, keyed by `key(k)`. A key absent from the map, or
 * mapped to null or undefined, does not exist (so a Redis MGET's nulls can be passed through).
 */
export type ReconcileLookup<K, V> = (keys: K[], ctx: ReconcileContext) => Promise<ReadonlyMap<string, V | null | undefined>>
/** A cursor reader: `cursor` null is the start; the returned `next` must differ from `cursor`. */
export type ReconcileReader<K, V> = (cursor: string | null, limit: number, ctx: ReconcileContext) => Promise<ReconcileBatch<K, V>>

export interface ReconcileSource<K, S> {
  read: ReconcileReader<K, S>
  /** Needed, with `target.read`, for the extra pass. */
  get?: ReconcileLookup<K, S>
}

export interface ReconcileTarget<K, T> {
  get: ReconcileLookup<K, T>
  /** Enables the extra pass (with `source.get`): target rows whose key the source lacks are `extra`. */
  read?: ReconcileReader<K, T>
}

/** Repairs per kind, called one finding at a time with `repair: true`; a kind without one is only reported. */
export interface ReconcileRepair<K, S, T> {
  missing?: (row: { key: K; keyText: string; source: S }, ctx: ReconcileContext) => unknown
  extra?: (row: { key: K; keyText: string; target: T }, ctx: ReconcileContext) => unknown
  different?: (row: { key: K; keyText: string; source: S; target: T; diff: ReconcileDifference }, ctx: ReconcileContext) => unknown
}

export interface ReconciliationSpec<K, S, T> {
  /** Unique name: letters, digits, `.`, `_`, `:`, `-` (1 to 100 characters); runs are recorded under it. */
  name: string
  source: ReconcileSource<K, S>
  target: ReconcileTarget<K, T>
  /** The key as text: findings are recorded under it and lookups are keyed by it. */
  key: (key: K) => string
  /** `'equal'`, or a description of the difference. Default {@link diffFields}. A compare that throws reports the row as different. */
  compare?: (source: S, target: T, key: K) => ReconcileDifference | 'equal'
  repair?: ReconcileRepair<K, S, T>
  /** Rows per batch, 1 to 10 000. Default 500. */
  batchSize?: number
  /** Shown by `lifeline reconcile list`. */
  description?: string
  /** Releases what the source and target hold open (connections); the CLI calls it when its command ends. */
  close?: () => unknown
}

const BRAND = Symbol.for('lifeline.reconciliation')

/** A validated, frozen definition (from {@link defineReconciliation}). */
export interface Reconciliation<K = unknown, S = unknown, T = unknown> extends Readonly<ReconciliationSpec<K, S, T>> {
  readonly batchSize: number
  /** True when the target is read too (`target.read` and `source.get`): extra rows are found. */
  readonly extraPass: boolean
  readonly [BRAND]: true
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a registry holds definitions of any row types
export type AnyReconciliation = Reconciliation<any, any, any>

/** Defaults of {@link ReconciliationSpec} and {@link RunReconciliationOptions}. */
export const reconcileDefaults = { batchSize: 500, staleAfterMs: 60_000 } as const satisfies Partial<ReconciliationSpec<unknown, unknown, unknown> & RunReconciliationOptions>

const Fn = Type.Unsafe<unknown>({ 'x-function': true, not: { type: ['object', 'array', 'string', 'number', 'boolean', 'null'] } })
const BatchSize = Type.Integer({ minimum: 1, maximum: 10_000 })
const SpecSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$' }),
    source: Type.Object({ read: Fn, get: Type.Optional(Fn) }),
    target: Type.Object({ get: Fn, read: Type.Optional(Fn) }),
    key: Fn,
    compare: Type.Optional(Fn),
    repair: Type.Optional(Type.Object({ missing: Type.Optional(Fn), extra: Type.Optional(Fn), different: Type.Optional(Fn) }, { additionalProperties: false })),
    batchSize: Type.Optional(BatchSize),
    description: Type.Optional(Type.String()),
    close: Type.Optional(Fn),
  },
  { additionalProperties: false },
)

/**
 * Validates a definition (LL_OPTIONS_INVALID naming the option path) and returns it frozen. The extra pass
 * needs `target.read` and `source.get` together.
 */
export function defineReconciliation<K, S, T>(spec: ReconciliationSpec<K, S, T>): Reconciliation<K, S, T> {
  // source and target may be class instances carrying a client: validate only their methods (own or inherited).
  const methods = (side: unknown, names: string[]) =>
    typeof side === 'object' && side !== null ? Object.fromEntries(names.flatMap((n) => ((side as Record<string, unknown>)[n] === undefined ? [] : [[n, (side as Record<string, unknown>)[n]]]))) : side
  validateOptions(SpecSchema, { ...spec, source: methods(spec?.source, ['read', 'get']), target: methods(spec?.target, ['get', 'read']), ...(spec?.repair ? { repair: { ...spec.repair } } : {}) }, 'reconciliation')
  const functions: Array<[string, unknown, boolean]> = [
    ['source.read', spec.source.read, true], ['source.get', spec.source.get, false], ['target.get', spec.target.get, true], ['target.read', spec.target.read, false],
    ['key', spec.key, true], ['compare', spec.compare, false], ['repair.missing', spec.repair?.missing, false], ['repair.extra', spec.repair?.extra, false],
    ['repair.different', spec.repair?.different, false], ['close', spec.close, false],
  ]
  for (const [path, value, required] of functions) {
    if ((required || value !== undefined) && typeof value !== 'function') {
      throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: reconciliation.${path}: must be a function`, { details: { path: `reconciliation.${path}` } })
    }
  }
  if ((spec.target.read === undefined) !== (spec.source.get === undefined)) {
    throw new LifelineError('LL_OPTIONS_INVALID', `reconciliation ${spec.name}: the extra pass needs both target.read and source.get (got only ${spec.target.read ? 'target.read' : 'source.get'})`, {
      details: { path: spec.target.read ? 'reconciliation.source.get' : 'reconciliation.target.read' },
    })
  }
  return Object.freeze({ ...spec, batchSize: spec.batchSize ?? reconcileDefaults.batchSize, extraPass: spec.target.read !== undefined, [BRAND]: true as const })
}

/** True for a definition made by {@link defineReconciliation} (in any copy of this module). */
export function isReconciliation(value: unknown): value is AnyReconciliation {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true
}

/**
 * The default compare: `'equal'` when deep-equal; else, for two objects, the fields that differ
 * (`{ fields: ['price'] }`), only among `fields` when given; else `'values differ'`.
 */
export function diffFields(source: unknown, target: unknown, fields?: readonly string[]): ReconcileDifference | 'equal' {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (fields === undefined && isDeepStrictEqual(source, target)) return 'equal'
  if (!isObject(source) || !isObject(target)) return isDeepStrictEqual(source, target) ? 'equal' : 'values differ'
  const names = fields ?? [...new Set([...Object.keys(source), ...Object.keys(target)])].sort()
  const differing = names.filter((f) => !isDeepStrictEqual(source[f], target[f]))
  return differing.length === 0 ? 'equal' : { fields: differing }
}

// ---- Registry ---------------------------------------------------------------------------------------

const registered = new Map<string, AnyReconciliation>()

/** Registers definitions by name (the CLI and schedulers look them up); the same name twice is refused unless it is the same definition. */
export function registerReconciliation(...defs: AnyReconciliation[]): void {
  for (const def of defs) {
    if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'registerReconciliation takes definitions made by defineReconciliation()')
    const known = registered.get(def.name)
    if (known !== undefined && known !== def) throw new LifelineError('LL_ARGUMENT_INVALID', `a different reconciliation named ${def.name} is already registered`, { details: { name: def.name } })
    registered.set(def.name, def)
  }
}

export function unregisterReconciliation(name: string): boolean {
  return registered.delete(name)
}

/** The registered definitions, by name. */
export function listReconciliations(): AnyReconciliation[] {
  return [...registered.values()].sort((a, b) => a.name.localeCompare(b.name))
}

/** The definition named `name` among `known` (default: the registered ones); LL_RECONCILE listing the known names when there is none. */
export function getReconciliation(name: string, known: readonly AnyReconciliation[] = listReconciliations()): AnyReconciliation {
  const def = known.find((d) => d.name === name)
  if (def !== undefined) return def
  const names = known.map((d) => d.name).sort()
  throw new LifelineError('LL_RECONCILE', `unknown reconciliation ${JSON.stringify(name)}; known: ${names.length === 0 ? '(none)' : names.join(', ')}`, { details: { name, known: names } })
}

// ---- Records -----------------------------------------------------------------------------------------

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
function ensureSchema(db: SqlExecutor): Promise<unknown> {
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

// ---- Metrics -----------------------------------------------------------------------------------------

interface ReconcileMetrics {
  found(name: string, kind: ReconcileKind, n: number): void
  repaired(name: string, kind: ReconcileKind, n: number): void
  repairFailed(name: string, kind: ReconcileKind, n: number): void
  finished(name: string, status: ReconcileStatus): void
}

const metricsByRegistry = new WeakMap<Registry, ReconcileMetrics>()

/** Metrics in a registry the caller passes (never the global one); a metric already registered under the name is reused. */
function reconcileMetrics(registry: Registry | undefined): ReconcileMetrics | undefined {
  if (registry === undefined) return undefined
  const cached = metricsByRegistry.get(registry)
  if (cached !== undefined) return cached
  const registers = [registry]
  const counter = (name: string, help: string, labelNames: string[]) => metric(registry, name, () => new Counter({ name, help, labelNames, registers }))
  const found = counter('lifeline_reconcile_mismatches_total', 'Findings recorded by reconciliation runs (each run counts the drift it finds), by kind.', ['name', 'kind'])
  const repaired = counter('lifeline_reconcile_repaired_total', 'Findings repaired by reconciliation runs, by kind.', ['name', 'kind'])
  const failed = counter('lifeline_reconcile_repair_failures_total', 'Repair attempts that failed, by kind.', ['name', 'kind'])
  const runs = counter('lifeline_reconcile_runs_total', 'Reconciliation runs that ended, by status (completed, failed, aborted).', ['name', 'status'])
  const last = metric(registry, 'lifeline_reconcile_last_run_timestamp_seconds', () => new Gauge({ name: 'lifeline_reconcile_last_run_timestamp_seconds', help: 'Unix time the last completed run of a reconciliation finished.', labelNames: ['name'], registers }))
  const made: ReconcileMetrics = {
    found: (name, kind, n) => found.inc({ name, kind }, n),
    repaired: (name, kind, n) => repaired.inc({ name, kind }, n),
    repairFailed: (name, kind, n) => failed.inc({ name, kind }, n),
    finished: (name, status) => {
      runs.inc({ name, status })
      if (status === 'completed') last.set({ name }, Date.now() / 1000)
    },
  }
  metricsByRegistry.set(registry, made)
  return made
}

// ---- Runs --------------------------------------------------------------------------------------------

export interface RunReconciliationOptions {
  /** Where runs and findings are recorded (Lifeline's migrations are applied to it first). */
  db: SqlExecutor
  /** Repair what is found. Default false (a dry run); when resuming, the resumed run's own setting (a different one is refused). */
  repair?: boolean
  /** Continue the name's latest run when it did not complete (failed, aborted, or its process died); else start a new one. Default false. */
  resume?: boolean
  /** Rows per batch, 1 to 10 000. Default: the definition's. */
  batchSize?: number
  /** A run whose heartbeat (every staleAfterMs / 4) is older than this is presumed dead: it may be resumed or replaced. Default 60 000. */
  staleAfterMs?: number
  signal?: AbortSignal
  /** prom-client registry for the `lifeline_reconcile_*` metrics. Default: none. */
  registry?: Registry
  /** Parent logger. Default: silent. */
  logger?: Logger
}

export interface ReconcileRunResult extends ReconcileRun {
  /** True when this call continued an earlier run. */
  resumed: boolean
}

const RunOptionsSchema = Type.Object(
  {
    db: Type.Unsafe<SqlExecutor>(Type.Object({ query: Fn, transaction: Fn })),
    repair: Type.Optional(Type.Boolean()),
    resume: Type.Optional(Type.Boolean()),
    batchSize: Type.Optional(BatchSize),
    staleAfterMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    signal: Type.Optional(Type.Unsafe<AbortSignal>({})),
    registry: Type.Optional(Type.Unsafe<Registry>({})),
    logger: Type.Optional(Type.Unsafe<Logger>({})),
  },
  { additionalProperties: false },
)

function lockKey(name: string): string {
  return createHash('sha256').update(`lifeline:reconcile:${name}`).digest().readBigInt64BE(0).toString()
}

const describeError = (err: unknown): string => (isLifelineError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err))

/** JSON for a jsonb column: bigints as strings, values that cannot be serialised as a note. */
function toJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null')
  } catch (err) {
    return { unserializable: describeError(err) }
  }
}

/** Starts a new run or takes over the latest unfinished one, under a per-name lock so two processes never run one name at once. */
async function claimRun(db: SqlExecutor, name: string, want: { repair: boolean | undefined; resume: false | 'strict' | 'compatible'; batchSize: number; staleAfterMs: number }): Promise<ReconcileRunResult> {
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

interface Finding { kind: ReconcileKind; keyText: string; key: unknown; source?: unknown; target?: unknown; diff?: ReconcileDifference }
interface Outcome { repaired: boolean; repairError: string | null }
type Before = { repaired: boolean; failed: boolean } | undefined

/** A reader's batch, checked, with each key once (a Redis SCAN may return a key twice). */
function readBatch(batch: unknown, cursor: string | null, def: AnyReconciliation, reader: string): { rows: Map<string, { key: unknown; value: unknown }>; next: string | null } {
  const b = batch as ReconcileBatch<unknown, unknown> | undefined
  if (typeof b !== 'object' || b === null || !Array.isArray(b.rows) || !(b.next === null || typeof b.next === 'string')) {
    throw new LifelineError('LL_RECONCILE', `${reader} must resolve to { rows: [{ key, value }], next: string | null }`)
  }
  if (b.next !== null && b.next === cursor) throw new LifelineError('LL_RECONCILE', `${reader} returned its own cursor ${JSON.stringify(cursor)} as next: it would never finish`)
  const rows = new Map<string, { key: unknown; value: unknown }>()
  for (const row of b.rows) {
    const text = def.key(row.key)
    if (typeof text !== 'string') throw new LifelineError('LL_RECONCILE', `key() must return a string, got ${typeof text}`)
    if (!rows.has(text)) rows.set(text, row)
  }
  return { rows, next: b.next }
}

function lookupResult(found: unknown, what: string): ReadonlyMap<string, unknown> {
  if (!(found instanceof Map)) throw new LifelineError('LL_RECONCILE', `${what} must resolve to a Map keyed by key()`)
  return found
}

/** Runs one pass's batch: read, look up, compare. */
async function detect(def: AnyReconciliation, phase: ReconcilePhase, cursor: string | null, limit: number, ctx: ReconcileContext): Promise<{ findings: Finding[]; checked: number; next: string | null }> {
  const reader = phase === 'source' ? 'source.read' : 'target.read'
  const batch = phase === 'source' ? await def.source.read(cursor, limit, ctx) : await def.target.read!(cursor, limit, ctx)
  const { rows, next } = readBatch(batch, cursor, def, reader)
  const keys = [...rows.values()].map((r) => r.key)
  const lookup = async () => (phase === 'source' ? def.target.get(keys, ctx) : def.source.get!(keys, ctx))
  const other = keys.length === 0 ? new Map<string, unknown>() : lookupResult(await lookup(), phase === 'source' ? 'target.get' : 'source.get')
  const findings: Finding[] = []
  for (const [keyText, row] of rows) {
    const value = other.get(keyText)
    if (phase === 'target') {
      if (value === undefined || value === null) findings.push({ kind: 'extra', keyText, key: row.key, target: row.value })
      continue
    }
    if (value === undefined || value === null) {
      findings.push({ kind: 'missing', keyText, key: row.key, source: row.value })
      continue
    }
    let diff: ReconcileDifference | 'equal'
    try {
      diff = def.compare ? def.compare(row.value, value, row.key) : diffFields(row.value, value)
    } catch (err) {
      diff = { compareError: describeError(err) }
    }
    if (diff !== 'equal') findings.push({ kind: 'different', keyText, key: row.key, source: row.value, target: value, diff })
  }
  return { findings, checked: phase === 'source' ? rows.size : findings.length, next }
}

/** Repairs one finding with its kind's repair; its failure is the finding's outcome, not the run's. */
async function repairOne(def: AnyReconciliation, f: Finding, ctx: ReconcileContext): Promise<Outcome> {
  const handler = def.repair?.[f.kind]
  if (handler === undefined) return { repaired: false, repairError: null }
  try {
    if (f.kind === 'missing') await def.repair!.missing!({ key: f.key, keyText: f.keyText, source: f.source }, ctx)
    else if (f.kind === 'extra') await def.repair!.extra!({ key: f.key, keyText: f.keyText, target: f.target }, ctx)
    else await def.repair!.different!({ key: f.key, keyText: f.keyText, source: f.source, target: f.target, diff: f.diff! }, ctx)
    return { repaired: true, repairError: null }
  } catch (err) {
    ctx.logger.warn({ err, kind: f.kind, key: f.keyText }, 'repair failed; recorded on the finding, the run goes on')
    return { repaired: false, repairError: describeError(err) }
  }
}

/** Records a batch's findings and moves the run's cursor, in one transaction; returns the count changes. */
async function recordBatch(db: SqlExecutor, run: ReconcileRun, step: { findings: Finding[]; outcomes: Outcome[]; before: Before[]; checked: number; phase: ReconcilePhase; cursor: string | null; complete: boolean }) {
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

/**
 * Runs (or with `resume`, continues) a reconciliation and returns the completed run. Refuses with
 * LL_RECONCILE (retriable) while another live run of the name exists. A read, lookup or recording
 * failure records the run `failed` and throws LL_RECONCILE (details.runId); a cancelled run is recorded
 * `aborted` and throws LL_ABORTED. Both can be resumed.
 */
export function runReconciliation(def: AnyReconciliation, options: RunReconciliationOptions): Promise<ReconcileRunResult> {
  return execute(def, options, 'strict')
}

/** `resume: 'compatible'` (schedules): an unfinished run of the other repair mode is replaced, not refused. */
async function execute(def: AnyReconciliation, options: RunReconciliationOptions, resumeMode: 'strict' | 'compatible'): Promise<ReconcileRunResult> {
  if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'runReconciliation takes a definition made by defineReconciliation()')
  const o = validateOptions(RunOptionsSchema, options, 'options')
  const { db, signal = new AbortController().signal } = o
  const log = (o.logger ?? silentLogger()).child({ component: 'reconcile', reconciliation: def.name })
  const metrics = reconcileMetrics(o.registry)
  const staleAfterMs = o.staleAfterMs ?? reconcileDefaults.staleAfterMs
  const batchSize = o.batchSize ?? def.batchSize
  if (signal.aborted) throw new LifelineError('LL_ABORTED', `reconciliation ${def.name} was aborted before it started`)
  await ensureSchema(db)
  const claimed = await claimRun(db, def.name, { repair: o.repair, resume: o.resume === true ? resumeMode : false, batchSize, staleAfterMs })
  const { resumed } = claimed
  let run: ReconcileRun = claimed
  // `attempts` fences this process's writes: once another process resumes the run, they match nothing.
  const fence = run.attempts
  const ctx: ReconcileContext = Object.freeze({ name: def.name, runId: run.id, repair: run.repair, db, signal, logger: log.child({ runId: run.id }) })
  ctx.logger.info({ resumed, repair: run.repair, phase: run.phase, cursor: run.cursor }, resumed ? 'reconciliation resumed' : 'reconciliation started')
  // The heartbeat tells other processes this run is alive however long one batch takes; unref: it never holds the process open.
  const heartbeat = setInterval(() => {
    db.query(`update lifeline_reconcile_runs set heartbeat_at = now() where id = $1 and status = 'running' and attempts = $2`, [run.id, fence]).catch((err: unknown) => ctx.logger.warn({ err }, 'reconciliation heartbeat failed'))
  }, Math.max(250, Math.floor(staleAfterMs / 4)))
  heartbeat.unref()
  try {
    for (;;) {
      if (signal.aborted) throw new LifelineError('LL_ABORTED', 'aborted')
      const { phase, cursor } = run
      const { findings, checked, next } = await detect(def, phase, cursor, batchSize, ctx)
      let before: Before[] = findings.map(() => undefined)
      if (findings.length > 0) {
        // Findings an earlier batch of this run recorded (a key read twice, or a batch redone after an interruption).
        const { rows } = await db.query(
          `select f.kind, f.key, f.repaired, f.repair_error is not null as failed
             from jsonb_to_recordset($2::jsonb) as q(kind text, key text)
             join lifeline_reconcile_findings f on f.run_id = $1 and f.kind = q.kind and f.key = q.key`,
          [run.id, JSON.stringify(findings.map((f) => ({ kind: f.kind, key: f.keyText })))],
        )
        const seen = new Map(rows.map((r) => [`${String(r.kind)}\u0000${String(r.key)}`, { repaired: r.repaired === true, failed: r.failed === true }]))
        before = findings.map((f) => seen.get(`${f.kind}\u0000${f.keyText}`))
      }
      const outcomes: Outcome[] = []
      for (const [i, f] of findings.entries()) {
        if (run.repair && signal.aborted) throw new LifelineError('LL_ABORTED', 'aborted')
        outcomes.push(run.repair && before[i]?.repaired !== true ? await repairOne(def, f, ctx) : { repaired: before[i]?.repaired === true, repairError: null })
      }
      const nextPhase: ReconcilePhase = next === null && phase === 'source' && def.extraPass ? 'target' : phase
      const complete = next === null && nextPhase === phase
      const recorded = await recordBatch(db, run, { findings, outcomes, before, checked, phase: nextPhase, cursor: next, complete })
      run = recorded.run
      for (const [kind, n] of recorded.byKind.found) metrics?.found(def.name, kind, n)
      for (const [kind, n] of recorded.byKind.repaired) metrics?.repaired(def.name, kind, n)
      for (const [kind, n] of recorded.byKind.failed) metrics?.repairFailed(def.name, kind, n)
      if (complete) break
    }
  } catch (err) {
    const aborted = signal.aborted || (isLifelineError(err) && err.code === 'LL_ABORTED')
    const where = `the ${run.phase} pass${run.cursor === null ? '' : ` at cursor ${JSON.stringify(run.cursor)}`}`
    const failure = aborted
      ? new LifelineError('LL_ABORTED', `reconciliation ${def.name} run ${run.id} was aborted in ${where}; resume it with resume: true`, { cause: err, details: { name: def.name, runId: run.id } })
      : new LifelineError('LL_RECONCILE', `reconciliation ${def.name} run ${run.id} failed in ${where}: ${isLifelineError(err, 'LL_RECONCILE') ? err.message : describeError(err)}; resume it with resume: true`, {
          cause: err, details: { name: def.name, runId: run.id, phase: run.phase, cursor: run.cursor },
        })
    const status: ReconcileStatus = aborted ? 'aborted' : 'failed'
    const code = isLifelineError(err) && !aborted ? err.code : failure.code
    await db
      .query(`update lifeline_reconcile_runs set status = $2, error_code = $3, error = $4, finished_at = now() where id = $1 and status = 'running' and attempts = $5`, [run.id, status, code, err instanceof Error ? err.message : String(err), fence])
      .catch((recordErr: unknown) => ctx.logger.error({ err: recordErr }, 'could not record the run as failed'))
    metrics?.finished(def.name, status)
    ctx.logger[aborted ? 'info' : 'error']({ err }, `reconciliation ${status}`)
    throw failure
  } finally {
    clearInterval(heartbeat)
  }
  metrics?.finished(def.name, 'completed')
  ctx.logger.info({ checked: run.checked, missing: run.missing, extra: run.extra, different: run.different, repaired: run.repaired }, 'reconciliation completed')
  return { ...run, resumed }
}

// ---- Schedule ----------------------------------------------------------------------------------------

export interface ScheduleReconciliationOptions extends Omit<RunReconciliationOptions, 'signal' | 'resume'> {
  /** Interval between runs of the name, milliseconds (at least 1000), counted from the end of its last completed run in the database: instances sharing the database take turns. */
  everyMs: number
  /** Continue an unfinished run instead of starting over. Default true. */
  resume?: boolean
  /** Called with each completed run. */
  onRun?: (run: ReconcileRunResult) => unknown
  /** Called when a run fails (default: logged at warn). Not called for a run skipped because another is live. */
  onError?: (err: unknown) => unknown
}

export interface ReconciliationSchedule extends AsyncDisposable {
  /** Stops the timer, aborts a run in progress (recorded `aborted`, resumable) and waits for it. Idempotent. */
  stop(): Promise<void>
}

/**
 * Runs `def` every `everyMs`, never two runs at once (in this process: runs are chained; across processes:
 * the per-name claim). Due when the name's last completed run finished `everyMs` ago or more, so
 * the first check happens at once and a restart does not cause an extra run.
 */
export function scheduleReconciliation(def: AnyReconciliation, options: ScheduleReconciliationOptions): ReconciliationSchedule {
  const { everyMs, onRun, onError, resume = true, ...run } = options
  if (!Number.isSafeInteger(everyMs) || everyMs < 1000) throw new LifelineError('LL_OPTIONS_INVALID', `options.everyMs must be an integer of at least 1000, got ${String(everyMs)}`, { details: { path: 'options.everyMs' } })
  if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'scheduleReconciliation takes a definition made by defineReconciliation()')
  validateOptions(RunOptionsSchema, { ...run }, 'options')
  const log = (run.logger ?? silentLogger()).child({ component: 'reconcile', reconciliation: def.name })
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let current: Promise<void> | undefined
  let stopping: Promise<void> | undefined

  /** Milliseconds until the name is due (0: now), from the database's clock. */
  const dueIn = async (): Promise<number> => {
    await ensureSchema(run.db)
    const { rows } = await run.db.query(
      `select extract(epoch from (max(finished_at) + make_interval(secs => $2::float8) - now())) * 1000 as wait from lifeline_reconcile_runs where name = $1 and status = 'completed'`,
      [def.name, everyMs / 1000],
    )
    return Math.max(0, Math.ceil(Number(rows[0]?.wait ?? 0)))
  }
  const tick = async (): Promise<number> => {
    try {
      const wait = await dueIn()
      if (wait > 0) return wait
      const result = await execute(def, { ...run, repair: run.repair ?? false, resume, signal: controller.signal }, 'compatible')
      await onRun?.(result)
      return everyMs
    } catch (err) {
      if (controller.signal.aborted) return everyMs
      if (isLifelineError(err, 'LL_RECONCILE') && err.details.reason === 'already-running') log.info({ err }, 'skipped: another run of this reconciliation is live')
      else if (onError) await Promise.resolve().then(() => onError(err)).catch((hookErr: unknown) => log.warn({ err: hookErr }, 'onError threw'))
      else log.warn({ err }, 'scheduled reconciliation failed')
      return everyMs
    }
  }
  const loop = (delay: number) => {
    timer = setTimeout(() => {
      timer = undefined
      current = tick().then((next) => {
        current = undefined
        if (!controller.signal.aborted) loop(next)
      })
    }, delay)
  }
  loop(0)
  const stop = () => {
    stopping ??= (async () => {
      controller.abort()
      if (timer !== undefined) clearTimeout(timer)
      await current
    })()
    return stopping
  }
  return { stop, [Symbol.asyncDispose]: stop }
}
