/**
 * Four-eyes approvals of the DLQ processor: under an {@link ApprovalPolicy}, a bulk redrive above a threshold,
 * an edit or a closing action (discard, resolve) is not executed when asked for but stored as a `pending`
 * row of `lifeline_dlq_approvals`. A second person approves it, which executes it, or rejects it with a
 * reason: role `approver` or higher, and a token of another owner than the requester's (four-eyes is about
 * people, not token names). A pending approval expires (`expiresAfterMs`, default 24 h) and is void once
 * the requester's token is revoked; neither can then be decided.
 *
 *     pending ──► approved ──► executed
 *        │           (execution failed: stays approved, the reason says why)
 *        ├──► rejected
 *        ├──► expired   (past expires_at when someone tried to decide, or swept by the processor)
 *        └──► void      (the requester's token was revoked)
 *
 * Every request and decision is also an audit row.
 *
 * @module
 */
import { invalidArgument, LifelineError } from '../errors.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../store/executor.js'
import { appendAudit } from './audit.js'
import { roleAtLeast, type Principal } from './auth.js'

export interface ApprovalPolicy {
  /** A bulk redrive of more than this many records needs approval (none: never). */
  bulkThreshold?: number
  /** Edits (edit-and-replay) need approval. */
  edits?: boolean
  /** Every action that closes a record for good and releases its parked key (discard, resolve) needs approval. */
  discards?: boolean
  /**
   * The window `bulkThreshold` counts over, ms (default 1 h): a bulk redrive needs approval when the records
   * its requester's owner redrove without approval in the window, plus its own, exceed the threshold.
   */
  bulkWindowMs?: number
  /** How long a pending approval may wait for its decision, ms (default 24 h). */
  expiresAfterMs?: number
}

export const approvalDefaults = { expiresAfterMs: 24 * 3_600_000, bulkWindowMs: 3_600_000 } as const satisfies Partial<ApprovalPolicy>

export type ApprovalAction = 'redrive' | 'edit' | 'discard' | 'resolve'

/** The actions that close a record for good (and release its parked key): `discards` gates them all, by one rule. */
export const CLOSING_ACTIONS: ReadonlySet<ApprovalAction> = new Set(['discard', 'resolve'])

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'executed' | 'expired' | 'void'
export const APPROVAL_STATUSES: readonly ApprovalStatus[] = Object.freeze(['pending', 'approved', 'rejected', 'executed', 'expired', 'void'])

export interface Approval {
  id: string
  action: ApprovalAction
  payload: Record<string, unknown>
  /** The requester's token name. */
  requestedBy: string
  /** The requester's owner: nobody of this owner may decide. */
  owner: string
  status: ApprovalStatus
  decidedBy: string | null
  decidedAt: Date | null
  reason: string | null
  createdAt: Date
  /** After this, a pending approval is `expired`. */
  expiresAt: Date
}

const POLICY_FIELDS = ['bulkThreshold', 'bulkWindowMs', 'edits', 'discards', 'expiresAfterMs']

/** Validates a policy (LL_OPTIONS_INVALID) and returns a frozen copy. */
export function parsePolicy(input: unknown): Readonly<ApprovalPolicy> {
  if (input === undefined || input === null) return Object.freeze({})
  if (typeof input !== 'object' || Array.isArray(input)) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals must be an object')
  const p = input as Record<string, unknown>
  for (const k of Object.keys(p)) if (!POLICY_FIELDS.includes(k)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: approvals.${k}: unknown option`)
  if (p.bulkThreshold !== undefined && (typeof p.bulkThreshold !== 'number' || !Number.isSafeInteger(p.bulkThreshold) || p.bulkThreshold < 0)) {
    throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals.bulkThreshold: must be an integer >= 0')
  }
  if (p.expiresAfterMs !== undefined && (typeof p.expiresAfterMs !== 'number' || !Number.isSafeInteger(p.expiresAfterMs) || p.expiresAfterMs < 1000 || p.expiresAfterMs > 30 * 86_400_000)) {
    throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals.expiresAfterMs: must be an integer from 1000 (1 s) to 2592000000 (30 days)')
  }
  if (p.bulkWindowMs !== undefined && (typeof p.bulkWindowMs !== 'number' || !Number.isSafeInteger(p.bulkWindowMs) || p.bulkWindowMs < 1000 || p.bulkWindowMs > 30 * 86_400_000)) {
    throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals.bulkWindowMs: must be an integer from 1000 (1 s) to 2592000000 (30 days)')
  }
  for (const k of ['edits', 'discards']) if (p[k] !== undefined && typeof p[k] !== 'boolean') throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: approvals.${k}: must be a boolean`)
  return Object.freeze({ ...(p as ApprovalPolicy) })
}

/** Whether `action` needs a second person under `policy` (`count`: the records a redrive would send). */
export function needsApproval(policy: ApprovalPolicy, action: ApprovalAction, count = 0): boolean {
  if (action === 'redrive') return policy.bulkThreshold !== undefined && count > policy.bulkThreshold
  if (action === 'edit') return policy.edits === true
  if (CLOSING_ACTIONS.has(action)) return policy.discards === true
  return false
}

/**
 * The records `owner` redrove without an approval within the policy's window: items sent (or being sent) by
 * their jobs of the window, and items still to send in their open jobs. Jobs an approver approved do not
 * count (they were looked at). With `lock`, takes a transaction-scoped lock per owner first, so two jobs
 * created at once are counted one after the other (call it in the creating transaction).
 */
export async function ownerWindowCount(tx: SqlQueryable, owner: string, policy: ApprovalPolicy, options: { lock?: boolean; excludeJob?: string } = {}): Promise<number> {
  if (options.lock) await tx.query(`select pg_advisory_xact_lock(hashtextextended($1, 0))`, [`lifeline_dlq_bulk:${owner}`])
  const { rows } = await tx.query(
    `select count(*)::int8 as n from lifeline_dlq_job_items i join lifeline_dlq_jobs j on j.id = i.job_id
     where j.requested_owner = $1 and j.approved_by is null and j.id <> $3 and j.created_at > now() - ($2::int8 * interval '1 millisecond')
       and (i.status in ('sending', 'sent', 'failed') or (i.status = 'pending' and j.status in ('ready', 'running', 'paused')))`,
    [owner, policy.bulkWindowMs ?? approvalDefaults.bulkWindowMs, options.excludeJob ?? '0'],
  )
  return Number(rows[0]!.n)
}

function approvalId(id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalidArgument('approval id must be a positive integer', { field: 'id' })
  return String(n)
}

/**
 * The status as it stands now: a pending approval past its expiry is `expired`, one whose requester's token
 * was revoked is `void` (written so at the next decision attempt or sweep).
 */
const STATUS_NOW = `case when a.status = 'pending' and t.revoked_at is not null then 'void' when a.status = 'pending' and a.expires_at <= now() then 'expired' else a.status end`
const COLUMNS = `a.id, a.action, a.payload, a.requested_by, a.requested_owner, ${STATUS_NOW} as status, a.status as stored_status, a.decided_by, a.decided_at, a.reason, a.created_at, a.expires_at`
const FROM = 'lifeline_dlq_approvals a left join lifeline_dlq_tokens t on t.id = a.requested_token'
const toApproval = (r: SqlRow): Approval => ({
  id: String(r.id),
  action: r.action as ApprovalAction,
  payload: (r.payload as Record<string, unknown>) ?? {},
  requestedBy: r.requested_by as string,
  owner: r.requested_owner as string,
  status: r.status as ApprovalStatus,
  decidedBy: (r.decided_by as string | null) ?? null,
  decidedAt: (r.decided_at as Date | null) ?? null,
  reason: (r.reason as string | null) ?? null,
  createdAt: r.created_at as Date,
  expiresAt: r.expires_at as Date,
})

/** Stores a pending approval (and its audit row) in one transaction. */
export async function requestApproval(
  db: SqlExecutor,
  input: { action: ApprovalAction; payload: Record<string, unknown>; requester: Principal; target?: string; policy?: ApprovalPolicy },
): Promise<Approval> {
  return db.transaction((tx) => requestApprovalIn(tx, input))
}

/** {@link requestApproval} in the caller's transaction (with the action it gates). */
export async function requestApprovalIn(
  tx: SqlQueryable,
  input: { action: ApprovalAction; payload: Record<string, unknown>; requester: Principal; target?: string; policy?: ApprovalPolicy },
): Promise<Approval> {
  const expiresAfterMs = input.policy?.expiresAfterMs ?? approvalDefaults.expiresAfterMs
  const { rows } = await tx.query(
    `insert into lifeline_dlq_approvals (action, payload, requested_by, requested_owner, requested_token, created_at, expires_at)
     values ($1, $2::jsonb, $3, $4, $5, now(), now() + ($6::int8 * interval '1 millisecond')) returning id`,
    [input.action, JSON.stringify(input.payload), input.requester.name, input.requester.owner, input.requester.tokenId, expiresAfterMs],
  )
  const id = String(rows[0]!.id)
  await appendAudit(tx, { actor: input.requester.name, role: input.requester.role, action: 'approval.request', target: `approval:${id}`, detail: { action: input.action, on: input.target ?? null, owner: input.requester.owner } })
  return getApproval(tx, id)
}

/** One approval; LL_NOT_FOUND when there is none. */
export async function getApproval(db: SqlQueryable, id: string | number): Promise<Approval> {
  const aid = approvalId(id)
  const { rows } = await db.query(`select ${COLUMNS} from ${FROM} where a.id = $1`, [aid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `approval ${aid} does not exist`, { details: { id: aid } })
  return toApproval(rows[0]!)
}

/** Approvals, newest first, optionally of one status (validated; as it stands now: expired and void included). */
export async function listApprovals(db: SqlQueryable, options: { status?: unknown; limit?: unknown } = {}): Promise<Approval[]> {
  const status = options.status === undefined || options.status === '' ? undefined : options.status
  if (status !== undefined && !(APPROVAL_STATUSES as readonly unknown[]).includes(status)) throw invalidArgument(`status must be one of ${APPROVAL_STATUSES.join(', ')}`, { field: 'status' })
  const rawLimit = options.limit === undefined || options.limit === '' ? 100 : typeof options.limit === 'string' && /^\d{1,6}$/.test(options.limit) ? Number(options.limit) : options.limit
  if (typeof rawLimit !== 'number' || !Number.isSafeInteger(rawLimit) || rawLimit < 1 || rawLimit > 1000) throw invalidArgument('limit must be an integer from 1 to 1000', { field: 'limit' })
  const { rows } = await db.query(`select ${COLUMNS} from ${FROM} where ($1::text is null or ${STATUS_NOW} = $1) order by a.id desc limit $2`, [status ?? null, rawLimit])
  return rows.map(toApproval)
}

const forbidden = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_FORBIDDEN', message, { details })

function checkDecider(approval: Approval, decider: Principal): void {
  if (!roleAtLeast(decider.role, 'approver')) throw forbidden(`deciding on an approval needs the approver role (${decider.name} is ${decider.role})`)
  if (approval.owner === decider.owner) {
    throw forbidden(`approval ${approval.id} was requested by ${approval.owner} (token ${approval.requestedBy}): a second person must decide on it, not another token of ${decider.owner}`, { id: approval.id })
  }
}

/** Writes an approval found expired or void as such (its reason, `onClosed`, an audit row by `by`); returns why. */
async function closeStale(tx: SqlQueryable, a: Approval, by: { name: string; role: string | null }, onClosed: OnApprovalClosed | undefined): Promise<string> {
  const why = a.status === 'expired' ? `expired at ${a.expiresAt.toISOString()}` : `void: the requester's token ${a.requestedBy} was revoked`
  await tx.query('update lifeline_dlq_approvals set status = $2, reason = $3 where id = $1', [a.id, a.status, why])
  await onClosed?.(tx, a, why)
  await appendAudit(tx, { actor: by.name, role: by.role, action: `approval.${a.status}`, target: `approval:${a.id}`, detail: { action: a.action, requestedBy: a.requestedBy } })
  return why
}

/** Called, in the transaction that closes it, when an approval is rejected, expires or is void (a redrive's job is cancelled). */
export type OnApprovalClosed = (tx: SqlQueryable, approval: Approval, why: string) => Promise<void>

/**
 * Locks a pending approval for a decision. One found expired or void is written so (with `onClosed` and an
 * audit row) and reported, after the commit, as a conflict; one no longer pending is a conflict.
 */
async function decide<T>(db: SqlExecutor, aid: string, decider: Principal, onClosed: OnApprovalClosed | undefined, fn: (tx: SqlQueryable, current: Approval) => Promise<T>): Promise<T> {
  const outcome = await db.transaction(async (tx): Promise<{ done: T } | { refused: LifelineError }> => {
    const { rows } = await tx.query(`select ${COLUMNS} from ${FROM} where a.id = $1 for update of a`, [aid])
    if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `approval ${aid} does not exist`, { details: { id: aid } })
    const current = toApproval(rows[0]!)
    if (rows[0]!.stored_status === 'pending' && (current.status === 'expired' || current.status === 'void')) {
      const why = await closeStale(tx, current, decider, onClosed)
      return { refused: new LifelineError('LL_DLQ_CONFLICT', `approval ${aid} is ${why}: it can no longer be decided`, { details: { id: aid, status: current.status } }) }
    }
    if (current.status !== 'pending') throw new LifelineError('LL_DLQ_CONFLICT', `approval ${aid} is ${current.status}, not pending`, { details: { id: aid, status: current.status } })
    checkDecider(current, decider)
    return { done: await fn(tx, current) }
  })
  if ('refused' in outcome) throw outcome.refused
  return outcome.done
}

/**
 * Approves a pending approval and executes it with `execute`. The decider needs the approver role and
 * another owner than the requester's (LL_FORBIDDEN); an approval no longer pending, expired or void is a
 * conflict (LL_DLQ_CONFLICT). The approval is `approved` before the execution starts (nobody approves it
 * twice) and `executed` once it succeeded; a failed execution leaves it `approved` with the error in
 * `reason`, and is rethrown.
 */
export async function approve<T>(
  db: SqlExecutor,
  id: string | number,
  decision: { decider: Principal; execute: (approval: Approval) => Promise<T>; onClosed?: OnApprovalClosed; failureText?: (err: unknown) => string },
): Promise<{ approval: Approval; result: T }> {
  const aid = approvalId(id)
  const { decider } = decision
  const approval = await decide(db, aid, decider, decision.onClosed, async (tx, current) => {
    await tx.query(`update lifeline_dlq_approvals set status = 'approved', decided_by = $2, decided_at = now() where id = $1`, [aid, decider.name])
    await appendAudit(tx, { actor: decider.name, role: decider.role, action: 'approval.approve', target: `approval:${aid}`, detail: { action: current.action, requestedBy: current.requestedBy, owner: current.owner } })
    return getApproval(tx, aid)
  })
  let result: T
  try {
    result = await decision.execute(approval)
  } catch (err) {
    const message = decision.failureText ? decision.failureText(err) : err instanceof Error ? err.message : String(err)
    await db.query('update lifeline_dlq_approvals set reason = $2 where id = $1', [aid, `execution failed: ${message}`.slice(0, 2000)])
    await appendAudit(db, { actor: decider.name, role: decider.role, action: 'approval.execute-failed', target: `approval:${aid}`, detail: { action: approval.action, error: message.slice(0, 500) } })
    throw err
  }
  await db.query(`update lifeline_dlq_approvals set status = 'executed' where id = $1`, [aid])
  return { approval: await getApproval(db, aid), result }
}

/** Rejects a pending approval with a reason (same checks as {@link approve}); `onClosed` runs in the same transaction. */
export async function reject(db: SqlExecutor, id: string | number, decision: { decider: Principal; reason: string; onClosed?: OnApprovalClosed }): Promise<Approval> {
  const aid = approvalId(id)
  const { decider } = decision
  if (typeof decision.reason !== 'string' || decision.reason.trim() === '' || decision.reason.length > 2000) throw invalidArgument('reason must be a non-empty string of at most 2000 characters', { field: 'reason' })
  return decide(db, aid, decider, decision.onClosed, async (tx, current) => {
    await tx.query(`update lifeline_dlq_approvals set status = 'rejected', decided_by = $2, decided_at = now(), reason = $3 where id = $1`, [aid, decider.name, decision.reason])
    const rejected = await getApproval(tx, aid)
    await decision.onClosed?.(tx, rejected, `rejected by ${decider.name}: ${decision.reason}`)
    await appendAudit(tx, { actor: decider.name, role: decider.role, action: 'approval.reject', target: `approval:${aid}`, detail: { action: current.action, requestedBy: current.requestedBy, reason: decision.reason } })
    return rejected
  })
}

/** The {@link OnApprovalClosed} of redrives: the job a rejected, expired or void approval gated is cancelled. */
export const cancelGatedJob: OnApprovalClosed = async (tx, a, why) => {
  if (a.action !== 'redrive') return
  await tx.query(`update lifeline_dlq_jobs set status = 'cancelled', status_reason = $2, updated_at = now() where id = $1 and status = 'awaiting-approval'`, [String(a.payload.jobId), `approval ${a.id} ${why}`.slice(0, 2000)])
}

/** Writes every pending approval past its expiry (or with a revoked requester token) as expired or void; returns how many. */
export async function sweepApprovals(db: SqlExecutor, actor: string, onClosed?: OnApprovalClosed): Promise<number> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query(`select ${COLUMNS} from ${FROM} where a.status = 'pending' and (a.expires_at <= now() or t.revoked_at is not null) order by a.id limit 1000 for update of a skip locked`)
    for (const row of rows) await closeStale(tx, toApproval(row), { name: actor, role: null }, onClosed)
    return rows.length
  })
}
