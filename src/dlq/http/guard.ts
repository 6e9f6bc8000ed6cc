/**
 * The DLQ API's gate: every endpoint but `GET /health` needs a bearer token (401) and the role its action
 * needs (403); refused requests (401, 403, and 403 / 409 refusals of the handler itself) are counted in
 * `lifeline_dlq_api_refusals_total` and written, sampled per source (refusals.ts), to the audit log.
 *
 * @module
 */
import type { Context } from 'hono'
import { Counter, type Registry } from 'prom-client'
import { LifelineError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { SqlExecutor } from '../../store/executor.js'
import { metric } from '../../util/metric.js'
import { ANONYMOUS_ACTOR } from '../actors.js'
import { appendAudit } from '../audit.js'
import { ACTION_ROLES, checkToken, mayPerform, type Principal } from '../auth.js'
import { RefusalSampler, type RefusalSamplerOptions } from '../refusals.js'
import type { Env, Handler } from './context.js'
import { bearer, errorResponse, readBody } from './io.js'
import type { Endpoint } from './routes.js'

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

interface Refusal {
  source: string
  status: number
  actor: string
  role: string | null
  action: string
  detail: Record<string, unknown>
}

/**
 * The gate of one app: `guard(endpoint, handler)` is the hono handler that authenticates, authorizes,
 * validates the body, runs `handler` and audits its refusals.
 */
export function createGuard(options: { db: SqlExecutor; logger: Logger; refusals?: RefusalSamplerOptions; registry?: Registry }): (endpoint: Endpoint, handler: Handler) => (c: Context<Env>) => Promise<Response> {
  const { db, logger } = options
  const refusalMetric = refusalCounter(options.registry)
  const unauthorized = new RefusalSampler(options.refusals)
  const refusals = new RefusalSampler(options.refusals)

  /**
   * A refused request: counted, and (sampled per source: the address for a 401, the token for a 403 or a 409)
   * written to the audit log. Never throws: the refusal itself is what the caller gets.
   */
  async function logRefusal(c: Context<Env>, entry: Refusal): Promise<void> {
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

  return (endpoint, handler) => async (c) => {
    let principal: Principal = { name: ANONYMOUS_ACTOR, role: 'viewer', owner: ANONYMOUS_ACTOR, tokenId: '' }
    if (endpoint.action !== null) {
      const token = bearer(c.req.header('authorization'))
      const checked = token === undefined ? { refused: 'missing' as const } : await checkToken(db, token)
      if ('refused' in checked) {
        const why = checked.refused === 'missing' ? 'no bearer token' : checked.refused === 'expired' ? 'expired token' : 'invalid or revoked token'
        await logRefusal(c, { source: remoteAddress(c), status: 401, actor: ANONYMOUS_ACTOR, role: null, action: 'auth.failed', detail: { reason: why, from: remoteAddress(c) } })
        throw new LifelineError('LL_UNAUTHORIZED', checked.refused === 'missing' ? 'this endpoint needs Authorization: Bearer <token>' : checked.refused === 'expired' ? 'the token has expired' : 'the token is invalid or revoked')
      }
      const found = checked.principal
      if (!mayPerform(found.role, endpoint.action)) {
        await logRefusal(c, { source: found.name, status: 403, actor: found.name, role: found.role, action: 'auth.forbidden', detail: { needs: ACTION_ROLES[endpoint.action], status: 403, code: 'LL_FORBIDDEN' } })
        throw new LifelineError('LL_FORBIDDEN', `${endpoint.method.toUpperCase()} ${endpoint.path} needs the ${ACTION_ROLES[endpoint.action]} role; ${found.name} is ${found.role}`)
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
  }
}
