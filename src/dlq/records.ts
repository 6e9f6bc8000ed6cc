/**
 * The DLQ records store: indexed dead letters (any format), their lifecycle and its history, over a
 * {@link SqlExecutor} (PostgreSQL or embedded PGlite). Tables: `migrations/0004_dlq.sql`.
 *
 * Every value reaches SQL as a parameter; filters are validated here (LL_ARGUMENT_INVALID naming the field
 * and what it accepts), so a caller may hand over what a user typed.
 *
 * Lifecycle (see {@link DLQ_TRANSITIONS}):
 *
 *     pending ──► replaying ──► replayed ──► failed-again ──► resolved | discarded
 *        │           │  ▲           (the replay came back: linked by its replay id)
 *        │           ▼  │
 *        │        pending (the send failed)       replaying ──► failed-again (came back before `replayed` was written)
 *        └──► resolved | discarded
 *
 * @module
 */
import { isUtf8 } from 'node:buffer'
import { LifelineError } from '../errors.js'
import type { ConsumedRecord, KafkaHeader } from '../kafka/types.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../store/executor.js'
import { INDEXER_ACTOR } from './actors.js'
import { appendAudit, type AuditEntry } from './audit.js'
import { DEAD_LETTER_FORMATS, type DeadLetterContext, type DeadLetterFormat } from '../failure/formats.js'

export type DlqStatus = 'pending' | 'replaying' | 'replayed' | 'resolved' | 'discarded' | 'failed-again'

export const DLQ_STATUSES: readonly DlqStatus[] = Object.freeze(['pending', 'replaying', 'replayed', 'resolved', 'discarded', 'failed-again'])

/**
 * Allowed status changes. `resolved` and `discarded` are final. A `failed-again` record is an earlier life:
 * it is closed (resolved or discarded), never replayed again, since its next life (the record that came
 * back, `pending`) is the one to act on — replaying both would send the event twice.
 */
export const DLQ_TRANSITIONS: Readonly<Record<DlqStatus, readonly DlqStatus[]>> = Object.freeze({
  pending: ['replaying', 'resolved', 'discarded'],
  replaying: ['replayed', 'pending', 'failed-again'],
  replayed: ['failed-again'],
  'failed-again': ['resolved', 'discarded'],
  resolved: [],
  discarded: [],
})

export { INDEXER_ACTOR }

/** A header as stored: UTF-8 text when the bytes are text PostgreSQL can hold, else base64 (key and value). */
export interface StoredHeader {
  key: string
  value: string | null
  encoding?: 'base64'
}

export interface DlqRecordSummary {
  id: string
  topic: string
  partition: number
  offset: number
  /** The key as UTF-8 text (null for a null key). */
  keyText: string | null
  timestamp: number
  format: DeadLetterFormat
  originTopic: string | null
  originPartition: number | null
  originOffset: number | null
  originTimestamp: number | null
  consumerGroup: string | null
  service: string | null
  errorClass: string | null
  errorCode: string | null
  errorMessage: string | null
  fingerprint: string | null
  attempts: number | null
  firstFailureAt: Date | null
  lastFailureAt: Date | null
  failedAt: Date
  status: DlqStatus
  statusReason: string | null
  statusActor: string | null
  statusAt: Date
  replayCount: number
  replayedBefore: number
  replayId: string | null
  previousId: string | null
  masked: boolean
  indexedAt: Date
}

export interface DlqRecord extends DlqRecordSummary {
  key: Buffer | null
  value: Buffer | null
  headers: KafkaHeader[]
  errorStack: string | null
  details: Record<string, string>
}

export interface DlqEvent {
  id: string
  recordId: string
  from: DlqStatus | null
  to: DlqStatus
  actor: string
  reason: string | null
  detail: Record<string, unknown>
  at: Date
}

export interface DlqRecordDetail extends DlqRecord {
  events: DlqEvent[]
  /** Earlier lives, most recent first (the record this one's replay was made from, then its own, ...). */
  earlierLives: DlqRecordSummary[]
  /** Later lives: records that came back from a replay of this one. */
  laterLives: DlqRecordSummary[]
  /** Further copies of this dead letter read from its DLQ topic (where they are), oldest first. */
  copies: Array<{ topic: string; partition: number; offset: string; indexedAt: Date }>
}

export interface RecordFilter {
  /** Origin topic (the DLQ topic for a record whose origin is unknown). */
  topic?: string
  /** The DLQ topic itself. */
  dlqTopic?: string
  group?: string
  errorCode?: string
  errorClass?: string
  fingerprint?: string
  /** The record key as UTF-8 text. */
  key?: string
  status?: DlqStatus | DlqStatus[]
  format?: DeadLetterFormat
  /** Failed at or after (ms since the epoch, ISO-8601 text or Date). */
  from?: number | string | Date
  /** Failed before (exclusive). */
  to?: number | string | Date
  /** Case-insensitive substring of the error message (`%` and `_` match themselves). */
  text?: string
  /** Keyset pagination: records after this id in the listing order. */
  afterId?: string | number
  /** By id: `asc` (default, oldest first) or `desc`. */
  order?: 'asc' | 'desc'
  /** 1 to 1000 (default 100). */
  limit?: number | string
}

export interface IndexResult {
  id: string
  inserted: boolean
  /** The earlier life this record was linked to (its replay id matched a replay). */
  previousId?: string
  /** Whether that earlier life became `failed-again`. */
  failedAgain?: boolean
  /**
   * Set when the record is a further copy of a dead letter already stored (same consumer group, origin and
   * life: e.g. the late write of a member that had lost its partition): `id` is that dead letter's, and the
   * copy's place is kept in `lifeline_dlq_copies` (migration 0012).
   */
  copy?: boolean
}

// ---------------------------------------------------------------------------------------------------------
// Validation

const invalid = (message: string, details: Record<string, unknown> = {}): LifelineError => new LifelineError('LL_ARGUMENT_INVALID', message, { details })
const FILTER_FIELDS = new Set(['topic', 'dlqTopic', 'group', 'errorCode', 'errorClass', 'fingerprint', 'key', 'status', 'format', 'from', 'to', 'text', 'afterId', 'order', 'limit'])
export const MAX_LIMIT = 1000

function str(field: string, value: unknown, max = 1000): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > max) throw invalid(`filter.${field} must be a non-empty string of at most ${max} characters`, { field })
  if (value.includes('\u0000')) throw invalid(`filter.${field} must not contain NUL characters`, { field })
  return value
}

function integer(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw invalid(`filter.${field} must be an integer from ${min} to ${max}`, { field })
  return n
}

function time(field: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  let ms: number
  if (value instanceof Date) ms = value.getTime()
  else if (typeof value === 'number' || (typeof value === 'string' && /^\d{1,16}$/.test(value))) ms = Number(value)
  else if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/.test(value)) ms = Date.parse(value)
  else throw invalid(`filter.${field} must be a time: ms since the epoch or ISO-8601 text (e.g. 2025-01-31T12:00:00Z)`, { field })
  if (!Number.isFinite(ms) || ms < Date.UTC(1970, 0, 1) || ms > Date.UTC(9999, 11, 31)) throw invalid(`filter.${field} is not a valid time between 1970 and 9999`, { field })
  return new Date(ms).toISOString()
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) throw invalid(`filter.${field} must be one of ${allowed.join(', ')}`, { field })
  return value as T
}

export interface ParsedFilter {
  topic?: string
  dlqTopic?: string
  group?: string
  errorCode?: string
  errorClass?: string
  fingerprint?: string
  key?: Buffer
  status?: DlqStatus[]
  format?: DeadLetterFormat
  from?: string
  to?: string
  text?: string
  afterId?: number
  order: 'asc' | 'desc'
  limit: number
}

/** Validates a filter (from code or straight from a query string); LL_ARGUMENT_INVALID names the bad field. */
export function parseFilter(input: unknown): ParsedFilter {
  if (input === undefined || input === null) input = {}
  if (typeof input !== 'object' || Array.isArray(input)) throw invalid('filter must be an object')
  const f = input as Record<string, unknown>
  for (const key of Object.keys(f)) if (!FILTER_FIELDS.has(key)) throw invalid(`filter.${key} is not a filter field (fields: ${[...FILTER_FIELDS].join(', ')})`, { field: key })
  const present = (k: string) => (f[k] === undefined || f[k] === null || f[k] === '' ? undefined : f[k])
  const statuses = present('status')
  const status = statuses === undefined ? undefined : (Array.isArray(statuses) ? statuses : [statuses]).map((s) => oneOf('status', s, DLQ_STATUSES) as DlqStatus)
  if (status !== undefined && status.length === 0) throw invalid('filter.status must name at least one status', { field: 'status' })
  const key = str('key', present('key'), 10_000)
  const parsed: ParsedFilter = {
    topic: str('topic', present('topic'), 249),
    dlqTopic: str('dlqTopic', present('dlqTopic'), 249),
    group: str('group', present('group')),
    errorCode: str('errorCode', present('errorCode')),
    errorClass: str('errorClass', present('errorClass')),
    fingerprint: str('fingerprint', present('fingerprint'), 128),
    key: key === undefined ? undefined : Buffer.from(key, 'utf8'),
    status,
    format: oneOf('format', present('format'), DEAD_LETTER_FORMATS),
    from: time('from', present('from')),
    to: time('to', present('to')),
    text: str('text', present('text')),
    afterId: integer('afterId', present('afterId'), 0, Number.MAX_SAFE_INTEGER),
    order: oneOf('order', present('order'), ['asc', 'desc'] as const) ?? 'asc',
    limit: integer('limit', present('limit'), 1, MAX_LIMIT) ?? 100,
  }
  if (parsed.from !== undefined && parsed.to !== undefined && parsed.from >= parsed.to) throw invalid('filter.from must be before filter.to', { field: 'from' })
  return parsed
}

/** `text` as an ILIKE pattern matching itself anywhere (escape character `\`). */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
}

/**
 * The WHERE clause of a filter without its paging fields, for a query over `lifeline_dlq_records` (columns
 * unqualified): fixed SQL text, every value appended to `params` (numbered after what `params` holds).
 */
export function filterClause(filter: ParsedFilter, params: unknown[]): string {
  return where(filter, params, { paging: false })
}

/** The WHERE clause of a filter: fixed SQL text, every value a parameter. */
function where(f: ParsedFilter, params: unknown[], options: { paging: boolean }): string {
  const p = (value: unknown): string => {
    params.push(value)
    return `$${params.length}`
  }
  const clauses: string[] = []
  // The origin topic, else the DLQ topic: the expression of the index lifeline_dlq_records_topic_status (migration 0009_dlq_console).
  if (f.topic !== undefined) clauses.push(`coalesce(origin_topic, topic) = ${p(f.topic)}`)
  if (f.dlqTopic !== undefined) clauses.push(`topic = ${p(f.dlqTopic)}`)
  if (f.group !== undefined) clauses.push(`consumer_group = ${p(f.group)}`)
  if (f.errorCode !== undefined) clauses.push(`error_code = ${p(f.errorCode)}`)
  if (f.errorClass !== undefined) clauses.push(`error_class = ${p(f.errorClass)}`)
  if (f.fingerprint !== undefined) clauses.push(`fingerprint = ${p(f.fingerprint)}`)
  if (f.key !== undefined) clauses.push(`key = ${p(f.key)}`)
  if (f.status !== undefined) clauses.push(`status in (${f.status.map((s) => p(s)).join(', ')})`)
  if (f.format !== undefined) clauses.push(`format = ${p(f.format)}`)
  if (f.from !== undefined) clauses.push(`failed_at >= ${p(f.from)}::timestamptz`)
  if (f.to !== undefined) clauses.push(`failed_at < ${p(f.to)}::timestamptz`)
  if (f.text !== undefined) clauses.push(`error_message ilike ${p(likePattern(f.text))} escape '\\'`)
  if (options.paging && f.afterId !== undefined) clauses.push(`id ${f.order === 'asc' ? '>' : '<'} ${p(f.afterId)}`)
  return clauses.length === 0 ? 'true' : clauses.join(' and ')
}

// ---------------------------------------------------------------------------------------------------------
// Values in and out

/** `s` as PostgreSQL text can hold it: NUL and lone surrogates become U+FFFD. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex -- NUL is exactly what PostgreSQL text cannot hold
  return s.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\uFFFD')
}

const cleanOrNull = (s: string | undefined): string | null => (s === undefined ? null : clean(s))

/** Headers as stored (`headers` jsonb): lossless, text when it is, base64 otherwise. */
export function storeHeaders(headers: readonly KafkaHeader[]): StoredHeader[] {
  return headers.map((h) => {
    const keyIsText = clean(h.key) === h.key
    // Valid UTF-8 decodes without lone surrogates: only NUL is left that text cannot hold.
    const valueIsText = h.value === null || (isUtf8(h.value) && !h.value.includes(0))
    if (keyIsText && valueIsText) return { key: h.key, value: h.value === null ? null : h.value.toString('utf8') }
    return { key: Buffer.from(h.key, 'utf8').toString('base64'), value: h.value === null ? null : h.value.toString('base64'), encoding: 'base64' as const }
  })
}

/** The Kafka headers of stored ones (the exact bytes). */
export function loadHeaders(stored: unknown): KafkaHeader[] {
  if (!Array.isArray(stored)) return []
  return (stored as StoredHeader[]).map((h) =>
    h.encoding === 'base64'
      ? { key: Buffer.from(h.key, 'base64').toString('utf8'), value: h.value === null ? null : Buffer.from(h.value, 'base64') }
      : { key: h.key, value: h.value === null ? null : Buffer.from(h.value, 'utf8') },
  )
}

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

export interface IndexItem {
  record: Pick<ConsumedRecord, 'topic' | 'partition' | 'offset' | 'key' | 'value' | 'headers' | 'timestamp'>
  context: DeadLetterContext
  /** Whether a masking policy changed the record (Lifeline's own: `lifeline.masked` present). */
  masked?: boolean
}

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
    lastInsert = { rows, text: `insert into lifeline_dlq_records (${COLUMNS.join(', ')}) values ${values.join(', ')} on conflict do nothing returning id, topic, partition, "offset"` }
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
    `select id from lifeline_dlq_records
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
    for (const item of batch) {
      const key = tpo(item.record.topic, item.record.partition, item.record.offset)
      const result = byKey.get(key)
      if (!result) {
        const { rows } = await tx.query('select id from lifeline_dlq_records where topic = $1 and partition = $2 and "offset" = $3', [clean(item.record.topic), item.record.partition, item.record.offset])
        byKey.set(key, rows[0] === undefined ? await storeCopy(tx, item) : { id: String(rows[0].id), inserted: false })
      } else if (item.context.replayId !== undefined) {
        Object.assign(result, await link(tx, result.id, clean(item.context.replayId), item.record))
      }
    }
    return items.map((item) => byKey.get(tpo(item.record.topic, item.record.partition, item.record.offset))!)
  })
}

async function link(tx: SqlQueryable, id: string, replayId: string, record: IndexItem['record']): Promise<Partial<IndexResult>> {
  const { rows } = await tx.query('select record_id from lifeline_dlq_replays where replay_id = $1', [replayId])
  const earlier = rows[0]?.record_id
  if (earlier === undefined || String(earlier) === id) return {}
  await tx.query('update lifeline_dlq_records set previous_id = $2 where id = $1', [id, earlier])
  const { rows: current } = await tx.query('select status from lifeline_dlq_records where id = $1 for update', [earlier])
  const from = current[0]?.status as DlqStatus | undefined
  if (from === undefined || !DLQ_TRANSITIONS[from].includes('failed-again')) return { previousId: String(earlier), failedAgain: false }
  await tx.query(`update lifeline_dlq_records set status = 'failed-again', status_reason = $2, status_actor = $3, status_at = now() where id = $1`, [earlier, `replay ${replayId} came back to the DLQ`, INDEXER_ACTOR])
  await tx.query(
    `insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, 'failed-again', $3, $4, $5::jsonb)`,
    [earlier, from, INDEXER_ACTOR, `replay ${replayId} came back to the DLQ`, JSON.stringify({ replayId, nextRecordId: id, topic: clean(record.topic), partition: record.partition, offset: record.offset })],
  )
  return { previousId: String(earlier), failedAgain: true }
}

/** Stores one dead letter (see {@link indexRecords}); `inserted` is false when it was already there. */
export async function indexRecord(db: SqlExecutor, record: IndexItem['record'], context: DeadLetterContext, options: { masked?: boolean } = {}): Promise<IndexResult> {
  const [result] = await indexRecords(db, [{ record, context, masked: options.masked }])
  return result!
}

// ---------------------------------------------------------------------------------------------------------
// Reading

const SUMMARY_FIELDS = [
  'id', 'topic', 'partition', '"offset"', 'key', '"timestamp"', 'format', 'origin_topic', 'origin_partition', 'origin_offset', 'origin_timestamp', 'consumer_group', 'service',
  'error_class', 'error_code', 'error_message', 'fingerprint', 'attempts', 'first_failure_at', 'last_failure_at', 'failed_at', 'status', 'status_reason', 'status_actor',
  'status_at', 'replay_count', 'replayed_before', 'replay_id', 'previous_id', 'masked', 'indexed_at',
]
const summaryColumns = (alias = ''): string => SUMMARY_FIELDS.map((c) => `${alias}${c}`).join(', ')
const FULL_SELECT = `${summaryColumns()}, value, headers, error_stack, details`

const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v))

function toSummary(row: SqlRow): DlqRecordSummary {
  return {
    id: String(row.id), topic: row.topic as string, partition: Number(row.partition), offset: Number(row.offset),
    keyText: row.key === null ? null : (row.key as Buffer).toString('utf8'), timestamp: Number(row.timestamp), format: row.format as DeadLetterFormat,
    originTopic: strOrNull(row.origin_topic), originPartition: numOrNull(row.origin_partition), originOffset: numOrNull(row.origin_offset), originTimestamp: numOrNull(row.origin_timestamp),
    consumerGroup: strOrNull(row.consumer_group), service: strOrNull(row.service), errorClass: strOrNull(row.error_class), errorCode: strOrNull(row.error_code),
    errorMessage: strOrNull(row.error_message), fingerprint: strOrNull(row.fingerprint), attempts: numOrNull(row.attempts),
    firstFailureAt: (row.first_failure_at as Date | null) ?? null, lastFailureAt: (row.last_failure_at as Date | null) ?? null, failedAt: row.failed_at as Date,
    status: row.status as DlqStatus, statusReason: strOrNull(row.status_reason), statusActor: strOrNull(row.status_actor), statusAt: row.status_at as Date,
    replayCount: Number(row.replay_count), replayedBefore: Number(row.replayed_before), replayId: strOrNull(row.replay_id), previousId: strOrNull(row.previous_id),
    masked: row.masked === true, indexedAt: row.indexed_at as Date,
  }
}

function toRecord(row: SqlRow): DlqRecord {
  return { ...toSummary(row), key: (row.key as Buffer | null) ?? null, value: (row.value as Buffer | null) ?? null, headers: loadHeaders(row.headers), errorStack: strOrNull(row.error_stack), details: (row.details as Record<string, string> | null) ?? {} }
}

/** Records matching `filter`, by id (`order`), at most `limit`; continue with `afterId` = the last id. */
export async function listRecords(db: SqlQueryable, filter: RecordFilter | Record<string, unknown> = {}): Promise<DlqRecordSummary[]> {
  const f = parseFilter(filter)
  const params: unknown[] = []
  const clause = where(f, params, { paging: true })
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
  const { rows } = await db.query(`select count(*)::int8 as n from lifeline_dlq_records where ${where(f, params, { paging: false })}`, params)
  return Number(rows[0]?.n ?? 0)
}

function recordId(id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalid('record id must be a positive integer', { field: 'id' })
  return String(n)
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

export interface ErrorGroup {
  fingerprint: string
  errorClass: string | null
  errorCode: string | null
  /** The most recent record's message. */
  sampleMessage: string | null
  count: number
  /** Of them, still `pending`. */
  pending: number
  firstSeen: Date
  lastSeen: Date
  /** Origin topics (DLQ topics for records without an origin), sorted. */
  topics: string[]
  distinctKeys: number
}

/** The "top N errors" view: records matching `filter` grouped by fingerprint, largest group first. */
export async function groupRecords(db: SqlQueryable, filter: RecordFilter | Record<string, unknown> = {}, options: { limit?: number | string } = {}): Promise<ErrorGroup[]> {
  const f = parseFilter(filter)
  const limit = integer('limit', options.limit ?? 20, 1, MAX_LIMIT)!
  const params: unknown[] = []
  const clause = where(f, params, { paging: false })
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
     from g join lifeline_dlq_records r on r.id = g.last_id
     cross join lateral (
       select array_agg(distinct coalesce(origin_topic, topic)) as topics, count(distinct key)::int8 as keys
       from lifeline_dlq_records where (fingerprint = g.fingerprint or (fingerprint is null and g.fingerprint is null)) and ${clause}
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

// ---------------------------------------------------------------------------------------------------------
// Lifecycle

export interface StatusChange {
  /** Who: a user name, `indexer`, `redrive:<job>`. */
  actor: string
  reason?: string
  /** The status the caller believes the record has: refused (LL_ARGUMENT_INVALID, details.conflict) when it has another. */
  from?: DlqStatus
  /** Extra context for the event (job id, replay id, ...). */
  detail?: Record<string, unknown>
  /** The audit row of the action this change is part of: written in the same transaction. */
  audit?: AuditEntry
}

/**
 * Moves a record to `to` when {@link DLQ_TRANSITIONS} allows it from its current status (and it is `from`,
 * when given), and records the change in `lifeline_dlq_events`. LL_NOT_FOUND for an unknown id;
 * LL_ARGUMENT_INVALID with `details.conflict: true` for a refused change.
 */
export async function setStatus(db: SqlExecutor, id: string | number, to: DlqStatus, change: StatusChange): Promise<{ id: string; from: DlqStatus; to: DlqStatus; at: Date }> {
  const rid = recordId(id)
  if (!DLQ_STATUSES.includes(to)) throw invalid(`status must be one of ${DLQ_STATUSES.join(', ')}`, { field: 'status' })
  if (change.from !== undefined && !DLQ_STATUSES.includes(change.from)) throw invalid(`from must be one of ${DLQ_STATUSES.join(', ')}`, { field: 'from' })
  if (typeof change.actor !== 'string' || change.actor.length === 0 || change.actor.length > 200) throw invalid('actor must be a non-empty string of at most 200 characters', { field: 'actor' })
  if (change.reason !== undefined && (typeof change.reason !== 'string' || change.reason.length > 2000)) throw invalid('reason must be a string of at most 2000 characters', { field: 'reason' })
  return db.transaction(async (tx) => {
    const { rows } = await tx.query('select status from lifeline_dlq_records where id = $1 for update', [rid])
    if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${rid} does not exist`, { details: { id: rid } })
    const current = rows[0]!.status as DlqStatus
    if (change.from !== undefined && change.from !== current) {
      throw invalid(`DLQ record ${rid} is ${current}, not ${change.from}`, { conflict: true, id: rid, status: current, expected: change.from, to })
    }
    if (!DLQ_TRANSITIONS[current].includes(to)) {
      const allowed = DLQ_TRANSITIONS[current]
      throw invalid(`DLQ record ${rid} cannot go from ${current} to ${to} (${allowed.length === 0 ? `${current} is final` : `allowed: ${allowed.join(', ')}`})`, { conflict: true, id: rid, status: current, to })
    }
    const reason = change.reason === undefined ? null : clean(change.reason)
    const actor = clean(change.actor)
    const { rows: updated } = await tx.query(
      `update lifeline_dlq_records set status = $2, status_reason = $3, status_actor = $4, status_at = now() where id = $1 returning status_at`,
      [rid, to, reason, actor],
    )
    await tx.query(`insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, $3, $4, $5, $6::jsonb)`, [
      rid, current, to, actor, reason, JSON.stringify(change.detail ?? {}),
    ])
    if (change.audit) await appendAudit(tx, change.audit)
    return { id: rid, from: current, to, at: updated[0]!.status_at as Date }
  })
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
    `select floor(extract(epoch from failed_at) / 3600)::int8 as h, count(*)::int8 as n from lifeline_dlq_records
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
     select t.fingerprint, t.pending, r.error_class, r.error_code, r.error_message, r.failed_at from top t join lifeline_dlq_records r on r.id = t.last_id order by t.pending desc, t.last_id desc`,
    [n],
  )
  return rows.map((r) => ({ fingerprint: String(r.fingerprint), errorClass: strOrNull(r.error_class), errorCode: strOrNull(r.error_code), sampleMessage: strOrNull(r.error_message), pending: Number(r.pending), lastSeen: r.failed_at as Date }))
}
