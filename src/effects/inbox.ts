/**
 * The inbox: effects exactly once under at-least-once delivery. A handler wrapper that, in one database
 * transaction, claims the event id (`INSERT ... ON CONFLICT DO NOTHING` into `lifeline_inbox`), runs the
 * handler's writes through the same transaction, and commits. A redelivered or re-produced event finds its
 * id claimed: it is skipped and counted, and its effects are not applied again. If the handler throws,
 * the claim rolls back with the effects and the runtime retries the record as usual. With `statement`
 * the claim and an effect written as one SQL statement run as one autocommit statement per group instead.
 *
 * Optionally (`storeOffsets`) the consumed position is written in the same transaction, and the consumer
 * starts each assigned partition from it when it is ahead of the group's committed offset (see
 * {@link Inbox.startOffsets}): effects and progress can never disagree, and records already applied are not
 * even fetched again.
 *
 * @module
 * @example
 * const inbox = createInbox<Order>({
 *   db, consumer: 'orders',
 *   handler: async (m, { tx, ignore }) => {
 *     await tx.query('insert into payments (order_id, amount) values ($1, $2)', [m.value.id, m.value.amount])
 *   },
 * })
 * const consumer = createConsumer({ ..., handler: inbox.handler })
 */
import { isLifelineError, LifelineError } from '../errors.js'
import type { TopicPartition, TopicPartitionOffset } from '../kafka/types.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import type { Handler, LifelineMessage } from '../runtime/options.js'
import type { Registry } from 'prom-client'
import { Counter } from 'prom-client'
import { crashPoint } from '../util/crash-points.js'
import { metric } from '../util/metric.js'

/** What the wrapped handler gets besides the message. */
export interface EffectContext {
  /** The open transaction: run every write of the effect through it. */
  readonly tx: SqlQueryable
  /** The claimed event id. */
  readonly eventId: string
  /**
   * Records that this event was not applied and why (a transition not allowed from the current state, a
   * stale version): a row in `lifeline_ignored_events`, in this transaction. The event stays claimed.
   */
  ignore(reason: string, detail?: IgnoreDetail): Promise<void>
}

/** A claimed event handed to a `batchHandler`. */
export interface InboxEvent<V> {
  readonly message: LifelineMessage<V>
  readonly context: EffectContext
}

/** An event handed to a `statement` builder. */
export interface InboxStatementEvent<V> {
  readonly message: LifelineMessage<V>
  readonly eventId: string
}

/** The effect statement of a group (see {@link InboxOptions.statement}). */
export interface InboxStatement {
  /** An `INSERT`, `UPDATE` or `DELETE` that reads the claimed ids from `claimed(event_id)`, e.g. `... join claimed using (event_id)`. */
  text: string
  /** Its parameters, `$1` to `$n`; the inbox's own come after them. */
  values: unknown[]
}

export interface IgnoreDetail {
  /** The entity type, e.g. `order`. */
  entity?: string
  entityId?: string
  [key: string]: unknown
}

export interface InboxOptions<V> {
  db: SqlExecutor
  /** The inbox's namespace, usually the consumer group: event ids are unique per consumer. */
  consumer: string
  /**
   * Where the event id comes from: a header name (default `event-id`) or a function. A record without one
   * is identified by its source coordinates (`topic/partition/offset`): redeliveries are still caught, a
   * producer that sent the event twice is not. `missingId: 'reject'` dead-letters such records instead.
   */
  eventId?: string | ((message: LifelineMessage<V>) => string | null | undefined)
  missingId?: 'offset' | 'reject'
  /** The effect of one event, written through `context.tx`. Give this or `batchHandler`. */
  handler?: (message: LifelineMessage<V>, context: EffectContext) => Promise<void> | void
  /**
   * Instead of `handler`: the effects of every claimed event of a group commit at once (duplicates left out,
   * in the order they were handed over), so they can be written with one statement per table (a multi-row
   * `INSERT`) instead of one per event. Each event has its own context (`ignore` records that event). If it
   * throws, the group rolls back and each event runs again alone (a call with one event), so only the
   * failing one fails. With `batch.maxRecords: 1` it always gets one event.
   */
  batchHandler?: (events: ReadonlyArray<InboxEvent<V>>, context: { readonly tx: SqlQueryable }) => Promise<void> | void
  /**
   * Instead of `handler` or `batchHandler`: the effect of a group as **one SQL statement**, run with the claim
   * as one autocommit statement — one round trip per group instead of four (BEGIN, claim, effect, COMMIT).
   * Called with the group's events (an id given twice in a group only once; nothing is claimed yet), it
   * returns an `INSERT`, `UPDATE` or `DELETE` and its parameters (`$1`…), which must apply only the events in
   * the relation `claimed(event_id)`: the ids this statement claims, duplicates left out. The claim and the
   * effect commit or fail together; a group that fails runs each event alone, so only the failing one fails.
   * No `tx` and no `ignore` here: for guards use `handler` or `batchHandler`.
   */
  statement?: (events: ReadonlyArray<InboxStatementEvent<V>>) => InboxStatement
  /** Also store the consumed position in the transaction (use with `startOffsets`; needs `ordering: 'partition'`). */
  storeOffsets?: boolean
  /**
   * Group commit: records handed to the inbox in the same event-loop turn (the runtime starts up to
   * `concurrency` at once) share one transaction, up to `maxRecords`: one COMMIT (and one fsync) for many
   * events. Handlers of a batch run one after the other on its connection. If any of them throws, the whole
   * batch rolls back and every record of it runs again in a transaction of its own, so only the failing one
   * fails — handlers must therefore have no effects outside `tx` (the inbox's contract anyway). Default
   * `maxRecords` 16; 1 turns it off (a transaction per record).
   */
  batch?: { maxRecords: number }
  /** Prometheus registry for `lifeline_inbox_events_total{consumer,outcome}` (applied, duplicate, ignored). */
  metrics?: { registry: Registry }
}

export interface InboxStats {
  applied: number
  duplicates: number
  ignored: number
}

export interface Inbox<V> {
  /** The handler to give the consumer. */
  readonly handler: Handler<V>
  /**
   * The stored positions of these partitions (`storeOffsets`), for the consumer's `startOffsets` option:
   * a partition starts there when it is ahead of the group's committed offset.
   */
  startOffsets(partitions: TopicPartition[]): Promise<TopicPartitionOffset[]>
  /** Deletes claims older than `olderThanMs` (keep longer than any redelivery or replay can come back); returns the count. */
  cleanup(olderThanMs: number): Promise<number>
  stats(): InboxStats
}

const HEADER_DEFAULT = 'event-id'

export const inboxDefaults = { eventIdHeader: HEADER_DEFAULT, missingId: 'offset', batchMaxRecords: 16 } as const

/** Creates an inbox over `db` (migrate it first: `migrateLifeline(db)`, which the consumer does with `state`). */
export function createInbox<V = unknown>(options: InboxOptions<V>): Inbox<V> {
  if (!options.consumer) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: inbox.consumer: must be a non-empty string')
  const given = [options.handler, options.batchHandler, options.statement].filter((f) => f !== undefined)
  if (given.length !== 1 || typeof given[0] !== 'function') {
    throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: inbox.handler: give a handler, a batchHandler or a statement function${given.length > 1 ? ', only one of them' : ''}`)
  }
  const { db, consumer } = options
  const idOf = typeof options.eventId === 'function' ? options.eventId : (m: LifelineMessage<V>) => m.header((options.eventId as string | undefined) ?? HEADER_DEFAULT)
  const stats: InboxStats = { applied: 0, duplicates: 0, ignored: 0 }
  const registry = options.metrics?.registry
  const counter = registry
    ? metric(registry, 'lifeline_inbox_events_total', () => new Counter({ name: 'lifeline_inbox_events_total', help: 'Events through an inbox, by outcome: applied, duplicate (already claimed: skipped), ignored (claimed, not applied by a guard).', labelNames: ['consumer', 'outcome'], registers: [registry] }))
    : undefined
  const count = (outcome: keyof InboxStats, label: string) => {
    stats[outcome]++
    counter?.inc({ consumer, outcome: label })
  }

  function eventIdOf(m: LifelineMessage<V>): string {
    const id = idOf(m)
    if (typeof id === 'string' && id.length > 0) return id
    if (options.missingId === 'reject') {
      throw new LifelineError('LL_ARGUMENT_INVALID', `${m.topic}[${m.partition}]@${m.offset} has no event id (${typeof options.eventId === 'function' ? 'the eventId function returned none' : `header ${(options.eventId as string | undefined) ?? HEADER_DEFAULT}`}) and inbox.missingId is 'reject'`)
    }
    return `${m.topic}/${m.partition}/${m.offset}`
  }

  type Outcome = 'duplicate' | 'ignored' | 'applied'
  interface Claim {
    m: LifelineMessage<V>
    eventId: string
  }

  /** A statement and its parameters, numbered by the caller (`$p(1)`…), to run alone or inside a `WITH`. */
  interface Part {
    text: string
    values: unknown[]
  }

  /**
   * The claim of `claims` as one multi-row insert returning the ids it claimed (the first of an id twice);
   * `conflicts`: ids claimed already are skipped instead of failing the insert.
   */
  function claimInsert(claims: readonly Claim[], p: (i: number) => string, conflicts: boolean): Part {
    return {
      text: `insert into lifeline_inbox (consumer, event_id, topic, partition, "offset")
       select ${p(1)}, e, t, pa, o from unnest(${p(2)}::text[], ${p(3)}::text[], ${p(4)}::int[], ${p(5)}::int8[]) as x(e, t, pa, o)
       ${conflicts ? 'on conflict do nothing ' : ''}returning event_id`,
      values: [consumer, claims.map((c) => c.eventId), claims.map((c) => c.m.topic), claims.map((c) => c.m.partition), claims.map((c) => String(c.m.offset))],
    }
  }

  /** The stored positions of `ms` (`storeOffsets`): the next offset of each partition, never moving back (duplicates move it too). */
  function positionsUpsert(ms: readonly LifelineMessage<V>[], p: (i: number) => string): Part {
    const last = new Map<string, LifelineMessage<V>>()
    for (const m of ms) {
      const k = `${m.topic}\u0000${m.partition}`
      if ((last.get(k)?.offset ?? -1) < m.offset) last.set(k, m)
    }
    const next = [...last.values()]
    return {
      text: `insert into lifeline_consumer_offsets (consumer, topic, partition, next_offset)
       select ${p(1)}, t, pa, o from unnest(${p(2)}::text[], ${p(3)}::int[], ${p(4)}::int8[]) as x(t, pa, o)
       on conflict (consumer, topic, partition) do update set next_offset = greatest(lifeline_consumer_offsets.next_offset, excluded.next_offset), updated_at = now()`,
      values: [consumer, next.map((m) => m.topic), next.map((m) => m.partition), next.map((m) => String(m.offset + 1))],
    }
  }

  const numbered = (i: number): string => `$${i}`

  async function storePositions(tx: SqlQueryable, ms: readonly LifelineMessage<V>[]): Promise<void> {
    if (!options.storeOffsets) return
    const upsert = positionsUpsert(ms, numbered)
    await tx.query(upsert.text, upsert.values)
  }

  /** Claims `claims` in one statement; the event ids newly claimed (the first of an id twice in `claims`). */
  async function claim(tx: SqlQueryable, claims: readonly Claim[]): Promise<Set<string>> {
    if (claims.length === 1) {
      const [{ m, eventId }] = claims as [Claim]
      const { rowCount } = await tx.query('insert into lifeline_inbox (consumer, event_id, topic, partition, "offset") values ($1, $2, $3, $4, $5) on conflict do nothing', [consumer, eventId, m.topic, m.partition, m.offset])
      return new Set(rowCount === 0 ? [] : [eventId])
    }
    const insert = claimInsert(claims, numbered, true)
    const { rows } = await tx.query<{ event_id: string }>(insert.text, insert.values)
    return new Set(rows.map((r) => r.event_id))
  }

  /** Claims the events, runs the handler(s) of the claimed ones and stores the positions, all in `tx`; an outcome per claim. */
  async function applyIn(tx: SqlQueryable, claims: readonly Claim[]): Promise<Outcome[]> {
    const claimed = await claim(tx, claims)
    const ignored = new Set<Claim>()
    const contextOf = (c: Claim): EffectContext => ({
      tx,
      eventId: c.eventId,
      ignore: async (reason, detail = {}) => {
        ignored.add(c)
        const { entity, entityId, ...rest } = detail
        await tx.query(
          'insert into lifeline_ignored_events (consumer, event_id, topic, partition, "offset", entity, entity_id, reason, detail) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
          [consumer, c.eventId, c.m.topic, c.m.partition, c.m.offset, entity ?? null, entityId ?? null, reason, JSON.stringify(rest)],
        )
      },
    })
    // The same id twice in a group: the first one is the claim, the other a duplicate.
    const fresh = claims.filter((c) => claimed.delete(c.eventId))
    if (options.batchHandler) {
      if (fresh.length > 0) await options.batchHandler(fresh.map((c) => ({ message: c.m, context: contextOf(c) })), { tx })
    } else {
      for (const c of fresh) await options.handler!(c.m, contextOf(c))
    }
    await storePositions(tx, claims.map((c) => c.m))
    const applied = new Set(fresh)
    return claims.map((c) => (!applied.has(c) ? 'duplicate' : ignored.has(c) ? 'ignored' : 'applied'))
  }

  /**
   * `statement` mode: the claim, the stored positions and the effect as one autocommit statement (data-
   * modifying CTEs all run, in one snapshot; the effect reads the claim's RETURNING rows as `claimed`).
   */
  async function applyStatement(claims: readonly Claim[]): Promise<Outcome[]> {
    const unique = new Map<string, Claim>()
    for (const c of claims) if (!unique.has(c.eventId)) unique.set(c.eventId, c)
    const events = [...unique.values()]
    const effect = options.statement!(events.map((c) => ({ message: c.m, eventId: c.eventId })))
    if (effect === null || typeof effect !== 'object' || typeof effect.text !== 'string' || !Array.isArray(effect.values)) {
      throw new LifelineError('LL_ARGUMENT_INVALID', 'inbox.statement must return { text: string, values: unknown[] }')
    }
    let text = effect.text.trim()
    while (text.endsWith(';')) text = text.slice(0, -1).trimEnd() // one statement: a trailing ';' would end the WITH
    if (text.length === 0) throw new LifelineError('LL_ARGUMENT_INVALID', 'inbox.statement returned an empty statement')
    // Parameters: the effect's first, then the claim's, then the positions'.
    const after = (offset: number) => (i: number) => `$${offset + i}`
    const n = effect.values.length
    const plainClaim = claimInsert(events, after(n), false)
    const positions = options.storeOffsets ? positionsUpsert(claims.map((c) => c.m), after(n + plainClaim.values.length)) : undefined
    const values = [...effect.values, ...plainClaim.values, ...(positions?.values ?? [])]
    const run = (claim: Part) =>
      db.query<{ event_id: string }>(
        `with claimed as (${claim.text})${positions ? `, lifeline_positions as (${positions.text})` : ''},
         lifeline_effect as (${text})
         select event_id from claimed`,
        values,
      )
    // A plain insert claims faster than ON CONFLICT's speculative insertion, and duplicates are rare: the
    // statement is tried without it first, and again with it when an id of the group was claimed already.
    const { rows } = await run(plainClaim).catch((err: unknown) => {
      if (isLifelineError(err) && err.details.sqlState === '23505' && err.details.constraint === 'lifeline_inbox_pkey') return run(claimInsert(events, after(n), true))
      throw err
    })
    const claimed = new Set(rows.map((r) => r.event_id))
    const applied = new Set(events.filter((c) => claimed.has(c.eventId)))
    return claims.map((c) => (applied.has(c) ? 'applied' : 'duplicate'))
  }

  /** One group's (or one event's) claim and effects, committed: a transaction, or one statement. */
  const applyGroup = (claims: readonly Claim[]): Promise<Outcome[]> => (options.statement ? applyStatement(claims) : db.transaction((tx) => applyIn(tx, claims)))

  function counted(outcome: Outcome): void {
    if (outcome === 'duplicate') count('duplicates', 'duplicate')
    else if (outcome === 'ignored') count('ignored', 'ignored')
    else count('applied', 'applied')
  }

  const single = async (m: LifelineMessage<V>): Promise<void> => {
    const eventId = eventIdOf(m)
    const [outcome] = await applyGroup([{ m, eventId }])
    crashPoint('inbox.after-commit')
    counted(outcome!)
  }

  const maxBatch = options.batch?.maxRecords ?? inboxDefaults.batchMaxRecords
  if (!(Number.isInteger(maxBatch) && maxBatch >= 1 && maxBatch <= 10_000)) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: inbox.batch.maxRecords: must be an integer from 1 to 10000')
  interface Pending extends Claim {
    resolve(): void
    reject(err: unknown): void
  }
  let queue: Pending[] = []
  let scheduled = false

  function flush(): void {
    scheduled = false
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch)
      queue = queue.slice(maxBatch)
      void runBatch(batch)
    }
  }

  async function runBatch(batch: Pending[]): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch as [Pending]
      await single(only.m).then(only.resolve, only.reject)
      return
    }
    let outcomes: Outcome[]
    try {
      outcomes = await applyGroup(batch)
    } catch {
      // One of them failed (or the commit did): each runs alone, so only the failing one fails.
      await Promise.all(batch.map((p) => single(p.m).then(p.resolve, p.reject)))
      return
    }
    crashPoint('inbox.after-commit')
    outcomes.forEach(counted)
    for (const p of batch) p.resolve()
  }

  const handler: Handler<V> =
    maxBatch === 1
      ? single
      : (m) =>
          new Promise<void>((resolve, reject) => {
            let eventId: string
            try {
              eventId = eventIdOf(m)
            } catch (err) {
              reject(err)
              return
            }
            queue.push({ m, eventId, resolve, reject })
            if (queue.length >= maxBatch) flush()
            else if (!scheduled) {
              scheduled = true
              setImmediate(flush)
            }
          })

  return {
    handler,
    async startOffsets(partitions) {
      if (partitions.length === 0) return []
      const { rows } = await db.query('select topic, partition, next_offset from lifeline_consumer_offsets where consumer = $1', [consumer])
      const wanted = new Set(partitions.map((p) => `${p.topic}\u0000${p.partition}`))
      return rows.filter((r) => wanted.has(`${r.topic as string}\u0000${Number(r.partition)}`)).map((r) => ({ topic: r.topic as string, partition: Number(r.partition), offset: Number(r.next_offset) }))
    },
    async cleanup(olderThanMs) {
      if (!(Number.isInteger(olderThanMs) && olderThanMs >= 0)) throw new LifelineError('LL_ARGUMENT_INVALID', `cleanup(olderThanMs) needs an integer >= 0, got ${String(olderThanMs)}`)
      const { rowCount } = await db.query("delete from lifeline_inbox where consumer = $1 and processed_at < now() - ($2::bigint * interval '1 millisecond')", [consumer, olderThanMs])
      return rowCount
    },
    stats: () => ({ ...stats }),
  }
}
