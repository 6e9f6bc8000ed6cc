/**
 * Reading the store: listing (keyset paging), counting, one record with its events and lives, the
 * "top errors" grouping, and the console overview's hourly counts and pending groups.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { SqlQueryable } from '../../store/executor.js'
import { filterRelation, integer, MAX_LIMIT, parseFilter, recordId, whereClause } from './filter.js'
import type { DlqRecordDetail, DlqRecordSummary, DlqStatus, ErrorGroup, RecordFilter } from './types.js'
import { FULL_SELECT, strOrNull, summaryColumns, toRecord, toSummary } from './values.js'

/** Records matching `filter`, by id (`order`), at most `limit`; continue with `afterId` = the last id. */
export async function listRecords(db: SqlQueryable, filter: RecordFilter | Record<string, unknown> = {}): Promise<DlqRecordSummary[]> {
  const f = parseFilter(filter)
  const params: unknown[] = []
  const clause = whereClause(f, params, { paging: true })
  params.push(f.limit)
  const { rows } = await db.query(`select ${summaryColumns()} from lifeline_dlq_records where ${clause} order by id ${f.order === 'asc' ? 'asc' : 'desc'} limit $${params.length}`, params)
  return rows.map(toSummary)
}

/** One record without its payload (key, value, headers, stack); LL_NOT_FOUND when there is none. */
export async function getRecordSummary(db: SqlQueryable, id: string | number): Promise<DlqRecordSummary> {
  const rid = recordId(id)
  const { rows } = await db.query(`select ${summaryColumns()} from lifeline_dlq_records where id = $1`, [rid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${rid} does not exist`, { details: { id: rid } })
  return toSummary(rows[0]!)
}

/** How many records match `filter` (its paging fields are ignored): the dry-run count of a bulk action. */
export async function countRecords(db: SqlQueryable, filter: RecordFilter | Record<string, unknown> = {}): Promise<number> {
  const f = parseFilter(filter)
  const params: unknown[] = []
  const { rows } = await db.query(`select count(*)::int8 as n from ${filterRelation(f)} where ${whereClause(f, params, { paging: false })}`, params)
  return Number(rows[0]?.n ?? 0)
}

/** One record with its events (oldest first), earlier lives and later lives; LL_NOT_FOUND when there is none. */
export async function getRecord(db: SqlQueryable, id: string | number): Promise<DlqRecordDetail> {
  const rid = recordId(id)
  const { rows } = await db.query(`select ${FULL_SELECT} from lifeline_dlq_records where id = $1`, [rid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${rid} does not exist`, { details: { id: rid } })
  const [events, earlier, later, copies] = await Promise.all([
    db.query('select id, record_id, from_status, to_status, actor, reason, detail, at from lifeline_dlq_events where record_id = $1 order by id', [rid]),
    db.query(
      `with recursive lives(id, depth) as (
         select previous_id, 1 from lifeline_dlq_records where id = $1 and previous_id is not null
         union all
         select r.previous_id, l.depth + 1 from lifeline_dlq_records r join lives l on r.id = l.id where r.previous_id is not null and l.depth < 100
       )
       select ${summaryColumns('r.')} from lives l join lifeline_dlq_records r on r.id = l.id order by l.depth`,
      [rid],
    ),
    db.query(`select ${summaryColumns()} from lifeline_dlq_records where previous_id = $1 order by id`, [rid]),
    db.query('select topic, partition, "offset"::text as "offset", indexed_at from lifeline_dlq_copies where record_id = $1 order by indexed_at, topic, partition, "offset"', [rid]),
  ])
  return {
    ...toRecord(rows[0]!),
    events: events.rows.map((e) => ({ id: String(e.id), recordId: String(e.record_id), from: (e.from_status as DlqStatus | null) ?? null, to: e.to_status as DlqStatus, actor: e.actor as string, reason: strOrNull(e.reason), detail: (e.detail as Record<string, unknown>) ?? {}, at: e.at as Date })),
    earlierLives: earlier.rows.map(toSummary),
    laterLives: later.rows.map(toSummary),
    copies: copies.rows.map((c) => ({ topic: c.topic as string, partition: Number(c.partition), offset: String(c.offset), indexedAt: c.indexed_at as Date })),
  }
}

/** The "top N errors" view: records matching `filter` grouped by fingerprint, largest group first. */
export async function groupRecords(db: SqlQueryable, filter: RecordFilter | Record<string, unknown> = {}, options: { limit?: number | string } = {}): Promise<ErrorGroup[]> {
  const f = parseFilter(filter)
  const limit = integer('limit', options.limit ?? 20, 1, MAX_LIMIT)!
  const params: unknown[] = []
  const clause = whereClause(f, params, { paging: false })
  params.push(limit)
  // Counts per fingerprint first (a hash aggregate, no sort of the matching rows), then, for the `limit`
  // largest groups only, the latest record's fields (by its id) and the distinct topics and keys.
  const { rows } = await db.query(
    `with g as (
       select fingerprint, max(id) as last_id, count(*)::int8 as n, count(*) filter (where status = 'pending')::int8 as pending,
         min(failed_at) as first_seen, max(failed_at) as last_seen
       from lifeline_dlq_records where ${clause} group by fingerprint order by count(*) desc, max(failed_at) desc limit $${params.length}
     )
     select g.fingerprint, g.n, g.pending, g.first_seen, g.last_seen, r.error_class, r.error_code, r.error_message as sample_message, d.topics, d.keys
     from g join lifeline_dlq_record_bodies r on r.id = g.last_id
     cross join lateral (
       select array_agg(distinct coalesce(origin_topic, topic)) as topics, count(distinct key)::int8 as keys
       from ${filterRelation(f)} where (fingerprint = g.fingerprint or (fingerprint is null and g.fingerprint is null)) and ${clause}
     ) d
     order by g.n desc, g.last_seen desc`,
    params,
  )
  return rows.map((r) => ({
    fingerprint: String(r.fingerprint), errorClass: strOrNull(r.error_class), errorCode: strOrNull(r.error_code), sampleMessage: strOrNull(r.sample_message),
    count: Number(r.n), pending: Number(r.pending), firstSeen: r.first_seen as Date, lastSeen: r.last_seen as Date,
    topics: ((r.topics as string[] | null) ?? []).slice().sort(), distinctKeys: Number(r.keys),
  }))
}

/**
 * Dead letters per hour over the `hours` hours up to now (the current hour last), zeros included: the
 * console's overview chart. Counted by failure time, in SQL (one index range scan on `failed_at`).
 */
export async function hourlyCounts(db: SqlQueryable, hours = 24, now = new Date()): Promise<Array<{ hour: Date; count: number }>> {
  const n = integer('hours', hours, 1, 24 * 31)!
  const end = Math.floor(now.getTime() / 3_600_000) * 3_600_000 + 3_600_000
  const start = end - n * 3_600_000
  const { rows } = await db.query(
    `select floor(extract(epoch from failed_at) / 3600)::int8 as h, count(*)::int8 as n from lifeline_dlq_record_bodies
     where failed_at >= $1::timestamptz and failed_at < $2::timestamptz group by 1`,
    [new Date(start).toISOString(), new Date(end).toISOString()],
  )
  const byHour = new Map(rows.map((r) => [Number(r.h), Number(r.n)]))
  return Array.from({ length: n }, (_, i) => {
    const ms = start + i * 3_600_000
    return { hour: new Date(ms), count: byHour.get(ms / 3_600_000) ?? 0 }
  })
}

/**
 * The `limit` error groups with the most `pending` records, most first, each with its newest pending
 * record's error and time: the console overview's "pending by error group". One hash aggregate over the
 * pending records (a fraction of a second at a million) where {@link groupRecords} also collects topics,
 * distinct keys and first/last seen over every record of each group (seconds at a million).
 */
export async function pendingGroups(db: SqlQueryable, limit = 10): Promise<Array<Pick<ErrorGroup, 'fingerprint' | 'errorClass' | 'errorCode' | 'sampleMessage' | 'pending' | 'lastSeen'>>> {
  const n = integer('limit', limit, 1, MAX_LIMIT)!
  const { rows } = await db.query(
    `with top as (
       select fingerprint, count(*)::int8 as pending, max(id) as last_id from lifeline_dlq_records where status = 'pending' group by fingerprint order by count(*) desc, max(id) desc limit $1
     )
     select t.fingerprint, t.pending, r.error_class, r.error_code, r.error_message, r.failed_at from top t join lifeline_dlq_record_bodies r on r.id = t.last_id order by t.pending desc, t.last_id desc`,
    [n],
  )
  return rows.map((r) => ({ fingerprint: String(r.fingerprint), errorClass: strOrNull(r.error_class), errorCode: strOrNull(r.error_code), sampleMessage: strOrNull(r.error_message), pending: Number(r.pending), lastSeen: r.failed_at as Date }))
}
