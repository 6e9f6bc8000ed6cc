/**
 * The DLQ processor's HTTP API (hono): records, groups, replays, edits, discards, bulk redrives and their
 * jobs, approvals, the audit log and tokens. Documented in docs/api.md; `GET /openapi.json` describes it.
 *
 * The routing table and the OpenAPI description are `api-routes.ts`; validation, errors and response shapes
 * `api-http.ts`.
 *
 * - Every endpoint but `GET /health` needs `Authorization: Bearer <token>` (401 without a valid one) and the
 *   role its action needs ({@link ACTION_ROLES}; 403 below it); what a request asks for may need more
 *   (another replay target, force: the approver role, permissions.ts; four-eyes by owner: approvals.ts).
 * - Every input is validated (query strings by the records store's filter parser, bodies by typebox schemas
 *   after a nesting check, ids by pattern): a bad one is a 400 `{ error: { code, message } }`, never a 500
 *   or an SQL error.
 * - LifelineError codes map to statuses (api-http.ts): LL_ARGUMENT_INVALID / LL_SCHEMA_INVALID → 400 (409
 *   when `details.conflict`), LL_FORBIDDEN → 403, LL_NOT_FOUND → 404, LL_DLQ_CONFLICT / LL_REDRIVE_LIMIT /
 *   LL_KEY_NOT_PARKED / LL_DECRYPT → 409, LL_KAFKA_* → 503 (Kafka's text only to an operator or above);
 *   anything else is a 500 whose message says nothing of the cause (it is logged).
 * - Every write, approval, token change and read of a record's payload is audited in the transaction of
 *   what it records; refused requests are audited sampled (refusals.ts) and all counted in a metric.
 *
 * @module
 */
import { serve } from '@hono/node-server'
import { Hono, type Context } from 'hono'
import { Counter, type Registry } from 'prom-client'
import { bodyLimit } from 'hono/body-limit'
import { LifelineError, publicErrorText } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import { ANONYMOUS_ACTOR } from './actors.js'
import { approvalJson, badRequest, bearer, checkFilter, errorResponse, HttpError, pathId, queryObject, readBody, recordJson } from './api-http.js'
import { ENDPOINTS, FILTER_QUERY, openApiDocument, PAGE_QUERY } from './api-routes.js'
import { approve, cancelGatedJob, getApproval, listApprovals, needsApproval, ownerWindowCount, parsePolicy, reject, requestApproval, requestApprovalIn, type Approval, type ApprovalPolicy } from './approvals.js'
import { appendAudit, listAudit, type AuditEntry } from './audit.js'
import { ACTION_ROLES, checkToken, createToken, listTokens, mayPerform, revokeToken, roleAtLeast, type Principal, type TokenSpec } from './auth.js'
import { elevatedReasons, requireApproverFor, type ElevatedReason, type ReplayScope } from './permissions.js'
import { RefusalSampler, type RefusalSamplerOptions } from './refusals.js'
import { countRecords, getRecord, getRecordSummary, groupRecords, listRecords, MAX_LIMIT, parseFilter } from './records.js'
import { editRecord, prepareEdit } from './redrive/edit.js'
import { cancelJob, createRedriveJob, getJob, listJobs, pauseJob, previewRedrive } from './redrive/jobs.js'
import { discardRecord, replayEdited, replayRecord, resolveRecord } from './redrive/replay.js'
import { runRedriveJob } from './redrive/runner.js'
import type { FrozenJob, RedriveDeps, RedriveJobStatus, RedriveTarget } from './redrive/types.js'
import { parseTarget } from './redrive/validate.js'
import { metric } from '../util/metric.js'

export { ENDPOINTS, openApiDocument, Schemas, TargetSchema, type Endpoint } from './api-routes.js'
export { errorResponse, recordJson, type ApiErrorCode } from './api-http.js'

// ---------------------------------------------------------------------------------------------------------
// The app

/** Defaults of {@link DlqApiOptions}. */
export const dlqApiDefaults = { ratePerSec: 500, maxRatePerSec: 5000, maxBodyBytes: 1024 * 1024 } as const

function rateOptions(input: DlqApiOptions['redriveRate']): { defaultPerSec: number; maxPerSec: number } {
  const defaultPerSec = input?.defaultPerSec ?? Math.min(dlqApiDefaults.ratePerSec, input?.maxPerSec ?? dlqApiDefaults.ratePerSec)
  const maxPerSec = input?.maxPerSec ?? Math.max(dlqApiDefaults.maxRatePerSec, defaultPerSec)
  for (const [name, v] of [['defaultPerSec', defaultPerSec], ['maxPerSec', maxPerSec]] as const) {
    if (!Number.isSafeInteger(v) || v < 1 || v > 1_000_000) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: redriveRate.${name}: must be an integer from 1 to 1000000`)
  }
  if (defaultPerSec > maxPerSec) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: redriveRate.defaultPerSec (${defaultPerSec}) is above redriveRate.maxPerSec (${maxPerSec})`)
  return { defaultPerSec, maxPerSec }
}

/** `lifeline_dlq_api_refusals_total{status}`: every refused request (401, 403, 409), written to the audit log or not. */
function refusalCounter(registry: Registry | undefined): (status: number) => void {
  if (!registry) return () => undefined
  const name = 'lifeline_dlq_api_refusals_total'
  const counter = metric(registry, name, () => new Counter({ name, help: 'Requests the DLQ API refused (401, 403, 409), by status; the audit log holds a sample of them.', labelNames: ['status'], registers: [registry] }))
  return (status) => counter.inc({ status: String(status) })
}

/** The peer address of a request served by node (unknown in process, e.g. app.request()); proxies' headers are not trusted. */
function remoteAddress(c: Context<Env>): string {
  const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming
  return incoming?.socket?.remoteAddress ?? 'unknown'
}

/** The fields of `o` among `keys` that are set. */
const pick = <T extends object>(o: T, ...keys: Array<keyof T>): Partial<T> => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Partial<T>

export interface DlqApiOptions {
  db: SqlExecutor
  /** What the redrive functions need (producer, masker, parked keys, schemas). */
  deps: RedriveDeps
  approvals?: ApprovalPolicy
  logger?: Logger
  /** Called when a job becomes ready (created without approval, or approved): the processor's runner picks it up. */
  onJobReady?: (jobId: string) => void
  /** Called when an operator resumes a paused job; without it the API runs the job itself, in the background. */
  onJobResume?: (jobId: string) => void
  /** Topics an operator may replay to besides a record's origin and its retry tiers (other targets need the approver role). */
  replayTopics?: string[]
  /**
   * Bulk redrive rates, records per second: `defaultPerSec` for a job that names none (default 500),
   * `maxPerSec` the most a job may ask for (default 5000; above it: 400).
   */
  redriveRate?: { defaultPerSec?: number; maxPerSec?: number }
  /** Largest request body, bytes (default 1 MiB). */
  maxBodyBytes?: number
  /** How refused requests are sampled into the audit log (all are counted in the metrics); see refusals.ts. */
  refusals?: RefusalSamplerOptions
  /** A prom-client registry for `lifeline_dlq_api_refusals_total` (docs/metrics.md). */
  metrics?: { registry: Registry }
}

type Env = { Variables: { principal: Principal } }

type Handler = (c: Context<Env>, input: { principal: Principal; body: unknown }) => Promise<Response>

/**
 * The hono app of the API (use `app.request()` in process, or {@link serveDlqApi}). Tokens are checked
 * against `lifeline_dlq_tokens` on every request.
 */
export function createDlqApi(options: DlqApiOptions): Hono<Env> {
  const { db, deps } = options
  const policy = parsePolicy(options.approvals)
  const replayTopics: ReadonlySet<string> = new Set(options.replayTopics ?? [])
  const rates = rateOptions(options.redriveRate)
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-api' })
  const jobReady = (id: unknown) => options.onJobReady?.(String(id))
  const app = new Hono<Env>()

  app.use(
    '*',
    bodyLimit({
      maxSize: options.maxBodyBytes ?? dlqApiDefaults.maxBodyBytes,
      onError: () => {
        throw new HttpError(413, 'HTTP_PAYLOAD_TOO_LARGE', `the body exceeds ${options.maxBodyBytes ?? dlqApiDefaults.maxBodyBytes} bytes`)
      },
    }),
  )

  app.onError((err, c) => {
    // Kafka's own text only to whoever may write (they asked for the send); a viewer gets the code.
    const principal = c.get('principal') as Principal | undefined
    const { status, code, message } = errorResponse(err, { showDependencyText: principal !== undefined && roleAtLeast(principal.role, 'operator') })
    if (status >= 500) logger.error({ err, method: c.req.method, path: c.req.path }, 'DLQ API request failed')
    return c.json({ error: { code, message } }, status as 400)
  })
  app.notFound((c) => c.json({ error: { code: 'HTTP_NOT_FOUND', message: `no endpoint ${c.req.method} ${c.req.path}` } }, 404))

  /** The audit row of an action by `principal` (written by the action, in its transaction). */
  const auditOf = (principal: { name: string; role: string | null }, action: string, target: string, detail: Record<string, unknown> = {}): AuditEntry => ({
    actor: principal.name,
    role: principal.role,
    action,
    target,
    detail,
  })

  /** Runs `action` and appends its audit row in one transaction (the row last: it holds the chain's lock until the commit). */
  const inTransaction = <T>(action: (tx: SqlQueryable) => Promise<T>, audit: AuditEntry): Promise<T> =>
    db.transaction(async (tx) => {
      const result = await action(tx)
      await appendAudit(tx, audit)
      return result
    })

  const refusalMetric = refusalCounter(options.metrics?.registry)
  const unauthorized = new RefusalSampler(options.refusals)
  const refusals = new RefusalSampler(options.refusals)

  /**
   * A refused request: counted, and (sampled per source: the address for a 401, the token for a 403 or a 409)
   * written to the audit log. Never throws: the refusal itself is what the caller gets.
   */
  async function logRefusal(c: Context<Env>, entry: { source: string; status: number; actor: string; role: string | null; action: string; detail: Record<string, unknown> }): Promise<void> {
    refusalMetric(entry.status)
    const sampler = entry.status === 401 ? unauthorized : refusals
    const { write, suppressed } = sampler.admit(entry.source)
    if (!write) return
    try {
      await appendAudit(db, { actor: entry.actor, role: entry.role, action: entry.action, target: `${c.req.method} ${c.req.path.slice(0, 200)}`, detail: { ...entry.detail, ...(suppressed > 0 ? { suppressed } : {}) } })
    } catch (err) {
      logger.error({ err }, 'the audit row of a refused request was not written')
    }
  }

  /** Executes an approved action as its requester (its audit rows name the approver and the approval). */
  async function execute(approval: Approval, approver: Principal): Promise<unknown> {
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
        const job = await releaseJob(jobId, approver.name)
        jobReady(jobId)
        return job
      }
    }
  }

  /** A job awaiting approval becomes ready. */
  async function releaseJob(jobId: string, approvedBy: string): Promise<unknown> {
    const { rowCount } = await db.query(`update lifeline_dlq_jobs set status = 'ready', approved_by = $2, updated_at = now() where id = $1 and status = 'awaiting-approval'`, [jobId, approvedBy])
    if (rowCount === 0) throw new LifelineError('LL_ARGUMENT_INVALID', `job ${jobId} is no longer awaiting approval`, { details: { conflict: true } })
    return getJob(db, jobId)
  }

  /** LL_FORBIDDEN unless `principal` may replay record `id` to `target` (with `force`): see permissions.ts. */
  async function authorizeReplay(principal: Principal, id: string, request: { target: RedriveTarget | undefined; force: boolean }, what: string): Promise<void> {
    const target = parseTarget(request.target)
    const record = await getRecordSummary(db, id) // 404 first
    const reasons = elevatedReasons({ target, force: request.force }, { originTopics: [record.originTopic], services: [record.service] }, replayTopics)
    requireApproverFor(principal, reasons, { target, what }, replayTopics)
  }

  /** Discard or resolve: both close a record for good, so one rule (CLOSING_ACTIONS in approvals.ts) gates them. */
  async function closeRecord(c: Context<Env>, { principal, body }: { principal: Principal; body: unknown }, verb: 'discard' | 'resolve'): Promise<Response> {
    const id = pathId(c)
    const { reason } = body as { reason: string }
    await getRecordSummary(db, id) // 404 before an approval is asked for
    if (needsApproval(policy, verb)) {
      const approval = await requestApproval(db, { action: verb, payload: { id, reason }, requester: principal, policy, target: `record:${id}` })
      return c.json({ approval: approvalJson(approval, { payload: false }) }, 202)
    }
    const close = verb === 'discard' ? discardRecord : resolveRecord
    await close(deps, id, { actor: principal.name, reason, audit: auditOf(principal, `record.${verb}`, `record:${id}`, { reason }) })
    return c.json({ id, status: verb === 'discard' ? 'discarded' : 'resolved' })
  }

  const handlers: Record<string, Handler> = {
    'get /health': async (c) => c.json({ status: 'ok' }),
    'get /openapi.json': async (c) => c.json(openApiDocument()),
    'get /v1/whoami': async (c, { principal }) => c.json({ name: principal.name, role: principal.role, owner: principal.owner }),
    'get /v1/policy': async (c) => c.json(policy),

    'get /v1/records': async (c) => {
      const filter = queryObject(c, [...FILTER_QUERY, ...PAGE_QUERY])
      checkFilter(filter)
      const parsed = parseFilter(filter)
      const records = await listRecords(db, filter)
      return c.json({ records, nextAfterId: records.length === parsed.limit ? records[records.length - 1]!.id : null })
    },
    'get /v1/records/count': async (c) => {
      const filter = queryObject(c, FILTER_QUERY)
      checkFilter(filter)
      return c.json({ count: await countRecords(db, filter) })
    },
    'get /v1/records/:id': async (c, { principal }) => {
      const id = pathId(c)
      const record = await db.transaction(async (tx) => {
        const read = await getRecord(tx, id)
        await appendAudit(tx, auditOf(principal, 'record.read', `record:${id}`))
        return read
      })
      return c.json(recordJson(record))
    },
    'get /v1/groups': async (c) => {
      const { limit, ...filter } = queryObject(c, [...FILTER_QUERY, 'limit'])
      checkFilter(filter)
      return c.json({ groups: await groupRecords(db, filter, { limit: (limit as string | undefined) ?? 20 }) })
    },

    'post /v1/records/:id/replay': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { target?: RedriveTarget; force?: boolean }
      await authorizeReplay(principal, id, { target: b.target, force: b.force === true }, `replaying record ${id}`)
      const audit = auditOf(principal, 'record.replay', `record:${id}`, { target: b.target ?? { kind: 'origin' }, force: b.force === true })
      return c.json(await replayRecord(deps, id, { actor: principal.name, ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }), audit }))
    },
    'post /v1/records/:id/edit': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { value: unknown; reason?: string; replay?: boolean; target?: RedriveTarget }
      await getRecordSummary(db, id) // 404 before an approval is asked for
      if (needsApproval(policy, 'edit')) {
        // Checked and masked now: the approval never holds a clear value typed into a masked field. The
        // approver sees the target in the approval: no role check on it here.
        const { text } = await prepareEdit(deps, id, b.value)
        const approval = await requestApproval(db, { action: 'edit', payload: { id, ...b, value: JSON.parse(text) as unknown }, requester: principal, policy, target: `record:${id}` })
        return c.json({ approval: approvalJson(approval, { payload: false }) }, 202)
      }
      if (b.replay === true) await authorizeReplay(principal, id, { target: b.target, force: false }, `replaying the edit of record ${id}`)
      const edited = await editRecord(deps, id, { value: b.value, actor: principal.name, ...(b.reason === undefined ? {} : { reason: b.reason }), audit: auditOf(principal, 'record.edit', `record:${id}`, { reason: b.reason ?? null }) })
      if (b.replay !== true) return c.json(edited)
      const audit = auditOf(principal, 'record.replay-edited', `record:${id}`, { editId: edited.editId, target: b.target ?? { kind: 'origin' } })
      const replay = await replayEdited(deps, id, { actor: principal.name, editId: edited.editId, ...(b.target === undefined ? {} : { target: b.target }), audit })
      return c.json({ ...edited, replay })
    },
    'post /v1/records/:id/replay-edited': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { editId?: string; target?: RedriveTarget; force?: boolean }
      await authorizeReplay(principal, id, { target: b.target, force: b.force === true }, `replaying the edit of record ${id}`)
      const audit = auditOf(principal, 'record.replay-edited', `record:${id}`, { editId: b.editId ?? null, target: b.target ?? { kind: 'origin' }, force: b.force === true })
      return c.json(await replayEdited(deps, id, { actor: principal.name, ...(b.editId === undefined ? {} : { editId: b.editId }), ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }), audit }))
    },
    'post /v1/records/:id/discard': (c, input) => closeRecord(c, input, 'discard'),
    'post /v1/records/:id/resolve': (c, input) => closeRecord(c, input, 'resolve'),

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
      if (b.ratePerSec !== undefined && b.ratePerSec > rates.maxPerSec) throw badRequest(`ratePerSec ${b.ratePerSec} is above this processor's cap of ${rates.maxPerSec} records per second`, 'ratePerSec')
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
      if (Number.isNaN(limit)) throw badRequest(`limit must be an integer from 1 to ${MAX_LIMIT}`, 'limit')
      const JOB_STATUSES = ['awaiting-approval', 'ready', 'running', 'paused', 'completed', 'cancelled', 'failed']
      if (q.status !== undefined && (typeof q.status !== 'string' || !JOB_STATUSES.includes(q.status))) throw badRequest(`status must be one of ${JOB_STATUSES.join(', ')}`, 'status')
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
        if (current.status !== 'paused') throw new LifelineError('LL_DLQ_CONFLICT', `redrive job ${id} is ${current.status}, not paused`, { details: { id, status: current.status } })
        return current
      }, auditOf(principal, 'job.resume', `job:${id}`, { outcome: 'ok' }))
      if (options.onJobResume) options.onJobResume(id)
      else void runRedriveJob(deps, id).catch((err: unknown) => logger.error({ err, job: id }, 'resumed redrive job failed'))
      return c.json({ job, resuming: true }, 202)
    },

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
      const { approval, result } = await approve(db, id, { decider: principal, execute: (a) => execute(a, principal), onClosed: cancelGatedJob, failureText: publicErrorText })
      return c.json({ approval: approvalJson(approval, { payload: false }), result })
    },
    'post /v1/approvals/:id/reject': async (c, { principal, body }) => {
      const id = pathId(c, 'approval id')
      const { reason } = body as { reason: string }
      const approval = await reject(db, id, { decider: principal, reason, onClosed: cancelGatedJob })
      return c.json({ approval: approvalJson(approval, { payload: false }) })
    },

    'get /v1/audit': async (c) => {
      const q = queryObject(c, ['actor', 'action', 'target', 'from', 'to', ...PAGE_QUERY])
      const entries = await listAudit(db, q)
      const limit = q.limit === undefined ? 100 : Number(q.limit)
      return c.json({ entries, nextAfterId: entries.length === limit ? entries[entries.length - 1]!.id : null })
    },
    'get /v1/tokens': async (c) => c.json({ tokens: await listTokens(db) }),
    'post /v1/tokens': async (c, { principal, body }) => {
      const b = body as TokenSpec
      const created = await inTransaction((tx) => createToken(tx, b), auditOf(principal, 'token.create', `token:${b.name}`, { role: b.role, owner: b.owner, expires: b.expires ?? null, outcome: 'ok' }))
      return c.json(created, 201)
    },
    'delete /v1/tokens/:name': async (c, { principal }) => {
      const name = c.req.param('name') ?? ''
      return c.json(await inTransaction((tx) => revokeToken(tx, name), auditOf(principal, 'token.revoke', `token:${name.slice(0, 100)}`, { outcome: 'ok' })))
    },
  }

  for (const endpoint of ENDPOINTS) {
    const handler = handlers[`${endpoint.method} ${endpoint.path}`]
    if (handler === undefined) throw new Error(`no handler for ${endpoint.method} ${endpoint.path}`)
    app.on(endpoint.method.toUpperCase(), endpoint.path, async (c) => {
      let principal: Principal = { name: ANONYMOUS_ACTOR, role: 'viewer', owner: ANONYMOUS_ACTOR, tokenId: '' }
      if (endpoint.action !== null) {
        const token = bearer(c.req.header('authorization'))
        const checked = token === undefined ? { refused: 'missing' as const } : await checkToken(db, token)
        if ('refused' in checked) {
          const why = checked.refused === 'missing' ? 'no bearer token' : checked.refused === 'expired' ? 'expired token' : 'invalid or revoked token'
          await logRefusal(c, { source: remoteAddress(c), status: 401, actor: ANONYMOUS_ACTOR, role: null, action: 'auth.failed', detail: { reason: why, from: remoteAddress(c) } })
          throw new HttpError(401, 'HTTP_UNAUTHORIZED', checked.refused === 'missing' ? 'this endpoint needs Authorization: Bearer <token>' : checked.refused === 'expired' ? 'the token has expired' : 'the token is invalid or revoked')
        }
        const found = checked.principal
        if (!mayPerform(found.role, endpoint.action)) {
          await logRefusal(c, { source: found.name, status: 403, actor: found.name, role: found.role, action: 'auth.forbidden', detail: { needs: ACTION_ROLES[endpoint.action], status: 403, code: 'HTTP_FORBIDDEN' } })
          throw new HttpError(403, 'HTTP_FORBIDDEN', `${endpoint.method.toUpperCase()} ${endpoint.path} needs the ${ACTION_ROLES[endpoint.action]} role; ${found.name} is ${found.role}`)
        }
        principal = found
        c.set('principal', found)
      }
      try {
        const body = endpoint.method === 'get' ? undefined : await readBody(c, endpoint.body)
        return await handler(c, { principal, body })
      } catch (err) {
        // Refusals (a role or four-eyes rule, a state that forbids it) are audited, sampled; the error goes on.
        const { status, code } = errorResponse(err)
        if ((status === 403 || status === 409) && endpoint.action !== null) {
          await logRefusal(c, { source: principal.name, status, actor: principal.name, role: principal.role, action: endpoint.action, detail: { outcome: 'refused', status, code } })
        }
        throw err
      }
    })
  }
  return app
}

// ---------------------------------------------------------------------------------------------------------
// Serving

export interface ServedApi {
  /** `http://host:port` (the port the system chose for port 0). */
  url: string
  port: number
  close(): Promise<void>
}

/** Serves `app` on `host:port` (port 0: any free port) until `close()`. */
export async function serveDlqApi(app: { fetch: (req: Request, env?: unknown) => Response | Promise<Response> }, options: { port: number; host?: string }): Promise<ServedApi> {
  const host = options.host ?? '127.0.0.1'
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: options.port, hostname: host }, (info) => {
      const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address
      let closing: Promise<void> | undefined
      resolve({
        url: `http://${shown}:${info.port}`,
        port: info.port,
        close: () =>
          (closing ??= new Promise<void>((res, rej) => {
            server.close((err) => (err ? rej(err) : res()))
            ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
          })),
      })
    })
    server.once('error', reject)
  })
}
