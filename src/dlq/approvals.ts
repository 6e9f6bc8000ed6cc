/**
 * Four-eyes approvals of the DLQ processor: under an {@link ApprovalPolicy}, a bulk redrive above a threshold,
 * an edit or a discard is not executed when asked for but stored as a `pending` row of
 * `lifeline_dlq_approvals`. A second person (not the requester, role `approver` or higher) approves it, which
 * executes it, or rejects it with a reason.
 *
 *     pending ──► approved ──► executed
 *        │           (execution failed: stays approved, the reason says why)
 *        └──► rejected
 *
 * Every request and decision is also an audit row.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../store/executor.js'
import { appendAudit } from './audit.js'
import { roleAtLeast, type Role } from './auth.js'

export interface ApprovalPolicy {
  /** A bulk redrive of more than this many records needs approval (none: never). */
  bulkThreshold?: number
  /** Edits (edit-and-replay) need approval. */
  edits?: boolean
  /** Every action that closes a record for good and releases its parked key (discard, resolve) needs approval. */
  discards?: boolean
}

export type ApprovalAction = 'redrive' | 'edit' | 'discard' | 'resolve'

/** The actions that close a record for good (and release its parked key): `discards` gates them all, by one rule. */
export const CLOSING_ACTIONS: ReadonlySet<ApprovalAction> = new Set(['discard', 'resolve'])
export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'executed'
export const APPROVAL_STATUSES: readonly ApprovalStatus[] = Object.freeze(['pending', 'approved', 'rejected', 'executed'])

export interface Approval {
  id: string
  action: ApprovalAction
  payload: Record<string, unknown>
  requestedBy: string
  status: ApprovalStatus
  decidedBy: string | null
  decidedAt: Date | null
  reason: string | null
  createdAt: Date
}

const invalid = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_ARGUMENT_INVALID', message, { details })

/** Validates a policy (LL_OPTIONS_INVALID) and returns a frozen copy. */
export function parsePolicy(input: unknown): Readonly<ApprovalPolicy> {
  if (input === undefined || input === null) return Object.freeze({})
  if (typeof input !== 'object' || Array.isArray(input)) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals must be an object')
  const p = input as Record<string, unknown>
  for (const k of Object.keys(p)) if (!['bulkThreshold', 'edits', 'discards'].includes(k)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: approvals.${k}: unknown option`)
  if (p.bulkThreshold !== undefined && (typeof p.bulkThreshold !== 'number' || !Number.isSafeInteger(p.bulkThreshold) || p.bulkThreshold < 0)) {
    throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: approvals.bulkThreshold: must be an integer >= 0')
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

function approvalId(id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalid('approval id must be a positive integer', { field: 'id' })
  return String(n)
}

const COLUMNS = 'id, action, payload, requested_by, status, decided_by, decided_at, reason, created_at'
const toApproval = (r: SqlRow): Approval => ({
  id: String(r.id),
  action: r.action as ApprovalAction,
  payload: (r.payload as Record<string, unknown>) ?? {},
  requestedBy: r.requested_by as string,
  status: r.status as ApprovalStatus,
  decidedBy: (r.decided_by as string | null) ?? null,
  decidedAt: (r.decided_at as Date | null) ?? null,
  reason: (r.reason as string | null) ?? null,
  createdAt: r.created_at as Date,
})

/** Stores a pending approval (and its audit row) in one transaction. */
export async function requestApproval(
  db: SqlExecutor,
  input: { action: ApprovalAction; payload: Record<string, unknown>; requestedBy: string; role?: Role; target?: string },
): Promise<Approval> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query(`insert into lifeline_dlq_approvals (action, payload, requested_by) values ($1, $2::jsonb, $3) returning ${COLUMNS}`, [
      input.action,
      JSON.stringify(input.payload),
      input.requestedBy,
    ])
    const approval = toApproval(rows[0]!)
    await appendAudit(tx, { actor: input.requestedBy, role: input.role, action: 'approval.request', target: `approval:${approval.id}`, detail: { action: input.action, on: input.target ?? null } })
    return approval
  })
}

/** One approval; LL_NOT_FOUND when there is none. */
export async function getApproval(db: SqlQueryable, id: string | number): Promise<Approval> {
  const aid = approvalId(id)
  const { rows } = await db.query(`select ${COLUMNS} from lifeline_dlq_approvals where id = $1`, [aid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `approval ${aid} does not exist`, { details: { id: aid } })
  return toApproval(rows[0]!)
}

/** Approvals, newest first, optionally of one status (validated). */
export async function listApprovals(db: SqlQueryable, options: { status?: unknown; limit?: unknown } = {}): Promise<Approval[]> {
  const status = options.status === undefined || options.status === '' ? undefined : options.status
  if (status !== undefined && !(APPROVAL_STATUSES as readonly unknown[]).includes(status)) throw invalid(`status must be one of ${APPROVAL_STATUSES.join(', ')}`, { field: 'status' })
  const rawLimit = options.limit === undefined || options.limit === '' ? 100 : typeof options.limit === 'string' && /^\d{1,6}$/.test(options.limit) ? Number(options.limit) : options.limit
  if (typeof rawLimit !== 'number' || !Number.isSafeInteger(rawLimit) || rawLimit < 1 || rawLimit > 1000) throw invalid('limit must be an integer from 1 to 1000', { field: 'limit' })
  const { rows } = await db.query(`select ${COLUMNS} from lifeline_dlq_approvals where ($1::text is null or status = $1) order by id desc limit $2`, [status ?? null, rawLimit])
  return rows.map(toApproval)
}

function checkDecider(approval: Approval, actor: string, role: Role): void {
  if (!roleAtLeast(role, 'approver')) throw invalid(`deciding on an approval needs the approver role (${actor} is ${role})`, { forbidden: true })
  if (approval.requestedBy === actor) throw invalid(`approval ${approval.id} was requested by ${actor}: a second person must decide on it`, { forbidden: true, id: approval.id })
}

async function lockPending(tx: SqlQueryable, aid: string): Promise<Approval> {
  const { rows } = await tx.query(`select ${COLUMNS} from lifeline_dlq_approvals where id = $1 for update`, [aid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `approval ${aid} does not exist`, { details: { id: aid } })
  const approval = toApproval(rows[0]!)
  if (approval.status !== 'pending') throw invalid(`approval ${aid} is ${approval.status}, not pending`, { conflict: true, id: aid, status: approval.status })
  return approval
}

/**
 * Approves a pending approval and executes it with `execute`. The requester may not approve their own
 * request and the decider needs the approver role (LL_ARGUMENT_INVALID with `details.forbidden`); an
 * approval no longer pending is a conflict (`details.conflict`). The approval is `approved` before the
 * execution starts (nobody approves it twice) and `executed` once it succeeded; a failed execution leaves
 * it `approved` with the error in `reason`, and is rethrown.
 */
export async function approve<T>(
  db: SqlExecutor,
  id: string | number,
  decision: { actor: string; role: Role; execute: (approval: Approval) => Promise<T> },
): Promise<{ approval: Approval; result: T }> {
  const aid = approvalId(id)
  const approval = await db.transaction(async (tx) => {
    const current = await lockPending(tx, aid)
    checkDecider(current, decision.actor, decision.role)
    const { rows } = await tx.query(`update lifeline_dlq_approvals set status = 'approved', decided_by = $2, decided_at = now() where id = $1 returning ${COLUMNS}`, [aid, decision.actor])
    await appendAudit(tx, { actor: decision.actor, role: decision.role, action: 'approval.approve', target: `approval:${aid}`, detail: { action: current.action, requestedBy: current.requestedBy } })
    return toApproval(rows[0]!)
  })
  let result: T
  try {
    result = await decision.execute(approval)
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    await db.query('update lifeline_dlq_approvals set reason = $2 where id = $1', [aid, `execution failed: ${message}`.slice(0, 2000)])
    await appendAudit(db, { actor: decision.actor, role: decision.role, action: 'approval.execute-failed', target: `approval:${aid}`, detail: { action: approval.action, error: message.slice(0, 500) } })
    throw err
  }
  const { rows } = await db.query(`update lifeline_dlq_approvals set status = 'executed' where id = $1 returning ${COLUMNS}`, [aid])
  return { approval: toApproval(rows[0]!), result }
}

/** Rejects a pending approval with a reason (same checks as {@link approve}); `onReject` runs in the same transaction. */
export async function reject(
  db: SqlExecutor,
  id: string | number,
  decision: { actor: string; role: Role; reason: string; onReject?: (tx: SqlQueryable, approval: Approval) => Promise<void> },
): Promise<Approval> {
  const aid = approvalId(id)
  if (typeof decision.reason !== 'string' || decision.reason.trim() === '' || decision.reason.length > 2000) throw invalid('reason must be a non-empty string of at most 2000 characters', { field: 'reason' })
  return db.transaction(async (tx) => {
    const current = await lockPending(tx, aid)
    checkDecider(current, decision.actor, decision.role)
    const { rows } = await tx.query(`update lifeline_dlq_approvals set status = 'rejected', decided_by = $2, decided_at = now(), reason = $3 where id = $1 returning ${COLUMNS}`, [
      aid,
      decision.actor,
      decision.reason,
    ])
    const rejected = toApproval(rows[0]!)
    await decision.onReject?.(tx, rejected)
    await appendAudit(tx, { actor: decision.actor, role: decision.role, action: 'approval.reject', target: `approval:${aid}`, detail: { action: current.action, requestedBy: current.requestedBy, reason: decision.reason } })
    return rejected
  })
}
