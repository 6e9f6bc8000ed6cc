/**
 * The rehearsal's effects: the tables the harness creates in the run's fresh database, and `apply`, the
 * effect a consumer under rehearsal calls in its transaction. `apply` logs each invocation (start, then
 * returned or threw) to the member log before it returns, apart from the rows it writes; it writes the
 * effect *before* deciding to fail, so an attempt whose transaction does not roll back shows up as an
 * aborted effect.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import type { LifelineMessage } from '../runtime/options.js'
import { RetryHeaders } from '../failure/tier-record.js'
import type { SqlQueryable } from '../store/executor.js'
import type { MemberLog } from './member-log.js'
import type { EffectRow } from './history.js'
import type { RehearsalEvent } from './workload.js'

export const EFFECTS_SCHEMA: readonly string[] = [
  `create table if not exists rehearsal_effects (
    id bigserial primary key,
    event_id text not null,
    key text not null,
    seq int not null,
    inv text not null,
    member text not null,
    at timestamptz not null default clock_timestamp()
  )`,
  'create index if not exists rehearsal_effects_event on rehearsal_effects (event_id)',
  'create table if not exists rehearsal_state (key text primary key, seqs int[] not null)',
  'create table if not exists rehearsal_control (id int primary key, fixed boolean not null)',
  'insert into rehearsal_control (id, fixed) values (1, false) on conflict (id) do nothing',
]

/** Creates the effects tables (idempotent). */
export async function createEffectsTables(db: SqlQueryable): Promise<void> {
  for (const statement of EFFECTS_SCHEMA) await db.query(statement)
}

/** Thrown by `apply` for a poison event (retriable: it goes through the retry tiers to the DLQ). */
export class PoisonError extends Error {
  readonly code = 'E_REHEARSAL_POISON'
}
/** Thrown by `apply` on a transient event's first attempts. */
export class TransientError extends Error {
  readonly code = 'E_REHEARSAL_TRANSIENT'
}

export function createApply(member: string, log: MemberLog): (tx: SqlQueryable, message: LifelineMessage<RehearsalEvent>) => Promise<void> {
  return async (tx, m) => {
    const e = m.value
    const inv = randomUUID()
    const tier = m.header(RetryHeaders.tier)
    const base = { type: 'apply' as const, inv, eventId: e.id, key: e.key, seq: e.seq, topic: m.topic, partition: m.partition, offset: m.offset, attempt: m.attempt, ...(tier === undefined ? {} : { tier: Number(tier) }) }
    log.write({ ...base, phase: 'start' })
    try {
      await tx.query('insert into rehearsal_effects (event_id, key, seq, inv, member) values ($1, $2, $3, $4, $5)', [e.id, e.key, e.seq, inv, member])
      await tx.query('insert into rehearsal_state (key, seqs) values ($1, array[$2::int]) on conflict (key) do update set seqs = rehearsal_state.seqs || $2::int', [e.key, e.seq])
      if (e.kind === 'poison') {
        const { rows } = await tx.query<{ fixed: boolean }>('select fixed from rehearsal_control where id = 1')
        if (rows[0]?.fixed !== true) throw new PoisonError(`poison event ${e.id}: the cause is not fixed`)
      }
      if (e.kind === 'transient' && m.attempt <= e.fail) throw new TransientError(`transient failure of ${e.id} (attempt ${m.attempt} of ${e.fail} failing)`)
    } catch (err) {
      log.write({ ...base, phase: 'threw', error: (err as Error).message })
      throw err
    }
    log.write({ ...base, phase: 'returned' })
  }
}

/** Reads the effects table. */
export async function readEffects(db: SqlQueryable): Promise<EffectRow[]> {
  const { rows } = await db.query<{ event_id: string; key: string; seq: number; inv: string; member: string; at: string }>(
    'select event_id, key, seq, inv, member, (extract(epoch from at) * 1000)::float8 as at from rehearsal_effects order by id',
  )
  return rows.map((r) => ({ eventId: r.event_id, key: r.key, seq: Number(r.seq), inv: r.inv, member: r.member, at: Number(r.at) }))
}

/** Reads every key's applied sequences, in commit order. */
export async function readKeyState(db: SqlQueryable): Promise<Map<string, number[]>> {
  const { rows } = await db.query<{ key: string; seqs: number[] }>('select key, seqs from rehearsal_state')
  return new Map(rows.map((r) => [r.key, r.seqs.map(Number)]))
}
