/**
 * Bulk redrive jobs, apart from running them (./runner.ts): the dry run, creation (the item list frozen in
 * SQL, optionally gated by an approval decided in the creating transaction), reading and listing, pausing
 * and cancelling.
 *
 * @module
 */
import { dlqConflict, invalidArgument, LifelineError } from '../../errors.js'
import type { SqlQueryable } from '../../store/executor.js'
import { parseFilter } from '../records.js'
import { freezeItems, insertJob, previewCounts, selectCreatedJob, selectJob, selectJobs, setCreatedStatus, updateJobStatus } from './job-store.js'
import { redriveDefaults, type CreateJobOptions, type RedriveDeps, type RedriveJob, type RedriveJobOptions, type RedriveJobStatus } from './types.js'
import { parseTarget } from './target.js'
import { intIn, positiveId, text } from './validate.js'

export async function getJob(db: SqlQueryable, id: string): Promise<RedriveJob> {
  const jid = positiveId('job', id)
  const job = await selectJob(db, jid)
  if (job === undefined) throw new LifelineError('LL_NOT_FOUND', `redrive job ${jid} does not exist`, { details: { id: jid } })
  return job
}

const JOB_STATUSES: readonly RedriveJobStatus[] = ['awaiting-approval', 'ready', 'running', 'paused', 'completed', 'cancelled', 'failed']

/** Jobs, newest first: `status` (one or several), `limit` 1..1000 (default 100). */
export async function listJobs(db: SqlQueryable, opts: { status?: RedriveJobStatus | RedriveJobStatus[]; limit?: number } = {}): Promise<RedriveJob[]> {
  const statuses = opts.status === undefined ? undefined : Array.isArray(opts.status) ? opts.status : [opts.status]
  if (statuses?.some((s) => !JOB_STATUSES.includes(s))) throw invalidArgument(`status must be one of ${JOB_STATUSES.join(', ')}`, { field: 'status' })
  const limit = intIn('limit', opts.limit, 1, 1000) ?? 100
  return selectJobs(db, statuses, limit)
}

/** The filter without its paging fields, validated (LL_ARGUMENT_INVALID naming the field). */
function jobFilter(filter: unknown): { frozen: Record<string, unknown>; parsed: ReturnType<typeof parseFilter> } {
  const { afterId: _a, limit: _l, order: _o, ...frozen } = (filter ?? {}) as Record<string, unknown>
  return { frozen, parsed: parseFilter(frozen) }
}

/**
 * The dry run of a bulk redrive, counted in SQL (no record id is loaded): records matching `filter`,
 * distinct keys, by origin topic; `replayable` of them would be sent (pending, or with `force` also
 * replayed and replaying).
 */
export async function previewRedrive(
  deps: Pick<RedriveDeps, 'db'>,
  filter: unknown,
  opts: { force?: boolean } = {},
): Promise<{ count: number; keys: number; byTopic: Record<string, number>; replayable: number; originTopics: Array<string | null>; services: Array<string | null> }> {
  const { parsed } = jobFilter(filter)
  const rows = await previewCounts(deps.db, parsed, opts.force === true)
  const byTopic: Record<string, number> = {}
  let count = 0
  let keys = 0
  let replayableCount = 0
  const originTopics = new Set<string | null>()
  const services = new Set<string | null>()
  for (const r of rows) {
    byTopic[r.t as string] = Number(r.n)
    count += Number(r.n)
    keys += Number(r.keys)
    replayableCount += Number(r.replayable)
    for (const t of (r.topics as Array<string | null> | null) ?? []) originTopics.add(t)
    for (const v of (r.services as Array<string | null> | null) ?? []) services.add(v)
  }
  return { count, keys, byTopic, replayable: replayableCount, originTopics: [...originTopics], services: [...services] }
}

/**
 * Creates a bulk redrive job over the records matching `filter` now (the list is frozen, in SQL: no record id
 * is loaded): items in origin topic, key, origin offset order; records that are not replayable (not
 * `pending`, or `replayed`/`replaying` without force) or are waiting in another open job are skipped and
 * counted as such. `decide`, when given, runs in the creating transaction with the frozen counts and says
 * whether the job starts `ready` or `awaiting-approval` (it may write the approval there too).
 */
export async function createRedriveJob(deps: Pick<RedriveDeps, 'db'>, opts: CreateJobOptions): Promise<RedriveJob> {
  const actor = text('actor', opts.actor, 200)!
  const target = parseTarget(opts.target)
  const ratePerSec = intIn('ratePerSec', opts.ratePerSec, 1, 1_000_000)
  const canary = intIn('canary', opts.canary, 0, 1_000_000) ?? 0
  const maxFailureRate = opts.maxFailureRate ?? redriveDefaults.maxFailureRate
  if (typeof maxFailureRate !== 'number' || !(maxFailureRate >= 0 && maxFailureRate <= 1)) throw invalidArgument('maxFailureRate must be a number from 0 to 1', { field: 'maxFailureRate' })
  const status = opts.status ?? 'ready'
  if (status !== 'ready' && status !== 'awaiting-approval') throw invalidArgument('status must be ready or awaiting-approval', { field: 'status' })
  const options: RedriveJobOptions = {
    canaryWaitMs: intIn('canaryWaitMs', opts.canaryWaitMs, 0, 3_600_000) ?? redriveDefaults.canaryWaitMs,
    batchSize: intIn('batchSize', opts.batchSize, 1, 5000) ?? Math.max(1, Math.min(redriveDefaults.maxBatch, Math.floor((ratePerSec ?? 4 * redriveDefaults.maxBatch) / 4))),
    failureSample: intIn('failureSample', opts.failureSample, 1, 1_000_000) ?? redriveDefaults.failureSample,
  }
  if (canary === 0) options.canaryPassed = true
  const force = opts.force === true
  const { frozen: frozenFilter, parsed } = jobFilter(opts.filter)
  return deps.db.transaction(async (tx) => {
    const jobId = await insertJob(tx, { filter: frozenFilter, target, ratePerSec: ratePerSec ?? null, canary, maxFailureRate, force, status, actor, owner: opts.owner ?? null, options })
    const { total, skipped, originTopics, services } = await freezeItems(tx, jobId, parsed, force)
    if (opts.decide) {
      const decided = await opts.decide(tx, { id: jobId, total, replayable: total - skipped, originTopics, services })
      if (decided !== status) await setCreatedStatus(tx, jobId, decided)
    }
    return selectCreatedJob(tx, jobId)
  })
}

async function setJobStatus(db: SqlQueryable, id: string, actor: string, to: RedriveJobStatus, from: readonly RedriveJobStatus[], reason: string): Promise<RedriveJob> {
  const jid = positiveId('job', id)
  text('actor', actor, 200)
  const moved = await updateJobStatus(db, jid, to, from, reason)
  if (moved) return moved
  const job = await getJob(db, jid)
  if (job.status === to) return job
  throw dlqConflict(`redrive job ${jid} is ${job.status}: it cannot become ${to}`, { id: jid, status: job.status, to })
}

/** Pauses a job; its runner stops after the batch in hand (within a heartbeat). Resume with runRedriveJob. */
export function pauseJob(db: SqlQueryable, id: string, actor: string): Promise<RedriveJob> {
  return setJobStatus(db, id, actor, 'paused', ['ready', 'running'], `paused by ${actor}`)
}

/** Cancels a job: its remaining items are never sent (their records stay pending). */
export function cancelJob(db: SqlQueryable, id: string, actor: string): Promise<RedriveJob> {
  return setJobStatus(db, id, actor, 'cancelled', ['awaiting-approval', 'ready', 'running', 'paused'], `cancelled by ${actor}`)
}
