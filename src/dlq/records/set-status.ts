/**
 * The one way a record's status changes by hand or by a job: checked against {@link DLQ_TRANSITIONS} and
 * the caller's expected status under a row lock, recorded in `lifeline_dlq_events` (and the audit trail)
 * in the same transaction.
 *
 * @module
 */
import { dlqConflict, invalidArgument as invalid, LifelineError } from '../../errors.js'
import type { SqlExecutor } from '../../store/executor.js'
import { appendAudit } from '../audit.js'
import { recordId } from './filter.js'
import { DLQ_STATUSES, DLQ_TRANSITIONS, type DlqStatus, type StatusChange } from './types.js'
import { clean } from './values.js'

/**
 * Moves a record to `to` when {@link DLQ_TRANSITIONS} allows it from its current status (and it is `from`,
 * when given), and records the change in `lifeline_dlq_events`. LL_NOT_FOUND for an unknown id;
 * LL_DLQ_CONFLICT for a refused change; LL_ARGUMENT_INVALID for a bad argument.
 */
export async function setStatus(db: SqlExecutor, id: string | number, to: DlqStatus, change: StatusChange): Promise<{ id: string; from: DlqStatus; to: DlqStatus; at: Date }> {
  const rid = recordId(id)
  if (!DLQ_STATUSES.includes(to)) throw invalid(`status must be one of ${DLQ_STATUSES.join(', ')}`, { field: 'status' })
  if (change.from !== undefined && !DLQ_STATUSES.includes(change.from)) throw invalid(`from must be one of ${DLQ_STATUSES.join(', ')}`, { field: 'from' })
  if (typeof change.actor !== 'string' || change.actor.length === 0 || change.actor.length > 200) throw invalid('actor must be a non-empty string of at most 200 characters', { field: 'actor' })
  if (change.reason !== undefined && (typeof change.reason !== 'string' || change.reason.length > 2000)) throw invalid('reason must be a string of at most 2000 characters', { field: 'reason' })
  return db.transaction(async (tx) => {
    const { rows } = await tx.query('select status from lifeline_dlq_record_states where id = $1 for update', [rid])
    if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${rid} does not exist`, { details: { id: rid } })
    const current = rows[0]!.status as DlqStatus
    if (change.from !== undefined && change.from !== current) {
      throw dlqConflict(`DLQ record ${rid} is ${current}, not ${change.from}`, { id: rid, status: current, expected: change.from, to })
    }
    if (!DLQ_TRANSITIONS[current].includes(to)) {
      const allowed = DLQ_TRANSITIONS[current]
      throw dlqConflict(`DLQ record ${rid} cannot go from ${current} to ${to} (${allowed.length === 0 ? `${current} is final` : `allowed: ${allowed.join(', ')}`})`, { id: rid, status: current, to })
    }
    const reason = change.reason === undefined ? null : clean(change.reason)
    const actor = clean(change.actor)
    const { rows: updated } = await tx.query(
      `update lifeline_dlq_record_states set status = $2, status_reason = $3, status_actor = $4, status_at = now() where id = $1 returning status_at`,
      [rid, to, reason, actor],
    )
    await tx.query(`insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, $3, $4, $5, $6::jsonb)`, [
      rid, current, to, actor, reason, JSON.stringify(change.detail ?? {}),
    ])
    if (change.audit) await appendAudit(tx, change.audit)
    return { id: rid, from: current, to, at: updated[0]!.status_at as Date }
  })
}
