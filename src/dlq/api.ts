/**
 * The DLQ processor's HTTP API (hono): records, groups, replays, edits, discards, bulk redrives and their
 * jobs, approvals, the audit log and tokens. Documented in docs/api.md; `GET /openapi.json` describes it.
 *
 * This file builds the app; its parts live in `http/`: `routes.ts` (the routing table and the OpenAPI
 * description), `io.ts` (validation, errors, response shapes), `guard.ts` (tokens, roles, refusals),
 * `context.ts` (what handlers share), the handlers by area (`records-endpoints.ts`, `jobs-endpoints.ts`,
 * `approvals-endpoints.ts`, `admin-endpoints.ts`) and `serve.ts`.
 *
 * - Every endpoint but `GET /health` needs `Authorization: Bearer <token>` (401 without a valid one) and the
 *   role its action needs ({@link ACTION_ROLES}; 403 below it); what a request asks for may need more
 *   (another replay target, force: the approver role, permissions.ts; four-eyes by owner: approvals.ts).
 * - Every input is validated (query strings by the records store's filter parser, bodies by typebox schemas
 *   after a nesting check, ids by pattern): a bad one is a 400 `{ error: { code, message } }`, never a 500
 *   or an SQL error.
 * - Every error is a LifelineError whose code maps to a status by one table (`HTTP_STATUS_OF_CODE` in
 *   http/io.ts): LL_ARGUMENT_INVALID / LL_SCHEMA_INVALID → 400, LL_UNAUTHORIZED → 401, LL_FORBIDDEN → 403,
 *   LL_NOT_FOUND → 404, LL_DLQ_CONFLICT / LL_REDRIVE_LIMIT / LL_KEY_NOT_PARKED / LL_DECRYPT → 409,
 *   LL_PAYLOAD_TOO_LARGE → 413, LL_KAFKA_* → 503 (Kafka's text only to an operator or above); anything else
 *   is a 500 LL_INTERNAL whose message says nothing of the cause (it is logged).
 * - Every write, approval, token change and read of a record's payload is audited in the transaction of
 *   what it records; refused requests are audited sampled (refusals.ts) and all counted in a metric.
 *
 * @module
 */
import { Hono } from 'hono'
import type { Registry } from 'prom-client'
import { bodyLimit } from 'hono/body-limit'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SqlExecutor } from '../store/executor.js'
import { parsePolicy, type ApprovalPolicy } from './approvals.js'
import { roleAtLeast, type Principal } from './auth.js'
import type { RefusalSamplerOptions } from './refusals.js'
import type { RedriveDeps } from './redrive/types.js'
import { adminEndpoints } from './http/admin-endpoints.js'
import { approvalEndpoints } from './http/approvals-endpoints.js'
import { apiContext, type Env, type Handler } from './http/context.js'
import { createGuard } from './http/guard.js'
import { errorResponse } from './http/io.js'
import { jobEndpoints } from './http/jobs-endpoints.js'
import { recordEndpoints } from './http/records-endpoints.js'
import { ENDPOINTS } from './http/routes.js'

export { ENDPOINTS, openApiDocument, Schemas, type Endpoint } from './http/routes.js'
export { TargetSchema } from './redrive/target.js'
export { errorResponse, HTTP_STATUS_OF_CODE, recordJson } from './http/io.js'
export { serveDlqApi, type ServedApi } from './http/serve.js'

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

/**
 * The hono app of the API (use `app.request()` in process, or {@link serveDlqApi}). Tokens are checked
 * against `lifeline_dlq_tokens` on every request.
 */
export function createDlqApi(options: DlqApiOptions): Hono<Env> {
  const { db } = options
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-api' })
  const ctx = apiContext({
    db,
    deps: options.deps,
    policy: parsePolicy(options.approvals),
    replayTopics: new Set(options.replayTopics ?? []),
    rates: rateOptions(options.redriveRate),
    logger,
    jobReady: (id) => options.onJobReady?.(String(id)),
    onJobResume: options.onJobResume,
  })
  const app = new Hono<Env>()

  app.use(
    '*',
    bodyLimit({
      maxSize: options.maxBodyBytes ?? dlqApiDefaults.maxBodyBytes,
      onError: () => {
        throw new LifelineError('LL_PAYLOAD_TOO_LARGE', `the body exceeds ${options.maxBodyBytes ?? dlqApiDefaults.maxBodyBytes} bytes`)
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
  app.notFound((c) => c.json({ error: { code: 'LL_NOT_FOUND', message: `no endpoint ${c.req.method} ${c.req.path}` } }, 404))

  const handlers: Record<string, Handler> = { ...adminEndpoints(ctx), ...recordEndpoints(ctx), ...jobEndpoints(ctx), ...approvalEndpoints(ctx) }
  const guard = createGuard({ db, logger, refusals: options.refusals, registry: options.metrics?.registry })
  for (const endpoint of ENDPOINTS) {
    const handler = handlers[`${endpoint.method} ${endpoint.path}`]
    if (handler === undefined) throw new Error(`no handler for ${endpoint.method} ${endpoint.path}`)
    app.on(endpoint.method.toUpperCase(), endpoint.path, guard(endpoint, handler))
  }
  return app
}
