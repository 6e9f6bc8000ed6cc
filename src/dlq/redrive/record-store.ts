/**
 * The redrive's SQL over one record at a time: reading records as the redrive sees them (`Source`) and
 * their earlier lives, and writing their events, replay rows and edits (`lifeline_dlq_events`,
 * `lifeline_dlq_replays`, `lifeline_dlq_edits`). Status changes go through `setStatus` (../records.ts).
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { ProduceAck } from '../../kafka/types.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../../store/executor.js'
import type { DeadLetterFormat } from '../../failure/formats.js'
import { loadHeaders, type DlqStatus } from '../records.js'
import type { Source } from './types.js'

export const SOURCE_COLUMNS = `r.id, r.topic, r.key, r.value, r.headers, r.format, r.origin_topic, r.origin_partition, r.origin_offset, r.origin_timestamp, r.consumer_group, r.service,
  r.error_class, r.error_code, r.error_message, r.error_stack, r.fingerprint, r.attempts, r.first_failure_at, r.last_failure_at, r.status, r.replay_count, r.replayed_before, r.previous_id, r.masked`

export const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
export const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v))

export function toSource(row: SqlRow): Source {
  return {
    id: String(row.id), topic: row.topic as string, key: (row.key as Buffer | null) ?? null, value: (row.value as Buffer | null) ?? null, headers: loadHeaders(row.headers),
    format: row.format as DeadLetterFormat, originTopic: str(row.origin_topic), originPartition: num(row.origin_partition), originOffset: num(row.origin_offset),
    originTimestamp: num(row.origin_timestamp), consumerGroup: str(row.consumer_group), service: str(row.service), errorClass: str(row.error_class), errorCode: str(row.error_code),
    errorMessage: str(row.error_message), errorStack: str(row.error_stack), fingerprint: str(row.fingerprint), attempts: num(row.attempts),
    firstFailureAt: (row.first_failure_at as Date | null) ?? null, lastFailureAt: (row.last_failure_at as Date | null) ?? null, status: row.status as DlqStatus,
    replayCount: Number(row.replay_count), replayedBefore: Number(row.replayed_before), previousId: str(row.previous_id), masked: row.masked === true,
  }
}

export async function loadSource(db: SqlQueryable, id: string): Promise<Source> {
  const { rows } = await db.query(`select ${SOURCE_COLUMNS} from lifeline_dlq_records r where r.id = $1`, [id])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${id} does not exist`, { details: { id } })
  return toSource(rows[0]!)
}

/** Earlier lives of each record (previous_id links), for the records that have one. */
export async function earlierLives(db: SqlQueryable, sources: readonly Source[]): Promise<Map<string, number>> {
  const linked = sources.filter((s) => s.previousId !== null).map((s) => s.id)
  const out = new Map<string, number>()
  if (linked.length === 0) return out
  const { rows } = await db.query(
    `with recursive lives(start, id, depth) as (
       select r.id, r.previous_id, 1 from lifeline_dlq_records r where r.id = any($1::int8[]) and r.previous_id is not null
       union all
       select l.start, r.previous_id, l.depth + 1 from lifeline_dlq_records r join lives l on r.id = l.id where r.previous_id is not null and l.depth < 1000
     )
     select start, max(depth) as depth from lives group by start`,
    [linked],
  )
  for (const row of rows) out.set(String(row.start), Number(row.depth))
  return out
}

export async function insertEvent(db: SqlQueryable, id: string, from: DlqStatus, to: DlqStatus, actor: string, reason: string, detail: Record<string, unknown>): Promise<void> {
  await db.query(`insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, $3, $4, $5, $6::jsonb)`, [id, from, to, actor, reason, JSON.stringify(detail)])
}

/** A single replay's row, written before its send (a replay failing at once may come back before the send resolves). */
export async function insertReplay(
  db: SqlQueryable,
  r: { replayId: string; recordId: string; topic: string; partition: number | null; edited: boolean; actor: string; editId: string | null; count: number },
): Promise<void> {
  await db.query(`insert into lifeline_dlq_replays (replay_id, record_id, target_topic, target_partition, edited, actor, edit_id, replay_count) values ($1, $2, $3, $4, $5, $6, $7, $8)`, [
    r.replayId, r.recordId, r.topic, r.partition, r.edited, r.actor, r.editId, r.count,
  ])
}

/** Forgets a replay that was never sent. */
export async function deleteReplay(db: SqlQueryable, replayId: string): Promise<void> {
  await db.query('delete from lifeline_dlq_replays where replay_id = $1', [replayId])
}

/** Records where a single replay landed, and counts it on its record. */
export async function recordReplayAck(db: SqlExecutor, replayId: string, recordId: string, ack: ProduceAck): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('update lifeline_dlq_replays set target_partition = $2, target_offset = $3 where replay_id = $1', [replayId, ack.partition, ack.offset])
    await tx.query('update lifeline_dlq_record_states set replay_count = replay_count + 1 where id = $1', [recordId])
  })
}

/** Stores an edited value with its diff; returns the edit's id. */
export async function insertEdit(tx: SqlQueryable, e: { recordId: string; value: Buffer; diff: string; actor: string; reason: string | null }): Promise<string> {
  const { rows } = await tx.query('insert into lifeline_dlq_edits (record_id, value, diff, actor, reason) values ($1, $2, $3::jsonb, $4, $5) returning id', [
    e.recordId, e.value, e.diff, e.actor, e.reason,
  ])
  return String(rows[0]!.id)
}

/** The record's edit `editId` (already validated), or its latest edit; undefined when there is none. */
export async function findEdit(db: SqlQueryable, recordId: string, editId: string | undefined): Promise<{ id: string; value: Buffer } | undefined> {
  const { rows } =
    editId === undefined
      ? await db.query('select id, value from lifeline_dlq_edits where record_id = $1 order by id desc limit 1', [recordId])
      : await db.query('select id, value from lifeline_dlq_edits where record_id = $1 and id = $2', [recordId, editId])
  return rows.length === 0 ? undefined : { id: String(rows[0]!.id), value: rows[0]!.value as Buffer }
}
