/**
 * The DLQ processor's audit log: one row per action in `lifeline_dlq_audit`, which the database keeps
 * append-only (a trigger refuses UPDATE, DELETE and TRUNCATE; `migrations/0004_dlq.sql`).
 *
 * What is written (by the HTTP API, see docs/api.md): every write (replay, edit, discard, resolve, redrive
 * jobs and their pause/cancel/resume), every approval request and decision, token changes, refused requests
 * (`auth.failed`: no or a bad token; `auth.forbidden`: a role too low), and reads of a record's payload
 * (`record.read`): the payload may hold personal data, so who looked at it is kept.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import type { SqlQueryable } from '../store/executor.js'

export interface AuditEntry {
  /** Who: a token name, `anonymous` for a request without a valid token, `processor` for the job runner. */
  actor: string
  /** The actor's role when known. */
  role?: string | null
  /** What: `record.replay`, `approval.approve`, `auth.failed`, ... */
  action: string
  /** On what: `record:42`, `job:7`, `approval:3`, `token:ci`, a path. */
  target?: string | null
  /** Context (never secrets: no tokens, no payloads). */
  detail?: Record<string, unknown>
}

export interface AuditRow {
  id: string
  actor: string
  role: string | null
  action: string
  target: string | null
  detail: Record<string, unknown>
  at: Date
}

export interface AuditFilter {
  actor?: string
  action?: string
  /** Exact target (`record:42`). */
  target?: string
  /** At or after (ms since the epoch or ISO-8601). */
  from?: string | number
  /** Before. */
  to?: string | number
  afterId?: string | number
  order?: 'asc' | 'desc'
  /** 1 to 1000 (default 100). */
  limit?: string | number
}

/** `s` as PostgreSQL text can hold it. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex -- NUL is what PostgreSQL text cannot hold
  return s.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\uFFFD')
}

/** Appends one row (in the caller's transaction when given one). */
export async function appendAudit(db: SqlQueryable, entry: AuditEntry): Promise<void> {
  const detail = JSON.stringify(entry.detail ?? {}, (_k, v: unknown) => (typeof v === 'string' ? clean(v) : typeof v === 'bigint' ? String(v) : v))
  await db.query('insert into lifeline_dlq_audit (actor, role, action, target, detail) values ($1, $2, $3, $4, $5::jsonb)', [
    clean(entry.actor).slice(0, 200),
    entry.role ?? null,
    clean(entry.action).slice(0, 100),
    entry.target === undefined || entry.target === null ? null : clean(entry.target).slice(0, 500),
    detail,
  ])
}

const invalid = (message: string, field: string) => new LifelineError('LL_ARGUMENT_INVALID', message, { details: { field } })
const FIELDS = new Set(['actor', 'action', 'target', 'from', 'to', 'afterId', 'order', 'limit'])

function text(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string' || value.length > 500 || value.includes('\u0000')) throw invalid(`audit filter ${field} must be a string of at most 500 characters`, field)
  return value
}

function int(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  const n = typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw invalid(`audit filter ${field} must be an integer from ${min} to ${max}`, field)
  return n
}

function time(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  let ms = NaN
  if (typeof value === 'number' || (typeof value === 'string' && /^\d{1,16}$/.test(value))) ms = Number(value)
  else if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/.test(value)) ms = Date.parse(value)
  if (!Number.isFinite(ms) || ms < 0 || ms > Date.UTC(9999, 11, 31)) throw invalid(`audit filter ${field} must be a time: ms since the epoch or ISO-8601 text`, field)
  return new Date(ms).toISOString()
}

/** Audit rows matching `filter` (validated: LL_ARGUMENT_INVALID names the bad field), by id. */
export async function listAudit(db: SqlQueryable, filter: AuditFilter | Record<string, unknown> = {}): Promise<AuditRow[]> {
  if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) throw invalid('audit filter must be an object', 'filter')
  const f = filter as Record<string, unknown>
  for (const key of Object.keys(f)) if (!FIELDS.has(key)) throw invalid(`audit filter ${key} is not a filter field (fields: ${[...FIELDS].join(', ')})`, key)
  const order = f.order === undefined || f.order === '' ? 'asc' : f.order
  if (order !== 'asc' && order !== 'desc') throw invalid('audit filter order must be asc or desc', 'order')
  const params: unknown[] = []
  const p = (v: unknown) => {
    params.push(v)
    return `$${params.length}`
  }
  const clauses: string[] = []
  const actor = text('actor', f.actor)
  const action = text('action', f.action)
  const target = text('target', f.target)
  const from = time('from', f.from)
  const to = time('to', f.to)
  const afterId = int('afterId', f.afterId, 0, Number.MAX_SAFE_INTEGER)
  const limit = int('limit', f.limit, 1, 1000) ?? 100
  if (actor !== undefined) clauses.push(`actor = ${p(actor)}`)
  if (action !== undefined) clauses.push(`action = ${p(action)}`)
  if (target !== undefined) clauses.push(`target = ${p(target)}`)
  if (from !== undefined) clauses.push(`at >= ${p(from)}::timestamptz`)
  if (to !== undefined) clauses.push(`at < ${p(to)}::timestamptz`)
  if (afterId !== undefined) clauses.push(`id ${order === 'asc' ? '>' : '<'} ${p(afterId)}`)
  const { rows } = await db.query(
    `select id, actor, role, action, target, detail, at from lifeline_dlq_audit where ${clauses.length === 0 ? 'true' : clauses.join(' and ')} order by id ${order === 'asc' ? 'asc' : 'desc'} limit ${p(limit)}`,
    params,
  )
  return rows.map((r) => ({
    id: String(r.id),
    actor: r.actor as string,
    role: (r.role as string | null) ?? null,
    action: r.action as string,
    target: (r.target as string | null) ?? null,
    detail: (r.detail as Record<string, unknown> | null) ?? {},
    at: r.at as Date,
  }))
}
