/**
 * The DLQ API's routing table: every endpoint with the action (hence the role) it needs, the typebox schemas
 * its bodies are validated with, and the OpenAPI 3.1 description generated from both. The app is
 * `../api.ts`; requests and responses are shaped by `io.ts`.
 *
 * @module
 */
import Type, { type TSchema } from 'typebox'
import { ACTION_ROLES, ROLES, type Action } from '../auth.js'
import { TargetSchema } from '../redrive/target.js'

// ---------------------------------------------------------------------------------------------------------
// Schemas

const Id = Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'a positive integer id' })
const Reason = Type.String({ minLength: 1, maxLength: 2000 })

export const Schemas = {
  Replay: Type.Object({ target: Type.Optional(TargetSchema), force: Type.Optional(Type.Boolean({ description: 'replay even past the maximum number of redrives (loop detection)' })) }, { additionalProperties: false }),
  Edit: Type.Object(
    {
      value: Type.Unknown({ description: 'the new payload: any JSON value' }),
      reason: Type.Optional(Reason),
      replay: Type.Optional(Type.Boolean({ description: 'replay the edited version right after the edit' })),
      target: Type.Optional(TargetSchema),
    },
    { additionalProperties: false, required: ['value'] },
  ),
  ReplayEdited: Type.Object({ editId: Type.Optional(Id), target: Type.Optional(TargetSchema), force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
  Reason: Type.Object({ reason: Reason }, { additionalProperties: false }),
  Redrive: Type.Object(
    {
      filter: Type.Record(Type.String(), Type.Unknown(), { description: 'a records filter (docs/dlq.md#filters)' }),
      dryRun: Type.Optional(Type.Boolean({ description: 'only count: nothing is created' })),
      target: Type.Optional(TargetSchema),
      ratePerSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
      canary: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
      maxFailureRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      force: Type.Optional(Type.Boolean({ description: 'include records already replayed by an earlier redrive' })),
    },
    { additionalProperties: false },
  ),
  Token: Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }),
      role: Type.Union(ROLES.map((r) => Type.Literal(r))),
      owner: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$', description: 'the person or service identity holding the token (four-eyes compares owners)' }),
      expires: Type.Optional(Type.String({ minLength: 1, maxLength: 40, description: 'a duration (90d, 12h, 30m, 2w) or an ISO-8601 time' })),
    },
    { additionalProperties: false },
  ),
} as const

// ---------------------------------------------------------------------------------------------------------
// Endpoints

export interface Endpoint {
  method: 'get' | 'post' | 'delete'
  /** hono's form (`/v1/records/:id`). */
  path: string
  /** The action whose role it needs; null for `GET /health` (no token). */
  action: Action | null
  summary: string
  query?: string[]
  body?: TSchema
  /** Status → meaning, for the OpenAPI description. */
  responses: Record<number, string>
}

export const FILTER_QUERY = ['topic', 'dlqTopic', 'group', 'errorCode', 'errorClass', 'fingerprint', 'key', 'status', 'format', 'from', 'to', 'text']
export const PAGE_QUERY = ['afterId', 'order', 'limit']

/** Every endpoint with the action (hence the role) it needs: the API's one routing table. */
const endpoints: Endpoint[] = [
  { method: 'get', path: '/health', action: null, summary: 'liveness (no token)', responses: { 200: 'ok' } },
  { method: 'get', path: '/openapi.json', action: 'read', summary: 'this description (OpenAPI 3.1)', responses: { 200: 'the description' } },
  { method: 'get', path: '/v1/whoami', action: 'read', summary: "the token's name, role and owner", responses: { 200: '{ name, role, owner }' } },
  { method: 'get', path: '/v1/policy', action: 'read', summary: 'the approval policy', responses: { 200: '{ bulkThreshold?, edits?, discards? }' } },
  { method: 'get', path: '/v1/records', action: 'read', summary: 'list records matching a filter (no payloads)', query: [...FILTER_QUERY, ...PAGE_QUERY], responses: { 200: '{ records, nextAfterId }' } },
  { method: 'get', path: '/v1/records/count', action: 'read', summary: 'count records matching a filter', query: FILTER_QUERY, responses: { 200: '{ count }' } },
  { method: 'get', path: '/v1/records/:id', action: 'read', summary: 'one record with its payload (masked fields stay masked), events and lives (audited)', responses: { 200: 'the record', 404: 'no such record' } },
  { method: 'get', path: '/v1/groups', action: 'read', summary: 'the top N errors: records grouped by fingerprint', query: [...FILTER_QUERY, 'limit'], responses: { 200: '{ groups }' } },
  { method: 'post', path: '/v1/records/:id/replay', action: 'record.replay', summary: 'replay one record', body: Schemas.Replay, responses: { 200: 'the replay', 404: 'no such record', 409: 'the record cannot be replayed in its status' } },
  { method: 'post', path: '/v1/records/:id/edit', action: 'record.edit', summary: 'edit the payload (JSON; validated against the schema); 202 when the policy needs an approval', body: Schemas.Edit, responses: { 200: '{ editId, diff }', 202: '{ approval }', 404: 'no such record' } },
  { method: 'post', path: '/v1/records/:id/replay-edited', action: 'record.replay-edited', summary: 'replay the latest (or a given) edit', body: Schemas.ReplayEdited, responses: { 200: 'the replay', 404: 'no such record or edit', 409: 'the record cannot be replayed in its status' } },
  { method: 'post', path: '/v1/records/:id/discard', action: 'record.discard', summary: 'discard with a reason (never deleted); 202 when the policy needs an approval', body: Schemas.Reason, responses: { 200: 'done', 202: '{ approval }', 404: 'no such record', 409: 'final status' } },
  { method: 'post', path: '/v1/records/:id/resolve', action: 'record.resolve', summary: 'mark resolved (handled elsewhere) with a reason; 202 when the policy needs an approval', body: Schemas.Reason, responses: { 200: 'done', 202: '{ approval }', 404: 'no such record', 409: 'final status' } },
  { method: 'post', path: '/v1/redrives', action: 'redrive.create', summary: 'bulk redrive by filter: dryRun counts; else a job (202 awaiting approval above the threshold)', body: Schemas.Redrive, responses: { 200: '{ dryRun, count, keys, byTopic }', 201: '{ job }', 202: '{ job, approval }' } },
  { method: 'get', path: '/v1/jobs', action: 'read', summary: 'redrive jobs, newest first', query: ['status', 'limit'], responses: { 200: '{ jobs }' } },
  { method: 'get', path: '/v1/jobs/:id', action: 'read', summary: 'one job with its progress', responses: { 200: 'the job', 404: 'no such job' } },
  { method: 'post', path: '/v1/jobs/:id/pause', action: 'job.pause', summary: 'pause a running or ready job', responses: { 200: 'the job', 404: 'no such job', 409: 'not pausable' } },
  { method: 'post', path: '/v1/jobs/:id/resume', action: 'job.resume', summary: 'resume a paused job (the runner picks it up)', responses: { 202: '{ job, resuming: true }', 404: 'no such job', 409: 'not paused' } },
  { method: 'post', path: '/v1/jobs/:id/cancel', action: 'job.cancel', summary: 'cancel a job', responses: { 200: 'the job', 404: 'no such job', 409: 'already finished' } },
  { method: 'get', path: '/v1/approvals', action: 'read', summary: 'approvals, newest first: each with a summary, never a payload', query: ['status', 'limit'], responses: { 200: '{ approvals }' } },
  { method: 'get', path: '/v1/approvals/:id', action: 'read', summary: 'one approval with its payload (a record read: audited)', responses: { 200: 'the approval', 404: 'no such approval' } },
  { method: 'post', path: '/v1/approvals/:id/approve', action: 'approval.decide', summary: 'approve and execute (not by the requester)', responses: { 200: '{ approval, result }', 403: 'own request', 404: 'no such approval', 409: 'not pending' } },
  { method: 'post', path: '/v1/approvals/:id/reject', action: 'approval.decide', summary: 'reject with a reason (not by the requester)', body: Schemas.Reason, responses: { 200: '{ approval }', 403: 'own request', 404: 'no such approval', 409: 'not pending' } },
  { method: 'get', path: '/v1/audit', action: 'audit.read', summary: 'the audit log', query: ['actor', 'action', 'target', 'from', 'to', ...PAGE_QUERY], responses: { 200: '{ entries, nextAfterId }' } },
  { method: 'get', path: '/v1/tokens', action: 'token.manage', summary: 'tokens (never their hashes)', responses: { 200: '{ tokens }' } },
  { method: 'post', path: '/v1/tokens', action: 'token.manage', summary: 'create a token (owner required, expiry optional): the response holds it in clear, once', body: Schemas.Token, responses: { 201: '{ token, name, role, owner, expiresAt }', 409: 'name taken' } },
  { method: 'delete', path: '/v1/tokens/:name', action: 'token.manage', summary: 'revoke a token', responses: { 200: 'the revoked token', 404: 'no active token of that name' } },
]
export const ENDPOINTS: readonly Endpoint[] = Object.freeze(endpoints)

// ---------------------------------------------------------------------------------------------------------
// OpenAPI

/** The OpenAPI 3.1 description of {@link ENDPOINTS}, bodies from their typebox schemas. */
export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  const strip = (schema: TSchema): unknown => JSON.parse(JSON.stringify(schema))
  for (const e of ENDPOINTS) {
    const path = e.path.replace(/:([A-Za-z]+)/g, '{$1}')
    const params: unknown[] = []
    for (const m of e.path.matchAll(/:([A-Za-z]+)/g)) params.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })
    for (const q of e.query ?? []) params.push({ name: q, in: 'query', required: false, schema: q === 'status' ? { type: 'array', items: { type: 'string' } } : { type: 'string' }, ...(q === 'status' ? { style: 'form', explode: true } : {}) })
    const responses: Record<string, unknown> = {}
    for (const [status, description] of Object.entries(e.responses)) responses[status] = { description, content: { 'application/json': {} } }
    if (e.action !== null) {
      responses['400'] ??= { description: 'invalid input', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
      responses['401'] = { description: 'no or an invalid token', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
      responses['403'] = { description: `needs the ${ACTION_ROLES[e.action]} role`, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
    }
    paths[path] ??= {}
    paths[path][e.method] = {
      summary: e.summary,
      ...(e.action === null ? { security: [] } : { 'x-lifeline-role': ACTION_ROLES[e.action] }),
      ...(params.length === 0 ? {} : { parameters: params }),
      ...(e.body === undefined ? {} : { requestBody: { required: true, content: { 'application/json': { schema: strip(e.body) } } } }),
      responses,
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Lifeline DLQ processor', version: '1', description: 'Dead letters of every format: search, group, replay, edit, discard, bulk redrives, approvals and audit. See docs/api.md.' },
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a Lifeline token (llt_...)' } },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } } } },
      },
    },
    paths,
  }
}

