/**
 * The DLQ processor's HTTP API (hono): records, groups, replays, edits, discards, bulk redrives and their
 * jobs, approvals, the audit log and tokens. Documented in docs/api.md; `GET /openapi.json` describes it.
 *
 * - Every endpoint but `GET /health` needs `Authorization: Bearer <token>` (401 without a valid one) and the
 *   role its action needs ({@link ACTION_ROLES}; 403 below it).
 * - Every input is validated (query strings by the records store's filter parser, bodies by typebox schemas,
 *   ids by pattern): a bad one is a 400 `{ error: { code, message } }`, never a 500 or an SQL error.
 * - LifelineError codes map to statuses: LL_ARGUMENT_INVALID / LL_SCHEMA_INVALID → 400 (409 when
 *   `details.conflict`, 403 when `details.forbidden`), LL_NOT_FOUND → 404, LL_DLQ_CONFLICT / LL_REDRIVE_LIMIT /
 *   LL_KEY_NOT_PARKED → 409, LL_KAFKA_* → 503; anything else is a 500 whose message says nothing of the
 *   cause (it is logged).
 * - Every write, approval, token change, refused request and read of a record's payload is audited.
 *
 * @module
 */
import { serve } from '@hono/node-server'
import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import Type, { type TSchema } from 'typebox'
import Value from 'typebox/value'
import { isLifelineError, LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SqlExecutor } from '../store/executor.js'
import { approve, getApproval, listApprovals, needsApproval, parsePolicy, reject, requestApproval, type Approval, type ApprovalPolicy, cancelGatedJob } from './approvals.js'
import { appendAudit, listAudit } from './audit.js'
import { ANONYMOUS_ACTOR } from './actors.js'
import { ACTION_ROLES, checkToken, createToken, listTokens, mayPerform, revokeToken, ROLES, type Action, type Principal, type TokenSpec } from './auth.js'
import { countRecords, getRecord, groupRecords, listRecords, MAX_LIMIT, parseFilter, type DlqRecordDetail } from './records.js'
import * as redrive from './redrive.js'

// ---------------------------------------------------------------------------------------------------------
// Schemas

const Id = Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'a positive integer id' })
const Reason = Type.String({ minLength: 1, maxLength: 2000 })
const TopicName = Type.String({ minLength: 1, maxLength: 249, pattern: '^[A-Za-z0-9._-]+$' })

export const TargetSchema = Type.Union(
  [
    Type.Object({ kind: Type.Literal('origin') }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('retry-tier'), tier: Type.Integer({ minimum: 1, maximum: 100 }), service: Type.String({ minLength: 1, maxLength: 249 }) }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('topic'), topic: TopicName, partition: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })) }, { additionalProperties: false }),
  ],
  { description: 'where to replay: the origin topic and partition from the headers (default), a retry tier of a service, or a topic (and partition)' },
)

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

const FILTER_QUERY = ['topic', 'dlqTopic', 'group', 'errorCode', 'errorClass', 'fingerprint', 'key', 'status', 'format', 'from', 'to', 'text']
const PAGE_QUERY = ['afterId', 'order', 'limit']

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
  { method: 'get', path: '/v1/approvals', action: 'read', summary: 'approvals, newest first', query: ['status', 'limit'], responses: { 200: '{ approvals }' } },
  { method: 'get', path: '/v1/approvals/:id', action: 'read', summary: 'one approval', responses: { 200: 'the approval', 404: 'no such approval' } },
  { method: 'post', path: '/v1/approvals/:id/approve', action: 'approval.decide', summary: 'approve and execute (not by the requester)', responses: { 200: '{ approval, result }', 403: 'own request', 404: 'no such approval', 409: 'not pending' } },
  { method: 'post', path: '/v1/approvals/:id/reject', action: 'approval.decide', summary: 'reject with a reason (not by the requester)', body: Schemas.Reason, responses: { 200: '{ approval }', 403: 'own request', 404: 'no such approval', 409: 'not pending' } },
  { method: 'get', path: '/v1/audit', action: 'audit.read', summary: 'the audit log', query: ['actor', 'action', 'target', 'from', 'to', ...PAGE_QUERY], responses: { 200: '{ entries, nextAfterId }' } },
  { method: 'get', path: '/v1/tokens', action: 'token.manage', summary: 'tokens (never their hashes)', responses: { 200: '{ tokens }' } },
  { method: 'post', path: '/v1/tokens', action: 'token.manage', summary: 'create a token (owner required, expiry optional): the response holds it in clear, once', body: Schemas.Token, responses: { 201: '{ token, name, role, owner, expiresAt }', 409: 'name taken' } },
  { method: 'delete', path: '/v1/tokens/:name', action: 'token.manage', summary: 'revoke a token', responses: { 200: 'the revoked token', 404: 'no active token of that name' } },
]
export const ENDPOINTS: readonly Endpoint[] = Object.freeze(endpoints)

// ---------------------------------------------------------------------------------------------------------
// Errors

/** The API's own error codes (a LifelineError keeps its code). */
export type ApiErrorCode = 'HTTP_UNAUTHORIZED' | 'HTTP_FORBIDDEN' | 'HTTP_NOT_FOUND' | 'HTTP_PAYLOAD_TOO_LARGE' | 'HTTP_NOT_IMPLEMENTED' | 'HTTP_INTERNAL'

class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 501,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

const badRequest = (message: string, field?: string) => new LifelineError('LL_ARGUMENT_INVALID', message, { details: field === undefined ? {} : { field } })

const BAD_REQUEST_CODES: ReadonlySet<string> = new Set(['LL_ARGUMENT_INVALID', 'LL_SCHEMA_INVALID', 'LL_DECODE'])
/** Refusals because of the state of a record, job or key (the redrive's codes included). */
const CONFLICT_CODES: ReadonlySet<string> = new Set(['LL_DLQ_CONFLICT', 'LL_REDRIVE_LIMIT', 'LL_KEY_NOT_PARKED'])

/** The status and body of an error. */
export function errorResponse(err: unknown): { status: number; code: string; message: string } {
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message }
  if (isLifelineError(err)) {
    const code: string = err.code
    if (BAD_REQUEST_CODES.has(code)) return { status: err.details.forbidden === true ? 403 : err.details.conflict === true ? 409 : 400, code, message: err.message }
    if (code === 'LL_FORBIDDEN') return { status: 403, code, message: err.message }
    if (code === 'LL_NOT_FOUND') return { status: 404, code, message: err.message }
    if (CONFLICT_CODES.has(code)) return { status: 409, code, message: err.message }
    if (code.startsWith('LL_KAFKA_')) return { status: 503, code, message: `Kafka: ${err.message}` }
  }
  return { status: 500, code: 'HTTP_INTERNAL', message: 'internal error (logged by the processor)' }
}

// ---------------------------------------------------------------------------------------------------------
// Validation helpers

function problems(schema: TSchema, value: unknown): string[] {
  const out: string[] = []
  for (const e of Value.Errors(schema, value)) {
    if (e.keyword === 'boolean') continue
    const params = e.params as { additionalProperties?: string[]; requiredProperties?: string[] }
    const at = e.instancePath === '' ? 'body' : `body${e.instancePath.replaceAll('/', '.')}`
    if (e.keyword === 'additionalProperties' && params.additionalProperties) {
      for (const extra of params.additionalProperties) out.push(`${at}.${extra}: unknown field`)
      continue
    }
    out.push(`${at}: ${e.message}`)
    if (out.length >= 10) break
  }
  return out
}

async function readBody(c: Context, schema: TSchema | undefined): Promise<unknown> {
  const text = await c.req.text()
  if (schema === undefined) {
    if (text.trim() !== '' && text.trim() !== '{}') throw badRequest('this endpoint takes no body')
    return undefined
  }
  let body: unknown
  try {
    body = text.trim() === '' ? {} : JSON.parse(text)
  } catch {
    throw badRequest('the body is not valid JSON')
  }
  if (!Value.Check(schema, body)) throw badRequest(`invalid body: ${[...new Set(problems(schema, body))].join('; ')}`)
  return body
}

/** A query string as an object: a name given once is a string, several times a list (the filter parser refuses lists where it wants one value). */
function queryObject(c: Context, allowed: readonly string[]): Record<string, unknown> {
  const q = c.req.queries() as Record<string, string[]>
  const out: Record<string, unknown> = {}
  for (const [name, values] of Object.entries(q)) {
    if (!allowed.includes(name)) throw badRequest(`${name} is not a query parameter of this endpoint (parameters: ${allowed.join(', ')})`, name)
    const all = name === 'status' ? values.flatMap((v) => v.split(',')) : values
    out[name] = all.length === 1 ? all[0] : all
  }
  return out
}

const KAFKA_TOPIC = /^[A-Za-z0-9._-]{1,249}$/

/** Validates a records filter (the store's parser) and, more strictly than it, that topics are Kafka topic names. */
function checkFilter(filter: unknown): void {
  parseFilter(filter)
  const f = (filter ?? {}) as Record<string, unknown>
  for (const field of ['topic', 'dlqTopic']) {
    const v = f[field]
    if (typeof v === 'string' && v !== '' && !KAFKA_TOPIC.test(v)) throw badRequest(`filter.${field} must be a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'`, field)
  }
}

function pathId(c: Context, what = 'id'): string {
  const raw = c.req.param('id') ?? ''
  if (!/^[1-9][0-9]{0,15}$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw badRequest(`${what} must be a positive integer, got ${JSON.stringify(raw.slice(0, 40))}`, 'id')
  return raw
}

const bearer = (header: string | undefined): string | undefined => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return m?.[1]
}

// ---------------------------------------------------------------------------------------------------------
// Serialisation

function bytesJson(bytes: Buffer | null): { text: string | null; base64?: string } {
  if (bytes === null) return { text: null }
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes) ? { text } : { text: null, base64: bytes.toString('base64') }
}

/** A record for JSON: key, value and header values as UTF-8 text, or base64 (`*Base64`) when they are not text. Stored (masked) bytes as they are. */
export function recordJson(r: DlqRecordDetail): Record<string, unknown> {
  const { key, value, headers, ...rest } = r
  const k = bytesJson(key)
  const v = bytesJson(value)
  return {
    ...rest,
    key: k.text,
    ...(k.base64 === undefined ? {} : { keyBase64: k.base64 }),
    value: v.text,
    ...(v.base64 === undefined ? {} : { valueBase64: v.base64 }),
    headers: headers.map((h) => {
      const hv = bytesJson(h.value)
      return { key: h.key, value: hv.text, ...(hv.base64 === undefined ? {} : { valueBase64: hv.base64 }) }
    }),
  }
}

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

// ---------------------------------------------------------------------------------------------------------
// The app

export interface DlqApiOptions {
  db: SqlExecutor
  /** What the redrive functions need (producer, masker, parked keys, schemas). */
  deps: redrive.RedriveDeps
  approvals?: ApprovalPolicy
  logger?: Logger
  /** Called when a job becomes ready (created without approval, or approved): the processor's runner picks it up. */
  onJobReady?: (jobId: string) => void
  /** Called when an operator resumes a paused job; without it the API runs the job itself, in the background. */
  onJobResume?: (jobId: string) => void
  /** Largest request body, bytes (default 1 MiB). */
  maxBodyBytes?: number
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
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-api' })
  const jobReady = (id: unknown) => options.onJobReady?.(String(id))
  const app = new Hono<Env>()

  app.use(
    '*',
    bodyLimit({
      maxSize: options.maxBodyBytes ?? 1024 * 1024,
      onError: () => {
        throw new HttpError(413, 'HTTP_PAYLOAD_TOO_LARGE', `the body exceeds ${options.maxBodyBytes ?? 1024 * 1024} bytes`)
      },
    }),
  )

  app.onError((err, c) => {
    const { status, code, message } = errorResponse(err)
    if (status >= 500) logger.error({ err, method: c.req.method, path: c.req.path }, 'DLQ API request failed')
    return c.json({ error: { code, message } }, status as 400)
  })
  app.notFound((c) => c.json({ error: { code: 'HTTP_NOT_FOUND', message: `no endpoint ${c.req.method} ${c.req.path}` } }, 404))

  /** Audits a write (its outcome too) and runs it. */
  async function audited<T>(principal: Principal, action: string, target: string, detail: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn()
      await appendAudit(db, { actor: principal.name, role: principal.role, action, target, detail: { ...detail, outcome: 'ok' } })
      return result
    } catch (err) {
      const { status, code } = errorResponse(err)
      await appendAudit(db, { actor: principal.name, role: principal.role, action, target, detail: { ...detail, outcome: 'failed', status, code } }).catch((auditErr: unknown) =>
        logger.error({ err: auditErr }, 'audit row not written'),
      )
      throw err
    }
  }

  /** Executes an approved action as its requester. */
  async function execute(approval: Approval, approver: Principal): Promise<unknown> {
    const p = approval.payload
    const actor = approval.requestedBy
    const via = { approvedBy: approver.name, approval: approval.id }
    switch (approval.action) {
      case 'discard':
      case 'resolve': {
        const id = String(p.id)
        await (approval.action === 'discard' ? redrive.discardRecord : redrive.resolveRecord)(deps, id, { actor, reason: String(p.reason) })
        await appendAudit(db, { actor, action: `record.${approval.action}`, target: `record:${id}`, detail: { ...via, reason: p.reason, outcome: 'ok' } })
        return { id, status: approval.action === 'discard' ? 'discarded' : 'resolved' }
      }
      case 'edit': {
        const id = String(p.id)
        const edited = await redrive.editRecord(deps, id, { value: p.value, actor, ...(p.reason === undefined ? {} : { reason: String(p.reason) }) })
        await appendAudit(db, { actor, action: 'record.edit', target: `record:${id}`, detail: { ...via, editId: edited.editId, outcome: 'ok' } })
        if (p.replay !== true) return edited
        const replay = await redrive.replayEdited(deps, id, { actor, editId: edited.editId, ...(p.target === undefined ? {} : { target: p.target as redrive.RedriveTarget }) })
        await appendAudit(db, { actor, action: 'record.replay-edited', target: `record:${id}`, detail: { ...via, editId: edited.editId, outcome: 'ok' } })
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
    return redrive.getJob(db, jobId)
  }

  /** Discard or resolve: both close a record for good, so one rule (CLOSING_ACTIONS in approvals.ts) gates them. */
  async function closeRecord(c: Context<Env>, { principal, body }: { principal: Principal; body: unknown }, verb: 'discard' | 'resolve'): Promise<Response> {
    const id = pathId(c)
    const { reason } = body as { reason: string }
    await getRecord(db, id) // 404 before an approval is asked for
    if (needsApproval(policy, verb)) {
      const approval = await requestApproval(db, { action: verb, payload: { id, reason }, requester: principal, policy, target: `record:${id}` })
      return c.json({ approval }, 202)
    }
    const close = verb === 'discard' ? redrive.discardRecord : redrive.resolveRecord
    await audited(principal, `record.${verb}`, `record:${id}`, { reason }, () => close(deps, id, { actor: principal.name, reason }))
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
      const record = await getRecord(db, id)
      await appendAudit(db, { actor: principal.name, role: principal.role, action: 'record.read', target: `record:${id}` })
      return c.json(recordJson(record))
    },
    'get /v1/groups': async (c) => {
      const { limit, ...filter } = queryObject(c, [...FILTER_QUERY, 'limit'])
      checkFilter(filter)
      return c.json({ groups: await groupRecords(db, filter, { limit: (limit as string | undefined) ?? 20 }) })
    },

    'post /v1/records/:id/replay': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { target?: redrive.RedriveTarget; force?: boolean }
      const result = await audited(principal, 'record.replay', `record:${id}`, { target: b.target ?? { kind: 'origin' }, force: b.force === true }, () =>
        redrive.replayRecord(deps, id, { actor: principal.name, ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }) }),
      )
      return c.json(result)
    },
    'post /v1/records/:id/edit': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { value: unknown; reason?: string; replay?: boolean; target?: redrive.RedriveTarget }
      await getRecord(db, id) // 404 before an approval is asked for
      if (needsApproval(policy, 'edit')) {
        const approval = await requestApproval(db, { action: 'edit', payload: { id, ...b }, requester: principal, policy, target: `record:${id}` })
        return c.json({ approval }, 202)
      }
      const edited = await audited(principal, 'record.edit', `record:${id}`, { reason: b.reason ?? null }, () =>
        redrive.editRecord(deps, id, { value: b.value, actor: principal.name, ...(b.reason === undefined ? {} : { reason: b.reason }) }),
      )
      if (b.replay !== true) return c.json(edited)
      const replay = await audited(principal, 'record.replay-edited', `record:${id}`, { editId: edited.editId }, () =>
        redrive.replayEdited(deps, id, { actor: principal.name, editId: edited.editId, ...(b.target === undefined ? {} : { target: b.target }) }),
      )
      return c.json({ ...edited, replay })
    },
    'post /v1/records/:id/replay-edited': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { editId?: string; target?: redrive.RedriveTarget; force?: boolean }
      const result = await audited(principal, 'record.replay-edited', `record:${id}`, { editId: b.editId ?? null, force: b.force === true }, () =>
        redrive.replayEdited(deps, id, { actor: principal.name, ...(b.editId === undefined ? {} : { editId: b.editId }), ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }) }),
      )
      return c.json(result)
    },
    'post /v1/records/:id/discard': (c, input) => closeRecord(c, input, 'discard'),
    'post /v1/records/:id/resolve': (c, input) => closeRecord(c, input, 'resolve'),

    'post /v1/redrives': async (c, { principal, body }) => {
      const b = body as { filter: Record<string, unknown>; dryRun?: boolean; target?: redrive.RedriveTarget; ratePerSec?: number; canary?: number; maxFailureRate?: number; force?: boolean }
      checkFilter(b.filter) // 400 naming the bad field before anything else
      const preview = await redrive.previewRedrive(deps, b.filter)
      if (b.dryRun === true) return c.json({ dryRun: true, ...preview, needsApproval: needsApproval(policy, 'redrive', preview.count), ...(policy.bulkThreshold === undefined ? {} : { bulkThreshold: policy.bulkThreshold }) })
      const gated = needsApproval(policy, 'redrive', preview.count)
      const { dryRun: _dryRun, ...spec } = b
      const job = await audited(principal, 'redrive.create', 'jobs', { filter: b.filter, count: preview.count, needsApproval: gated }, () =>
        redrive.createRedriveJob(deps, { ...spec, actor: principal.name, status: gated ? 'awaiting-approval' : 'ready' }),
      )
      const jobId = String((job as { id: unknown }).id)
      if (!gated) {
        jobReady(jobId)
        return c.json({ job }, 201)
      }
      const approval = await requestApproval(db, { action: 'redrive', payload: { jobId, filter: b.filter, count: preview.count }, requester: principal, policy, target: `job:${jobId}` })
      return c.json({ job, approval }, 202)
    },
    'get /v1/jobs': async (c) => {
      const q = queryObject(c, ['status', 'limit'])
      const limit = q.limit === undefined ? 100 : typeof q.limit === 'string' && /^\d{1,4}$/.test(q.limit) && Number(q.limit) >= 1 && Number(q.limit) <= MAX_LIMIT ? Number(q.limit) : NaN
      if (Number.isNaN(limit)) throw badRequest(`limit must be an integer from 1 to ${MAX_LIMIT}`, 'limit')
      const JOB_STATUSES = ['awaiting-approval', 'ready', 'running', 'paused', 'completed', 'cancelled', 'failed']
      if (q.status !== undefined && (typeof q.status !== 'string' || !JOB_STATUSES.includes(q.status))) throw badRequest(`status must be one of ${JOB_STATUSES.join(', ')}`, 'status')
      return c.json({ jobs: await redrive.listJobs(db, { limit, ...(q.status === undefined ? {} : { status: q.status as redrive.RedriveJobStatus }) }) })
    },
    'get /v1/jobs/:id': async (c) => c.json(await redrive.getJob(db, pathId(c, 'job id'))),
    'post /v1/jobs/:id/pause': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      return c.json(await audited(principal, 'job.pause', `job:${id}`, {}, () => redrive.pauseJob(db, id, principal.name)))
    },
    'post /v1/jobs/:id/cancel': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      return c.json(await audited(principal, 'job.cancel', `job:${id}`, {}, () => redrive.cancelJob(db, id, principal.name)))
    },
    'post /v1/jobs/:id/resume': async (c, { principal }) => {
      const id = pathId(c, 'job id')
      const job = await audited(principal, 'job.resume', `job:${id}`, {}, async () => {
        const current = await redrive.getJob(db, id)
        if (current.status !== 'paused') throw new LifelineError('LL_DLQ_CONFLICT', `redrive job ${id} is ${current.status}, not paused`, { details: { id, status: current.status } })
        return current
      })
      if (options.onJobResume) options.onJobResume(id)
      else void redrive.runRedriveJob(deps, id).catch((err: unknown) => logger.error({ err, job: id }, 'resumed redrive job failed'))
      return c.json({ job, resuming: true }, 202)
    },

    'get /v1/approvals': async (c) => {
      const q = queryObject(c, ['status', 'limit'])
      return c.json({ approvals: await listApprovals(db, { status: q.status, limit: q.limit }) })
    },
    'get /v1/approvals/:id': async (c) => c.json(await getApproval(db, pathId(c, 'approval id'))),
    'post /v1/approvals/:id/approve': async (c, { principal }) => {
      const id = pathId(c, 'approval id')
      const { approval, result } = await approve(db, id, { decider: principal, execute: (a) => execute(a, principal), onClosed: cancelGatedJob })
      return c.json({ approval, result })
    },
    'post /v1/approvals/:id/reject': async (c, { principal, body }) => {
      const id = pathId(c, 'approval id')
      const { reason } = body as { reason: string }
      const approval = await reject(db, id, { decider: principal, reason, onClosed: cancelGatedJob })
      return c.json({ approval })
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
      const created = await audited(principal, 'token.create', `token:${b.name}`, { role: b.role, owner: b.owner, expires: b.expires ?? null }, () => createToken(db, b))
      return c.json(created, 201)
    },
    'delete /v1/tokens/:name': async (c, { principal }) => {
      const name = c.req.param('name') ?? ''
      return c.json(await audited(principal, 'token.revoke', `token:${name.slice(0, 100)}`, {}, () => revokeToken(db, name)))
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
          await appendAudit(db, { actor: ANONYMOUS_ACTOR, action: 'auth.failed', target: `${endpoint.method.toUpperCase()} ${c.req.path.slice(0, 200)}`, detail: { reason: why } })
          throw new HttpError(401, 'HTTP_UNAUTHORIZED', checked.refused === 'missing' ? 'this endpoint needs Authorization: Bearer <token>' : checked.refused === 'expired' ? 'the token has expired' : 'the token is invalid or revoked')
        }
        const found = checked.principal
        if (!mayPerform(found.role, endpoint.action)) {
          await appendAudit(db, { actor: found.name, role: found.role, action: 'auth.forbidden', target: `${endpoint.method.toUpperCase()} ${c.req.path.slice(0, 200)}`, detail: { needs: ACTION_ROLES[endpoint.action] } })
          throw new HttpError(403, 'HTTP_FORBIDDEN', `${endpoint.method.toUpperCase()} ${endpoint.path} needs the ${ACTION_ROLES[endpoint.action]} role; ${found.name} is ${found.role}`)
        }
        principal = found
      }
      const body = endpoint.method === 'get' ? undefined : await readBody(c, endpoint.body)
      return handler(c, { principal, body })
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
export async function serveDlqApi(app: Hono<Env> | Hono, options: { port: number; host?: string }): Promise<ServedApi> {
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
