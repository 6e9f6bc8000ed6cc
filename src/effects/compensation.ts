/**
 * Final-failure handling (seed 003): when a record is dead-lettered, write a failure record (status
 * PENDING / RESOLVED / IGNORED, reason, resolved by/at) and run compensations (e.g. give back the stock a
 * Redis script took), each retried with backoff and every attempt recorded on the failure record.
 *
 * `compensateOnFailure(...)` returns a function for the consumer's `onDeadLetter` hook. It is idempotent:
 * the failure record is unique per (consumer, topic, partition, offset), and a compensation that already
 * succeeded for it is never run again — when the hook runs again (the runtime retries a throwing hook, or a
 * crash re-delivers the record), only the compensations still owed run.
 *
 * @module
 * @example
 * const consumer = createConsumer({
 *   ..., onDeadLetter: compensateOnFailure({ db, consumer: 'coupons', compensations: [
 *     { name: 'restore-stock', run: (m) => redis.incr(`stock:${m.value.couponId}`) },
 *   ] }),
 * })
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { LifelineError } from '../errors.js'
import type { Logger } from '../logger.js'
import { silentLogger } from '../logger.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import type { LifelineMessage } from '../runtime/options.js'
import { classifyError } from '../retry/classify.js'
import { listLimit } from '../util/limit.js'

export type FailureStatus = 'PENDING' | 'RESOLVED' | 'IGNORED'

export interface Compensation<V = unknown> {
  /** Unique within the list: how its attempts are recorded. */
  name: string
  run(message: LifelineMessage<V>, error: unknown): Promise<void> | void
}

export interface CompensationAttempt {
  at: string
  ok: boolean
  error?: string
}

export interface CompensationState {
  name: string
  status: 'pending' | 'done' | 'failed'
  attempts: CompensationAttempt[]
}

export interface FailureRecord {
  id: string
  consumer: string
  eventId: string | null
  topic: string
  partition: number
  offset: number
  key: Buffer | null
  errorCode: string
  errorMessage: string
  status: FailureStatus
  compensations: CompensationState[]
  reason: string | null
  resolvedBy: string | null
  resolvedAt: Date | null
  createdAt: Date
  updatedAt: Date
}

export interface CompensateOptions<V> {
  db: SqlExecutor
  /** The consumer's name on failure records (usually the group id). */
  consumer: string
  compensations: Array<Compensation<V>>
  /** Event id header (default `event-id`) or function, stored on the failure record. */
  eventId?: string | ((message: LifelineMessage<V>) => string | null | undefined)
  /** Attempts per compensation per hook run (default 5), backoff from `backoffMs` (default 200) doubling up to 10 s. */
  maxAttempts?: number
  backoffMs?: number
  logger?: Logger
}

const toFailure = (r: Record<string, unknown>): FailureRecord => ({
  id: String(r.id),
  consumer: r.consumer as string,
  eventId: (r.event_id as string | null) ?? null,
  topic: r.topic as string,
  partition: Number(r.partition),
  offset: Number(r.offset),
  key: (r.key as Buffer | null) ?? null,
  errorCode: r.error_code as string,
  errorMessage: r.error_message as string,
  status: r.status as FailureStatus,
  compensations: r.compensations as CompensationState[],
  reason: (r.reason as string | null) ?? null,
  resolvedBy: (r.resolved_by as string | null) ?? null,
  resolvedAt: (r.resolved_at as Date | null) ?? null,
  createdAt: r.created_at as Date,
  updatedAt: r.updated_at as Date,
})

/**
 * Writes (or finds) the failure record of a record, in `q` (a transaction or the executor): unique per
 * (consumer, topic, partition, offset). Returns it.
 */
export async function recordFailure(
  q: SqlQueryable,
  failure: { consumer: string; eventId?: string | null; topic: string; partition: number; offset: number; key: Buffer | null; errorCode: string; errorMessage: string; compensations?: string[] },
): Promise<FailureRecord> {
  const initial = JSON.stringify((failure.compensations ?? []).map((name) => ({ name, status: 'pending', attempts: [] })))
  await q.query(
    `insert into lifeline_failures (consumer, event_id, topic, partition, "offset", key, error_code, error_message, compensations)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (consumer, topic, partition, "offset") do nothing`,
    [failure.consumer, failure.eventId ?? null, failure.topic, failure.partition, failure.offset, failure.key, failure.errorCode, failure.errorMessage.slice(0, 4000), initial],
  )
  const { rows } = await q.query('select * from lifeline_failures where consumer = $1 and topic = $2 and partition = $3 and "offset" = $4', [failure.consumer, failure.topic, failure.partition, failure.offset])
  return toFailure(rows[0]!)
}

/** An `onDeadLetter` hook: failure record, then each compensation still owed, retried and recorded. */
export function compensateOnFailure<V = unknown>(options: CompensateOptions<V>): (message: LifelineMessage<V>, error: unknown) => Promise<void> {
  const names = options.compensations.map((c) => c.name)
  if (new Set(names).size !== names.length) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: compensations: names must be unique, got ${names.join(', ')}`)
  const maxAttempts = options.maxAttempts ?? 5
  if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: compensations.maxAttempts: must be an integer >= 1')
  const backoffMs = options.backoffMs ?? 200
  const log = (options.logger ?? silentLogger()).child({ component: 'compensation', consumer: options.consumer })
  const idOf = typeof options.eventId === 'function' ? options.eventId : (m: LifelineMessage<V>) => m.header((options.eventId as string | undefined) ?? 'event-id')

  return async (message, error) => {
    const c = classifyError(error)
    const failure = await options.db.transaction((tx) =>
      recordFailure(tx, { consumer: options.consumer, eventId: idOf(message) ?? null, topic: message.topic, partition: message.partition, offset: message.offset, key: message.key, errorCode: c.code, errorMessage: c.message, compensations: names }),
    )
    const owed: string[] = []
    for (const compensation of options.compensations) {
      const state = failure.compensations.find((s) => s.name === compensation.name)
      if (state?.status === 'done') continue
      let done = false
      for (let attempt = 1; attempt <= maxAttempts && !done; attempt++) {
        let entry: CompensationAttempt
        try {
          await compensation.run(message, error)
          entry = { at: new Date().toISOString(), ok: true }
          done = true
        } catch (err) {
          entry = { at: new Date().toISOString(), ok: false, error: err instanceof Error ? err.message : String(err) }
          log.warn({ err, compensation: compensation.name, attempt, failure: failure.id }, 'compensation failed')
        }
        await recordAttempt(options.db, failure.id, compensation.name, entry, done ? 'done' : attempt === maxAttempts ? 'failed' : 'pending')
        if (!done && attempt < maxAttempts) await sleep(Math.min(10_000, backoffMs * 2 ** (attempt - 1)))
      }
      if (!done) owed.push(compensation.name)
    }
    if (owed.length > 0) {
      throw new LifelineError('LL_COMPENSATION', `compensation(s) ${owed.join(', ')} failed ${maxAttempts} time(s) for failure ${failure.id} (${message.topic}[${message.partition}]@${message.offset}); recorded on the failure record`, { details: { failureId: failure.id, owed } })
    }
  }
}

/** Appends an attempt to one compensation's state on a failure record (one statement: no lost updates). */
async function recordAttempt(db: SqlQueryable, id: string, name: string, attempt: CompensationAttempt, status: CompensationState['status']): Promise<void> {
  await db.query(
    `update lifeline_failures set updated_at = now(), compensations = (
       select coalesce(jsonb_agg(case when c->>'name' = $2
         then jsonb_set(jsonb_set(c, '{status}', to_jsonb($4::text)), '{attempts}', coalesce(c->'attempts', '[]'::jsonb) || $3::jsonb)
         else c end order by ord), '[]'::jsonb)
       from jsonb_array_elements(compensations) with ordinality as t(c, ord))
     where id = $1`,
    [id, name, JSON.stringify([attempt]), status],
  )
}

/** Failure records, newest first (`lifeline failures list`). */
export async function listFailures(db: SqlQueryable, filter: { consumer?: string; status?: FailureStatus; limit?: number } = {}): Promise<FailureRecord[]> {
  const limit = listLimit(filter.limit)
  if (filter.status !== undefined && !['PENDING', 'RESOLVED', 'IGNORED'].includes(filter.status)) throw new LifelineError('LL_ARGUMENT_INVALID', `status must be PENDING, RESOLVED or IGNORED, got ${JSON.stringify(filter.status)}`)
  const { rows } = await db.query(
    'select * from lifeline_failures where ($1::text is null or consumer = $1) and ($2::text is null or status = $2) order by id desc limit $3',
    [filter.consumer ?? null, filter.status ?? null, limit],
  )
  return rows.map(toFailure)
}

/** Marks a PENDING failure RESOLVED or IGNORED with who and why (`lifeline failures resolve|ignore`). */
export async function settleFailure(db: SqlQueryable, id: string, settle: { status: 'RESOLVED' | 'IGNORED'; actor: string; reason: string }): Promise<FailureRecord> {
  if (!/^\d{1,18}$/.test(id)) throw new LifelineError('LL_ARGUMENT_INVALID', `a failure id is a positive integer, got ${JSON.stringify(id)}`)
  if (!settle.actor || !settle.reason) throw new LifelineError('LL_ARGUMENT_INVALID', 'settling a failure needs an actor and a reason')
  const { rows } = await db.query(
    "update lifeline_failures set status = $2, resolved_by = $3, reason = $4, resolved_at = now(), updated_at = now() where id = $1 and status = 'PENDING' returning *",
    [id, settle.status, settle.actor, settle.reason],
  )
  if (rows.length === 0) {
    const exists = await db.query('select status from lifeline_failures where id = $1', [id])
    throw new LifelineError('LL_NOT_FOUND', exists.rows.length === 0 ? `failure ${id} does not exist` : `failure ${id} is already ${exists.rows[0]!.status as string}`)
  }
  return toFailure(rows[0]!)
}
