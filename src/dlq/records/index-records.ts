/**
 * Writing dead letters into the store: one multi-row insert per batch (the record and its status row), idempotent on (topic, partition,
 * offset), and the link of a record that came back from a replay to its earlier life (which becomes
 * `failed-again`).
 *
 * @module
 */
import type { SqlExecutor, SqlQueryable } from '../../store/executor.js'
import type { DeadLetterContext } from '../../failure/formats.js'
import { INDEXER_ACTOR } from '../actors.js'
import { DLQ_TRANSITIONS, type DlqStatus, type IndexItem, type IndexResult } from './types.js'
import { clean, cleanOrNull, storeHeaders } from './values.js'

const MIN_TIME = Date.UTC(1, 0, 1)
const MAX_TIME = Date.UTC(9999, 11, 31)
const iso = (ms: number | undefined): string | null => (ms !== undefined && Number.isFinite(ms) && ms >= MIN_TIME && ms <= MAX_TIME ? new Date(ms).toISOString() : null)
const int32 = (n: number | undefined): number | null => (n !== undefined && Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff ? n : null)
const int64 = (n: number | undefined): number | null => (n !== undefined && Number.isSafeInteger(n) ? n : null)

const COLUMNS = [
  'topic', 'partition', '"offset"', 'key', 'value', 'headers', '"timestamp"', 'format', 'origin_topic', 'origin_partition', 'origin_offset', 'origin_timestamp',
  'consumer_group', 'service', 'error_class', 'error_code', 'error_message', 'error_stack', 'fingerprint', 'attempts', 'first_failure_at', 'last_failure_at',
  'failed_at', 'details', 'replay_id', 'replayed_before', 'masked',
] as const
const CASTS: Partial<Record<(typeof COLUMNS)[number], string>> = { headers: '::jsonb', details: '::jsonb', first_failure_at: '::timestamptz', last_failure_at: '::timestamptz', failed_at: '::timestamptz' }

function rowValues(item: IndexItem, now: number): unknown[] {
  const { record: r, context: c } = item
  const lastFailureAt = iso(c.lastFailureAt)
  const failedAt = lastFailureAt ?? iso(r.timestamp > 0 ? r.timestamp : undefined) ?? new Date(now).toISOString()
  const details = Object.fromEntries(Object.entries(c.details ?? {}).map(([k, v]) => [clean(k), clean(String(v))]))
  return [
    clean(r.topic), r.partition, r.offset, r.key, r.value, JSON.stringify(storeHeaders(r.headers)), Number.isSafeInteger(r.timestamp) ? r.timestamp : 0, c.format,
    cleanOrNull(c.originTopic), int32(c.originPartition), int64(c.originOffset), int64(c.originTimestamp), cleanOrNull(c.consumerGroup), cleanOrNull(c.service),
    cleanOrNull(c.errorClass), cleanOrNull(c.errorCode), cleanOrNull(c.errorMessage), cleanOrNull(c.errorStack), clean(c.fingerprint), int32(c.attempts),
    iso(c.firstFailureAt), lastFailureAt, failedAt, JSON.stringify(details), cleanOrNull(c.replayId), Math.max(0, int32(c.replayCount) ?? 0), item.masked === true,
  ]
}

/** The multi-row insert of `rows` records (the last one built is kept: batches are mostly the same size). */
let lastInsert: { rows: number; text: string } | undefined
function insertStatement(rows: number): string {
  if (lastInsert?.rows !== rows) {
    const values = Array.from({ length: rows }, (_, r) => `(${COLUMNS.map((column, i) => `$${r * COLUMNS.length + i + 1}${CASTS[column] ?? ''}`).join(', ')})`)
    // The record and its status row (lifeline_dlq_records is a view over the two: migration 0014).
    lastInsert = {
      rows,
      text: `with stored as (insert into lifeline_dlq_record_bodies (${COLUMNS.join(', ')}) values ${values.join(', ')} on conflict do nothing returning id, topic, partition, "offset", origin_topic),
        states as (insert into lifeline_dlq_record_states (id, scope_topic) select id, coalesce(origin_topic, topic) from stored)
        select id, topic, partition, "offset" from stored`,
    }
  }
  return lastInsert.text
}

const tpo = (topic: string, partition: number, offset: number | string) => `${topic}\u0000${partition}\u0000${offset}`

/**
 * A record the insert left out that is not stored at its place: a further copy of a dead letter with the same
 * identity (the unique index lifeline_dlq_records_identity). Its place is recorded against that dead letter.
 */
async function storeCopy(tx: SqlQueryable, item: IndexItem): Promise<IndexResult> {
  const { record: r, context: c } = item
  const { rows } = await tx.query(
    `select id from lifeline_dlq_record_bodies
      where format = 'lifeline' and copy_of is null and consumer_group = $1 and origin_topic = $2 and origin_partition = $3 and origin_offset = $4 and coalesce(replay_id, '') = $5`,
    [cleanOrNull(c.consumerGroup), cleanOrNull(c.originTopic), int32(c.originPartition), int64(c.originOffset), cleanOrNull(c.replayId) ?? ''],
  )
  const id = rows[0]?.id
  if (id === undefined) throw new Error(`the DLQ record ${r.topic}/${r.partition}@${r.offset} was neither stored nor found at its place or by its identity`)
  await tx.query('insert into lifeline_dlq_copies (topic, partition, "offset", record_id) values ($1, $2, $3, $4) on conflict do nothing', [clean(r.topic), r.partition, r.offset, id])
  return { id: String(id), inserted: false, copy: true }
}

/**
 * Stores dead letters, idempotent on (topic, partition, offset), in one transaction. A Lifeline dead letter
 * with the identity of one already stored (consumer group, origin topic/partition/offset, replay id) is a
 * copy: it is recorded as such (`copy: true`), not stored as a second dead letter. A record whose replay id
 * matches a replay is linked to the record that replay was made from (`previous_id`), and that earlier life
 * becomes `failed-again` (with an event by `indexer`) when it was `replayed` or `replaying`.
 */
export async function indexRecords(db: SqlExecutor, items: readonly IndexItem[]): Promise<IndexResult[]> {
  if (items.length === 0) return []
  const unique = new Map<string, IndexItem>()
  for (const item of items) unique.set(tpo(item.record.topic, item.record.partition, item.record.offset), item)
  const now = Date.now()
  return db.transaction(async (tx) => {
    const byKey = new Map<string, IndexResult>()
    const batch = [...unique.values()]
    // 27 parameters a row; 1000 rows stay far below PostgreSQL's 65535.
    for (let start = 0; start < batch.length; start += 1000) {
      const slice = batch.slice(start, start + 1000)
      const params: unknown[] = []
      for (const item of slice) params.push(...rowValues(item, now))
      const { rows: inserted } = await tx.query(insertStatement(slice.length), params)
      for (const row of inserted) byKey.set(tpo(row.topic as string, Number(row.partition), String(row.offset)), { id: String(row.id), inserted: true })
    }
    const cameBack = new Map<string, number>()
    for (const item of batch) {
      const key = tpo(item.record.topic, item.record.partition, item.record.offset)
      const result = byKey.get(key)
      if (!result) {
        const { rows } = await tx.query('select id from lifeline_dlq_record_bodies where topic = $1 and partition = $2 and "offset" = $3', [clean(item.record.topic), item.record.partition, item.record.offset])
        byKey.set(key, rows[0] === undefined ? await storeCopy(tx, item) : { id: String(rows[0].id), inserted: false })
      } else if (item.context.replayId !== undefined) {
        const { jobId, ...linked } = await link(tx, result.id, clean(item.context.replayId), item.record)
        Object.assign(result, linked)
        if (jobId !== undefined) cameBack.set(jobId, (cameBack.get(jobId) ?? 0) + 1)
      }
    }
    // The jobs' count of replays that came back (their failure-rate check), last: a redrive's batch locks its
    // records' status rows before its job's row, and so does this transaction.
    for (const [jobId, n] of cameBack) await tx.query('update lifeline_dlq_jobs set came_back = came_back + $2 where id = $1', [jobId, n])
    return items.map((item) => byKey.get(tpo(item.record.topic, item.record.partition, item.record.offset))!)
  })
}

/** Links a record that came back from replay `replayId` to its earlier life; `jobId`: the job that made that replay. */
async function link(tx: SqlQueryable, id: string, replayId: string, record: IndexItem['record']): Promise<Partial<IndexResult> & { jobId?: string }> {
  const { rows } = await tx.query('select record_id, job_id from lifeline_dlq_replays where replay_id = $1', [replayId])
  const earlier = rows[0]?.record_id
  if (earlier === undefined || String(earlier) === id) return {}
  const jobId = rows[0]!.job_id === null ? undefined : String(rows[0]!.job_id)
  await tx.query('update lifeline_dlq_record_bodies set previous_id = $2 where id = $1', [id, earlier])
  const { rows: current } = await tx.query('select status from lifeline_dlq_record_states where id = $1 for update', [earlier])
  const from = current[0]?.status as DlqStatus | undefined
  if (from === undefined || !DLQ_TRANSITIONS[from].includes('failed-again')) return { previousId: String(earlier), failedAgain: false, jobId }
  await tx.query(`update lifeline_dlq_record_states set status = 'failed-again', status_reason = $2, status_actor = $3, status_at = now() where id = $1`, [earlier, `replay ${replayId} came back to the DLQ`, INDEXER_ACTOR])
  await tx.query(
    `insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, 'failed-again', $3, $4, $5::jsonb)`,
    [earlier, from, INDEXER_ACTOR, `replay ${replayId} came back to the DLQ`, JSON.stringify({ replayId, nextRecordId: id, topic: clean(record.topic), partition: record.partition, offset: record.offset })],
  )
  return { previousId: String(earlier), failedAgain: true, jobId }
}

/** Stores one dead letter (see {@link indexRecords}); `inserted` is false when it was already there. */
export async function indexRecord(db: SqlExecutor, record: IndexItem['record'], context: DeadLetterContext, options: { masked?: boolean } = {}): Promise<IndexResult> {
  const [result] = await indexRecords(db, [{ record, context, masked: options.masked }])
  return result!
}
