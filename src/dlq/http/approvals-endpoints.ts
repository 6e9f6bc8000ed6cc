/**
 * The DLQ API's approval endpoints: list, read (an edit's payload is record data: audited as a record read),
 * approve (which executes the approved action as its requester) and reject.
 *
 * @module
 */
import { dlqConflict, publicErrorText } from '../../errors.js'
import { approve, cancelGatedJob, getApproval, listApprovals, reject, type Approval } from '../approvals.js'
import { appendAudit } from '../audit.js'
import type { Principal } from '../auth.js'
import { editRecord } from '../redrive/edit.js'
import { getJob } from '../redrive/jobs.js'
import { discardRecord, replayEdited, resolveRecord } from '../redrive/replay.js'
import type { RedriveTarget } from '../redrive/types.js'
import type { ApiContext, Handler } from './context.js'
import { approvalJson, pathId, queryObject } from './io.js'

/** A job awaiting approval becomes ready. */
async function releaseJob(ctx: ApiContext, jobId: string, approvedBy: string): Promise<unknown> {
  const { rowCount } = await ctx.db.query(`update lifeline_dlq_jobs set status = 'ready', approved_by = $2, updated_at = now() where id = $1 and status = 'awaiting-approval'`, [jobId, approvedBy])
  if (rowCount === 0) throw dlqConflict(`job ${jobId} is no longer awaiting approval`, { id: jobId })
  return getJob(ctx.db, jobId)
}

/** Executes an approved action as its requester (its audit rows name the approver and the approval). */
async function execute(ctx: ApiContext, approval: Approval, approver: Principal): Promise<unknown> {
  const { deps, auditOf } = ctx
  const p = approval.payload
  const actor = approval.requestedBy
  const as = { name: actor, role: null }
  const via = { approvedBy: approver.name, approval: approval.id }
  switch (approval.action) {
    case 'discard':
    case 'resolve': {
      const id = String(p.id)
      const close = approval.action === 'discard' ? discardRecord : resolveRecord
      await close(deps, id, { actor, reason: String(p.reason), audit: auditOf(as, `record.${approval.action}`, `record:${id}`, { ...via, reason: p.reason }) })
      return { id, status: approval.action === 'discard' ? 'discarded' : 'resolved' }
    }
    case 'edit': {
      const id = String(p.id)
      const edited = await editRecord(deps, id, { value: p.value, actor, ...(p.reason === undefined ? {} : { reason: String(p.reason) }), audit: auditOf(as, 'record.edit', `record:${id}`, via) })
      if (p.replay !== true) return edited
      const target = p.target as RedriveTarget | undefined
      const replay = await replayEdited(deps, id, { actor, editId: edited.editId, ...(target === undefined ? {} : { target }), audit: auditOf(as, 'record.replay-edited', `record:${id}`, { ...via, editId: edited.editId, target: target ?? { kind: 'origin' } }) })
      return { ...edited, replay }
    }
    case 'redrive': {
      const jobId = String(p.jobId)
      const job = await releaseJob(ctx, jobId, approver.name)
      ctx.jobReady(jobId)
      return job
    }
  }
}

/** The handlers of the approval endpoints, by `method path` (routes.ts). */
export function approvalEndpoints(ctx: ApiContext): Record<string, Handler> {
  const { db, auditOf } = ctx
  return {
    'get /v1/approvals': async (c) => {
      const q = queryObject(c, ['status', 'limit'])
      return c.json({ approvals: (await listApprovals(db, { status: q.status, limit: q.limit })).map((a) => approvalJson(a, { payload: false })) })
    },
    // An approval's payload (an edit's value) is record data: reading it is a record read, audited.
    'get /v1/approvals/:id': async (c, { principal }) => {
      const id = pathId(c, 'approval id')
      const approval = await db.transaction(async (tx) => {
        const read = await getApproval(tx, id)
        const record = read.action === 'redrive' ? undefined : String(read.payload.id)
        await appendAudit(tx, auditOf(principal, record === undefined ? 'approval.read' : 'record.read', record === undefined ? `approval:${read.id}` : `record:${record}`, { approval: read.id }))
        return read
      })
      return c.json(approvalJson(approval, { payload: true }))
    },
    'post /v1/approvals/:id/approve': async (c, { principal }) => {
      const id = pathId(c, 'approval id')
      const { approval, result } = await approve(db, id, { decider: principal, execute: (a) => execute(ctx, a, principal), onClosed: cancelGatedJob, failureText: publicErrorText })
      return c.json({ approval: approvalJson(approval, { payload: false }), result })
    },
    'post /v1/approvals/:id/reject': async (c, { principal, body }) => {
      const id = pathId(c, 'approval id')
      const { reason } = body as { reason: string }
      const approval = await reject(db, id, { decider: principal, reason, onClosed: cancelGatedJob })
      return c.json({ approval: approvalJson(approval, { payload: false }) })
    },
  }
}
