/**
 * A reconciliation's definition: the types a user writes against, the defaults, the option schemas of a
 * definition and of a run, and the default compare ({@link diffFields}). Pure: no I/O.
 *
 * @module
 */
import { isDeepStrictEqual } from 'node:util'
import type { Registry } from 'prom-client'
import Type from 'typebox'
import { LifelineError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { SqlExecutor } from '../../store/executor.js'
import { validateOptions } from '../../util/options.js'

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

/** The schema of {@link RunReconciliationOptions} (a schedule's run options too). */
export const RunOptionsSchema = Type.Object(
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
