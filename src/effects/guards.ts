/**
 * Guards for effects under redelivery and reordering (seed 000): an optimistic version check
 * (`UPDATE ... WHERE version = n`) and a state machine whose transitions are fixed, so a late or duplicate
 * event (a `PAID` after `SHIPPED`) is not applied but recorded, with the reason, as an ignored event.
 *
 * Both run inside the inbox transaction (`EffectContext`); an event that is not applied is reported through
 * `context.ignore()` (a row in `lifeline_ignored_events`, listed by `lifeline ignored list`). Table and column
 * names are identifiers checked against a strict pattern and quoted; values are always parameters.
 *
 * @module
 * @example
 * const orders = defineStateMachine({
 *   entity: 'order', table: 'orders', idColumn: 'order_id', stateColumn: 'status', versionColumn: 'version',
 *   transitions: { CREATED: ['PAID', 'CANCELLED'], PAID: ['SHIPPED', 'CANCELLED'], SHIPPED: ['DELIVERED'] },
 * })
 * // in an inbox handler:
 * const result = await orders.transition(ctx, m.value.orderId, 'PAID', { amount: m.value.amount })
 */
import { LifelineError } from '../errors.js'
import type { SqlQueryable } from '../store/executor.js'
import type { EffectContext } from './inbox.js'
import { listLimit } from '../util/limit.js'

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/

/** A checked, quoted SQL identifier (`schema.table` allowed for tables). */
export function identifier(name: string, what: string, allowSchema = false): string {
  const parts = allowSchema ? name.split('.') : [name]
  if (parts.length > 2 || parts.some((p) => !IDENTIFIER.test(p))) {
    throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: ${what}: ${JSON.stringify(name)} is not a lower-case SQL identifier${allowSchema ? ' (or schema.name)' : ''}`)
  }
  return parts.map((p) => `"${p}"`).join('.')
}

/** The result of a guarded write. */
export type GuardResult = { applied: true; version?: number } | { applied: false; reason: string; current?: string | number | null }

export interface VersionedUpdate {
  table: string
  idColumn: string
  id: unknown
  versionColumn?: string
  /** The version the event was based on: the update applies only if the row still has it. */
  expectedVersion: number
  /** Columns to set (names are checked identifiers, values parameters). */
  set: Record<string, unknown>
}

/**
 * `UPDATE table SET ..., version = version + 1 WHERE id = $id AND version = $expected`. Zero rows is not a
 * failure: the event is stale (or the row is missing); it is recorded through `context.ignore` with the
 * reason and the current version, and `{ applied: false }` comes back.
 */
export async function versionedUpdate(context: Pick<EffectContext, 'tx' | 'ignore'>, update: VersionedUpdate, entity = update.table): Promise<GuardResult> {
  const table = identifier(update.table, 'versionedUpdate.table', true)
  const idColumn = identifier(update.idColumn, 'versionedUpdate.idColumn')
  const versionColumn = identifier(update.versionColumn ?? 'version', 'versionedUpdate.versionColumn')
  const columns = Object.keys(update.set)
  const assignments = columns.map((c, i) => `${identifier(c, `versionedUpdate.set.${c}`)} = $${i + 3}`)
  const sql = `update ${table} set ${[...assignments, `${versionColumn} = ${versionColumn} + 1`].join(', ')} where ${idColumn} = $1 and ${versionColumn} = $2 returning ${versionColumn} as version`
  const { rows } = await context.tx.query<{ version: number }>(sql, [update.id, update.expectedVersion, ...columns.map((c) => update.set[c])])
  if (rows.length > 0) return { applied: true, version: Number(rows[0]!.version) }
  const current = await context.tx.query<{ version: number }>(`select ${versionColumn} as version from ${table} where ${idColumn} = $1`, [update.id])
  const found = current.rows[0]
  const reason = found ? `stale version: expected ${update.expectedVersion}, the row is at ${Number(found.version)}` : 'not found'
  await context.ignore(reason, { entity, entityId: String(update.id), expectedVersion: update.expectedVersion, currentVersion: found ? Number(found.version) : null })
  return { applied: false, reason, current: found ? Number(found.version) : null }
}

export interface StateMachineDefinition<S extends string> {
  /** The entity's name in ignored-event rows, e.g. `order`. */
  entity: string
  table: string
  idColumn: string
  stateColumn: string
  /** Bumped on every applied transition when set. */
  versionColumn?: string
  /** Allowed transitions: `{ from: [to, ...] }`. A state with no entry is final. */
  transitions: Partial<Record<S, readonly S[]>>
  /** States an entity may be created in by `transition` when its row does not exist (default: none: a missing row is ignored). */
  initial?: readonly S[]
}

export interface StateMachine<S extends string> {
  readonly entity: string
  /** Whether `from → to` is allowed. */
  can(from: S, to: S): boolean
  /** The states from which `to` may be entered. */
  sources(to: S): S[]
  /**
   * Moves entity `id` to `to` if allowed from its current state (one guarded `UPDATE ... WHERE state = ANY(...)`),
   * also setting `set`'s columns; creates it when it does not exist and `to` is an initial state. Otherwise
   * records an ignored event (`transition SHIPPED → PAID not allowed`, `unknown state`, `not found`) and
   * returns `{ applied: false }`.
   */
  transition(context: Pick<EffectContext, 'tx' | 'ignore'>, id: string | number, to: S, set?: Record<string, unknown>): Promise<GuardResult>
}

export function defineStateMachine<S extends string>(definition: StateMachineDefinition<S>): StateMachine<S> {
  const table = identifier(definition.table, 'stateMachine.table', true)
  const idColumn = identifier(definition.idColumn, 'stateMachine.idColumn')
  const stateColumn = identifier(definition.stateColumn, 'stateMachine.stateColumn')
  const versionColumn = definition.versionColumn === undefined ? undefined : identifier(definition.versionColumn, 'stateMachine.versionColumn')
  const edges = new Map<string, Set<string>>()
  for (const [from, tos] of Object.entries(definition.transitions) as Array<[string, readonly string[] | undefined]>) {
    edges.set(from, new Set(tos ?? []))
  }
  const states = new Set<string>([...edges.keys(), ...[...edges.values()].flatMap((t) => [...t]), ...(definition.initial ?? [])])
  const initial = new Set<string>(definition.initial ?? [])
  const can = (from: S, to: S) => edges.get(from)?.has(to) === true
  const sources = (to: S) => [...edges].filter(([, tos]) => tos.has(to)).map(([from]) => from as S)

  async function transition(context: Pick<EffectContext, 'tx' | 'ignore'>, id: string | number, to: S, set: Record<string, unknown> = {}): Promise<GuardResult> {
    const entityId = String(id)
    if (!states.has(to)) {
      const reason = `unknown state ${JSON.stringify(to)}`
      await context.ignore(reason, { entity: definition.entity, entityId, to })
      return { applied: false, reason }
    }
    const columns = Object.keys(set)
    const extra = columns.map((c, i) => `${identifier(c, `transition.set.${c}`)} = $${i + 4}`)
    const bump = versionColumn ? [`${versionColumn} = ${versionColumn} + 1`] : []
    const from = sources(to)
    const { rows, rowCount } = await context.tx.query<{ version?: number }>(
      `update ${table} set ${[`${stateColumn} = $2`, ...extra, ...bump].join(', ')} where ${idColumn} = $1 and ${stateColumn} = any($3::text[])${versionColumn ? ` returning ${versionColumn} as version` : ''}`,
      [id, to, from, ...columns.map((c) => set[c])],
    )
    if (rowCount > 0) return { applied: true, ...(versionColumn ? { version: Number(rows[0]!.version) } : {}) }
    const current = await context.tx.query<{ state: string }>(`select ${stateColumn} as state from ${table} where ${idColumn} = $1`, [id])
    const found = current.rows[0]
    if (!found && initial.has(to)) {
      const insertColumns = [idColumn, stateColumn, ...columns.map((c) => identifier(c, `transition.set.${c}`)), ...(versionColumn ? [versionColumn] : [])]
      const values = [id, to, ...columns.map((c) => set[c]), ...(versionColumn ? [0] : [])]
      await context.tx.query(`insert into ${table} (${insertColumns.join(', ')}) values (${insertColumns.map((_, i) => `$${i + 1}`).join(', ')})`, values)
      return { applied: true, ...(versionColumn ? { version: 0 } : {}) }
    }
    const reason = found ? (found.state === to ? `duplicate: already ${to}` : `transition ${found.state} → ${to} not allowed`) : `not found (${to} cannot create it)`
    await context.ignore(reason, { entity: definition.entity, entityId, from: found?.state ?? null, to })
    return { applied: false, reason, current: found?.state ?? null }
  }

  return { entity: definition.entity, can, sources, transition }
}

/** Lists ignored events (newest first), for operators (`lifeline ignored list`). */
export async function listIgnoredEvents(
  db: SqlQueryable,
  filter: { consumer?: string; entity?: string; entityId?: string; limit?: number } = {},
): Promise<Array<{ id: string; consumer: string; eventId: string | null; topic: string; partition: number; offset: number; entity: string | null; entityId: string | null; reason: string; detail: Record<string, unknown>; at: Date }>> {
  const limit = listLimit(filter.limit)
  const { rows } = await db.query(
    `select id, consumer, event_id, topic, partition, "offset", entity, entity_id, reason, detail, at from lifeline_ignored_events
     where ($1::text is null or consumer = $1) and ($2::text is null or entity = $2) and ($3::text is null or entity_id = $3)
     order by id desc limit $4`,
    [filter.consumer ?? null, filter.entity ?? null, filter.entityId ?? null, limit],
  )
  return rows.map((r) => ({
    id: String(r.id),
    consumer: r.consumer as string,
    eventId: (r.event_id as string | null) ?? null,
    topic: r.topic as string,
    partition: Number(r.partition),
    offset: Number(r.offset),
    entity: (r.entity as string | null) ?? null,
    entityId: (r.entity_id as string | null) ?? null,
    reason: r.reason as string,
    detail: r.detail as Record<string, unknown>,
    at: r.at as Date,
  }))
}
