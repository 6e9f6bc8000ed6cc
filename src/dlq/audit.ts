/**
 * The DLQ processor's audit log: one row per action in `lifeline_dlq_audit`, written in the transaction of
 * the action it records (the action and its row commit together or not at all). The database keeps it
 * append-only (a trigger refuses UPDATE, DELETE and TRUNCATE; `migrations/0004_dlq.sql`), and every row
 * carries a hash chained to the previous row's (`prev_hash`, `hash`: `migrations/0007_dlq_security.sql`), so
 * {@link verifyAudit} finds a row changed, removed or inserted behind the trigger's back by someone who did
 * not also recompute every later hash. See docs/api.md#audit for what the chain proves and what it does not.
 *
 * What is written (by the HTTP API, see docs/api.md): every write (replay, edit, discard, resolve, redrive
 * jobs and their pause/cancel/resume), every approval request and decision, token changes, refused requests
 * (sampled: `auth.failed` for no or a bad token, `<action>` with `outcome: refused` for a 403 or a 409), and
 * reads of a record's payload (`record.read`): the payload may hold personal data, so who looked at it is kept.
 *
 * @module
 */
import { createHash } from 'node:crypto'
import { invalidArgument } from '../errors.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../store/executor.js'

export interface AuditEntry {
  /** Who: a token name, `anonymous` for a request without a valid token, `processor` for its housekeeping, `cli:<user>`. */
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
  /** This row's hash, chained to the previous row's (null for rows written before the chain). */
  hash: string | null
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

/** The hash before the first chained row. */
export const AUDIT_GENESIS = '0'.repeat(64)

/** `value` as JSON with object keys sorted (the canonical text of a row's detail). */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  return `{${Object.keys(value)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
    .join(',')}}`
}

/** A row's hash: SHA-256 over the previous row's hash and the row's id, actor, role, action, target, detail and time. */
export function auditHash(prevHash: string, row: { id: string; actor: string; role: string | null; action: string; target: string | null; detail: unknown; at: Date }): string {
  const body = canonical([row.id, row.actor, row.role, row.action, row.target, row.detail, row.at.toISOString()])
  return createHash('sha256').update(`${prevHash}\n${body}`, 'utf8').digest('hex')
}

/** Taken by every append until its transaction ends: rows are chained in id order, one at a time. */
const CHAIN_LOCK = 'lifeline_dlq_audit_chain'

async function append(tx: SqlQueryable, entry: AuditEntry): Promise<void> {
  const detailText = JSON.stringify(entry.detail ?? {}, (_k, v: unknown) => (typeof v === 'string' ? clean(v) : typeof v === 'bigint' ? String(v) : v))
  const actor = clean(entry.actor).slice(0, 200)
  const action = clean(entry.action).slice(0, 100)
  const target = entry.target === undefined || entry.target === null ? null : clean(entry.target).slice(0, 500)
  const role = entry.role ?? null
  await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [CHAIN_LOCK])
  const { rows } = await tx.query(
    `select nextval(pg_get_serial_sequence('lifeline_dlq_audit', 'id'))::text as id, date_trunc('milliseconds', now()) as at,
       (select hash from lifeline_dlq_audit where hash is not null order by id desc limit 1) as prev`,
  )
  const id = String(rows[0]!.id)
  const at = rows[0]!.at as Date
  const prev = (rows[0]!.prev as string | null) ?? AUDIT_GENESIS
  // The detail as the database will give it back (jsonb, read through JSON): what verifyAudit hashes.
  const hash = auditHash(prev, { id, actor, role, action, target, detail: JSON.parse(detailText) as unknown, at })
  await tx.query('insert into lifeline_dlq_audit (id, actor, role, action, target, detail, at, prev_hash, hash) values ($1, $2, $3, $4, $5, $6::jsonb, $7::timestamptz, $8, $9)', [
    id, actor, role, action, target, detailText, at.toISOString(), prev, hash,
  ])
}

/**
 * Appends one row, chained to the last one. Pass the transaction of the action it records (the row then
 * commits with it); given an executor, it appends in a transaction of its own. The chain lock is held until
 * that transaction ends: append last in it.
 */
export async function appendAudit(db: SqlQueryable | SqlExecutor, entry: AuditEntry): Promise<void> {
  if ('transaction' in db && typeof db.transaction === 'function') return db.transaction((tx) => append(tx, entry))
  return append(db, entry)
}

export interface AuditVerification {
  /** Whether every chained row is intact and in its place. */
  ok: boolean
  /** Rows checked (chained ones). */
  checked: number
  /** Rows written before the chain existed (migration 0007): not covered. */
  unchained: number
  /** The last chained row (write it down elsewhere: an anchor to check the chain against later). */
  head: { id: string; hash: string } | null
  /** The first row that breaks the chain, and how. */
  broken?: { id: string; reason: string }
}

/**
 * Checks the audit chain from its first row: each chained row's `prev_hash` is the hash of the chained row
 * before it, and its `hash` is that of its content. Reports the first row that breaks it: `changed` (its
 * content is not what was hashed), `out of chain` (a row before it was removed, inserted or rechained), `no
 * hash` (a row added without one). With `anchor` (an id and hash written down earlier), the chain must still
 * hold that row with that hash: a chain rewritten from the start, or cut short, is caught up to the anchor.
 */
export async function verifyAudit(db: SqlQueryable, options: { anchor?: { id: string; hash: string }; batch?: number } = {}): Promise<AuditVerification> {
  const batch = options.batch ?? 1000
  let after = '0'
  let prev: string | undefined
  let checked = 0
  let unchained = 0
  let head: AuditVerification['head'] = null
  let anchorSeen = false
  const result = (broken?: AuditVerification['broken']): AuditVerification => ({ ok: broken === undefined, checked, unchained, head, ...(broken ? { broken } : {}) })
  for (;;) {
    const { rows } = await db.query(`select a.id::text as id, a.actor, a.role, a.action, a.target, a.detail, a.at, a.prev_hash, a.hash from lifeline_dlq_audit a where a.id > $1::int8 order by a.id limit $2`, [after, batch])
    for (const r of rows as SqlRow[]) {
      const id = r.id as string
      after = id
      if (r.hash === null || r.hash === undefined) {
        if (prev === undefined) {
          unchained++
          continue
        }
        return result({ id, reason: 'no hash: a row added behind the chain' })
      }
      const expectedPrev = prev ?? AUDIT_GENESIS
      if (r.prev_hash !== expectedPrev) return result({ id, reason: 'out of chain: a row before it was removed, inserted or rechained' })
      const hash = auditHash(expectedPrev, { id, actor: r.actor as string, role: (r.role as string | null) ?? null, action: r.action as string, target: (r.target as string | null) ?? null, detail: r.detail ?? {}, at: r.at as Date })
      if (hash !== r.hash) return result({ id, reason: 'changed: its content is not what was hashed' })
      if (options.anchor && options.anchor.id === id) {
        if (options.anchor.hash !== hash) return result({ id, reason: 'not the anchor: the chain was rewritten up to here' })
        anchorSeen = true
      }
      prev = hash
      head = { id, hash }
      checked++
    }
    if (rows.length < batch) break
  }
  if (options.anchor && !anchorSeen) return result({ id: options.anchor.id, reason: 'the anchor row is gone: the chain was cut short or rewritten' })
  return result()
}

const FIELDS = new Set(['actor', 'action', 'target', 'from', 'to', 'afterId', 'order', 'limit'])

function text(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string' || value.length > 500 || value.includes('\u0000')) throw invalidArgument(`audit filter ${field} must be a string of at most 500 characters`, { field })
  return value
}

function int(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  const n = typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw invalidArgument(`audit filter ${field} must be an integer from ${min} to ${max}`, { field })
  return n
}

function time(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  let ms = NaN
  if (typeof value === 'number' || (typeof value === 'string' && /^\d{1,16}$/.test(value))) ms = Number(value)
  else if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/.test(value)) ms = Date.parse(value)
  if (!Number.isFinite(ms) || ms < 0 || ms > Date.UTC(9999, 11, 31)) throw invalidArgument(`audit filter ${field} must be a time: ms since the epoch or ISO-8601 text`, { field })
  return new Date(ms).toISOString()
}

/** Audit rows matching `filter` (validated: LL_ARGUMENT_INVALID names the bad field), by id. */
export async function listAudit(db: SqlQueryable, filter: AuditFilter | Record<string, unknown> = {}): Promise<AuditRow[]> {
  if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) throw invalidArgument('audit filter must be an object', { field: 'filter' })
  const f = filter as Record<string, unknown>
  for (const key of Object.keys(f)) if (!FIELDS.has(key)) throw invalidArgument(`audit filter ${key} is not a filter field (fields: ${[...FIELDS].join(', ')})`, { field: key })
  const order = f.order === undefined || f.order === '' ? 'asc' : f.order
  if (order !== 'asc' && order !== 'desc') throw invalidArgument('audit filter order must be asc or desc', { field: 'order' })
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
    `select id, actor, role, action, target, detail, at, hash from lifeline_dlq_audit where ${clauses.length === 0 ? 'true' : clauses.join(' and ')} order by id ${order === 'asc' ? 'asc' : 'desc'} limit ${p(limit)}`,
    params,
  )
  return rows.map((r) => ({
    id: String(r.id),
    hash: (r.hash as string | null) ?? null,
    actor: r.actor as string,
    role: (r.role as string | null) ?? null,
    action: r.action as string,
    target: (r.target as string | null) ?? null,
    detail: (r.detail as Record<string, unknown> | null) ?? {},
    at: r.at as Date,
  }))
}
