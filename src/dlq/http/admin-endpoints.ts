/**
 * The DLQ API's service and administration endpoints: health, the OpenAPI document, who the caller is,
 * the approval policy, the audit log and tokens (created and revoked with their audit row in one
 * transaction).
 *
 * @module
 */
import { listAudit } from '../audit.js'
import { createToken, listTokens, revokeToken, type TokenSpec } from '../auth.js'
import type { ApiContext, Handler } from './context.js'
import { queryObject } from './io.js'
import { openApiDocument, PAGE_QUERY } from './routes.js'

/** The handlers of the service, audit and token endpoints, by `method path` (routes.ts). */
export function adminEndpoints(ctx: ApiContext): Record<string, Handler> {
  const { db, policy, auditOf, inTransaction } = ctx
  return {
    'get /health': async (c) => c.json({ status: 'ok' }),
    'get /openapi.json': async (c) => c.json(openApiDocument()),
    'get /v1/whoami': async (c, { principal }) => c.json({ name: principal.name, role: principal.role, owner: principal.owner }),
    'get /v1/policy': async (c) => c.json(policy),

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
}
