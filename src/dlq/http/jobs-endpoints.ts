/**
 * The DLQ API's bulk redrive endpoints: the dry run and creation of a job (its approval, when the policy or
 * the replay rules ask for one, written in the job's transaction), and listing, pausing, cancelling and
 * resuming jobs.
 *
 * @module
 */
import { dlqConflict, invalidArgument } from '../../errors.js'
import type { SqlQueryable } from '../../store/executor.js'
import { needsApproval, ownerWindowCount, requestApprovalIn, type Approval } from '../approvals.js'
import { appendAudit } from '../audit.js'
import { roleAtLeast } from '../auth.js'
import { elevatedReasons, type ElevatedReason, type ReplayScope } from '../permissions.js'
import { MAX_LIMIT } from '../records.js'
import { cancelJob, createRedriveJob, getJob, listJobs, pauseJob, previewRedrive } from '../redrive/jobs.js'
import { runRedriveJob } from '../redrive/runner.js'
import type { FrozenJob, RedriveJobStatus, RedriveTarget } from '../redrive/types.js'
import { parseTarget } from '../redrive/target.js'
import { pick, type ApiContext, type Handler } from './context.js'
import { approvalJson, checkFilter, pathId, queryObject } from './io.js'

const JOB_STATUSES = ['awaiting-approval', 'ready', 'running', 'paused', 'completed', 'cancelled', 'failed']

/** The handlers of the redrive and job endpoints, by `method path` (routes.ts). */
export function jobEndpoints(ctx: ApiContext): Record<string, Handler> {
  const { db, deps, policy, rates, replayTopics, logger, jobReady, auditOf, inTransaction } = ctx
  return {
    'post /v1/redrives': async (c, { principal, body }) => {
      const b = body as { filter: Record<string, unknown>; dryRun?: boolean; target?: RedriveTarget; ratePerSec?: number; canary?: number; maxFailureRate?: number; force?: boolean }
      checkFilter(b.filter) // 400 naming the bad field before anything else
      const target = parseTarget(b.target)
      const force = b.force === true
      const reasonsFor = (scope: ReplayScope): ElevatedReason[] => (roleAtLeast(principal.role, 'approver') ? [] : elevatedReasons({ target, force }, scope, replayTopics))
      if (b.dryRun === true) {
        const preview = await previewRedrive(deps, b.filter, { force })
        const windowCount = await ownerWindowCount(db, principal.owner, policy)
        const reasons = reasonsFor(preview)
        const gated = reasons.length > 0 || needsApproval(policy, 'redrive', windowCount + preview.replayable)
        return c.json({ dryRun: true, ...preview, windowCount, needsApproval: gated, reasons, ...(policy.bulkThreshold === undefined ? {} : { bulkThreshold: policy.bulkThreshold }) })
      }
      if (b.ratePerSec !== undefined && b.ratePerSec > rates.maxPerSec) throw invalidArgument(`ratePerSec ${b.ratePerSec} is above this processor's cap of ${rates.maxPerSec} records per second`, { field: 'ratePerSec' })
      const { dryRun: _dryRun, ...rest } = b
      const spec = { ...rest, ratePerSec: b.ratePerSec ?? rates.defaultPerSec }
      let approval: Approval | undefined
      // One transaction: the frozen item list is counted once, and the approval (if any) is written with the job.
      const decide = async (tx: SqlQueryable, frozen: FrozenJob): Promise<'ready' | 'awaiting-approval'> => {
        const windowCount = await ownerWindowCount(tx, principal.owner, policy, { lock: true, excludeJob: frozen.id })
        const reasons: string[] = reasonsFor(frozen)
        if (needsApproval(policy, 'redrive', windowCount + frozen.replayable)) reasons.push('threshold')
        const payload = { jobId: frozen.id, filter: b.filter, count: frozen.replayable, windowCount, target, force, reasons, ratePerSec: spec.ratePerSec, ...pick(b, 'canary', 'maxFailureRate') }
        if (reasons.length > 0) approval = await requestApprovalIn(tx, { action: 'redrive', payload, requester: principal, policy, target: `job:${frozen.id}` })
        await appendAudit(tx, auditOf(principal, 'redrive.create', `job:${frozen.id}`, { ...payload, total: frozen.total, outcome: reasons.length > 0 ? 'awaiting-approval' : 'ok' }))
        return reasons.length > 0 ? 'awaiting-approval' : 'ready'
      }
      const job = await createRedriveJob(deps, { ...spec, actor: principal.name, owner: principal.owner, decide })
      if (approval === undefined) {
        jobReady(job.id)
        return c.json({ job }, 201)
      }
      return c.json({ job, approval: approvalJson(approval, { payload: false }) }, 202)
    },
    'get /v1/jobs': async (c) => {
      const q = queryObject(c, ['status', 'limit'])
      const limit = q.limit === undefined ? 100 : typeof q.limit === 'string' && /^\d{1,4}$/.test(q.limit) && Number(q.limit) >= 1 && Number(q.limit) <= MAX_LIMIT ? Number(q.limit) : NaN
      if (Number.isNaN(limit)) throw invalidArgument(`limit must be an integer from 1 to ${MAX_LIMIT}`, { field: 'limit' })
      if (q.status !== undefined && (typeof q.status !== 'string' || !JOB_STATUSES.includes(q.status))) throw invalidArgument(`status must be one of ${JOB_STATUSES.join(', ')}`, { field: 'status' })
      return c.json({ jobs: await listJobs(db, { limit, ...(q.status === undefined ? {} : { status: q.status as RedriveJobStatus }) }) })
    },
    'get /v1/jobs/:id': async (c) => c.json(await getJob(db, pathId(c, 'job id'))),
    'post /v1/jobs/:id/pause': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      return c.json(await inTransaction((tx) => pauseJob(tx, id, principal.name), auditOf(principal, 'job.pause', `job:${id}`, { outcome: 'ok' })))
    },
    'post /v1/jobs/:id/cancel': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      return c.json(await inTransaction((tx) => cancelJob(tx, id, principal.name), auditOf(principal, 'job.cancel', `job:${id}`, { outcome: 'ok' })))
    },
    'post /v1/jobs/:id/resume': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      const job = await inTransaction(async (tx) => {
        const current = await getJob(tx, id)
        if (current.status !== 'paused') throw dlqConflict(`redrive job ${id} is ${current.status}, not paused`, { id, status: current.status })
        return current
      }, auditOf(principal, 'job.resume', `job:${id}`, { outcome: 'ok' }))
      if (ctx.onJobResume) ctx.onJobResume(id)
      else void runRedriveJob(deps, id).catch((err: unknown) => logger.error({ err, job: id }, 'resumed redrive job failed'))
      return c.json({ job, resuming: true }, 202)
    },
  }
}
