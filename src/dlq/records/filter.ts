/**
 * A records filter, validated (from code or straight from a query string: LL_ARGUMENT_INVALID names the
 * bad field and what it accepts) and turned into a WHERE clause of fixed SQL text whose every value is a
 * parameter.
 *
 * @module
 */
import { invalidArgument as invalid } from '../../errors.js'
import { DEAD_LETTER_FORMATS } from '../../failure/formats.js'
import { DLQ_STATUSES, type DlqStatus, type RecordFilter } from './types.js'

const FILTER_FIELDS = new Set(['topic', 'dlqTopic', 'group', 'errorCode', 'errorClass', 'fingerprint', 'key', 'status', 'format', 'from', 'to', 'text', 'afterId', 'order', 'limit'])
export const MAX_LIMIT = 1000

function str(field: string, value: unknown, max = 1000): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > max) throw invalid(`filter.${field} must be a non-empty string of at most ${max} characters`, { field })
  if (value.includes('\u0000')) throw invalid(`filter.${field} must not contain NUL characters`, { field })
  return value
}

/** An integer field from `min` to `max` (a number or digits), else LL_ARGUMENT_INVALID naming `filter.<field>`. */
export function integer(field: string, value: unknown, min: number, max: number): number | undefined {
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

/** A validated filter: the fields of {@link RecordFilter} in the one form each reaches SQL, paging defaulted. */
export interface ParsedFilter extends Pick<RecordFilter, 'topic' | 'dlqTopic' | 'group' | 'errorCode' | 'errorClass' | 'fingerprint' | 'format' | 'text'> {
  key?: Buffer
  status?: DlqStatus[]
  from?: string
  to?: string
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
  return whereClause(filter, params, { paging: false })
}

/** The WHERE clause of a filter: fixed SQL text, every value a parameter (`paging`: with `afterId`). */
export function whereClause(f: ParsedFilter, params: unknown[], options: { paging: boolean }): string {
  const p = (value: unknown): string => {
    params.push(value)
    return `$${params.length}`
  }
  const clauses: string[] = []
  // The origin topic, else the DLQ topic: the status row's scope_topic (the index lifeline_dlq_record_states_scope, migration 0014).
  if (f.topic !== undefined) clauses.push(`scope_topic = ${p(f.topic)}`)
  if (f.dlqTopic !== undefined) clauses.push(`topic = ${p(f.dlqTopic)}`)
  // md5 first: the expression of their B-tree indexes (migration 0013_dlq_equality_btree), then the value.
  const equal = (column: string, value: unknown, type: 'text' | 'bytea'): string => {
    const v = p(value)
    return `md5(${column}) = md5(${v}::${type}) and ${column} = ${v}`
  }
  if (f.group !== undefined) clauses.push(equal('consumer_group', f.group, 'text'))
  if (f.errorCode !== undefined) clauses.push(equal('error_code', f.errorCode, 'text'))
  if (f.errorClass !== undefined) clauses.push(equal('error_class', f.errorClass, 'text'))
  if (f.fingerprint !== undefined) clauses.push(`fingerprint = ${p(f.fingerprint)}`)
  if (f.key !== undefined) clauses.push(equal('key', f.key, 'bytea'))
  if (f.status !== undefined) clauses.push(`status in (${f.status.map((s) => p(s)).join(', ')})`)
  if (f.format !== undefined) clauses.push(`format = ${p(f.format)}`)
  if (f.from !== undefined) clauses.push(`failed_at >= ${p(f.from)}::timestamptz`)
  if (f.to !== undefined) clauses.push(`failed_at < ${p(f.to)}::timestamptz`)
  if (f.text !== undefined) clauses.push(`error_message ilike ${p(likePattern(f.text))} escape '\\'`)
  if (options.paging && f.afterId !== undefined) clauses.push(`id ${f.order === 'asc' ? '>' : '<'} ${p(f.afterId)}`)
  return clauses.length === 0 ? 'true' : clauses.join(' and ')
}

/**
 * The relation a query over `filter`'s records reads: `lifeline_dlq_records` (the view joining a record and
 * its status row) when the filter names the status or the topic, else the records' own table, which holds
 * every other column the filter compares (no join of two tables of every record to count them).
 */
export function filterRelation(f: ParsedFilter): string {
  return f.status === undefined && f.topic === undefined ? 'lifeline_dlq_record_bodies' : 'lifeline_dlq_records'
}

/** A record id as the store takes it: a positive integer (number or digits), as text. */
export function recordId(id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalid('record id must be a positive integer', { field: 'id' })
  return String(n)
}
