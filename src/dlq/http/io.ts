/**
 * The DLQ API's request and response helpers: errors and their statuses, body, query and id validation,
 * and the JSON shapes of records and approvals.
 *
 * @module
 */
import type { Context } from 'hono'
import type { TSchema } from 'typebox'
import Value from 'typebox/value'
import { invalidArgument, isLifelineError, type ErrorCode } from '../../errors.js'
import type { Approval } from '../approvals.js'
import { parseFilter, type DlqRecordDetail } from '../records.js'
import { TOPIC_NAME } from '../../util/names.js'

// ---------------------------------------------------------------------------------------------------------
// Errors

/**
 * The API's one code → status table (docs/api.md "Errors and statuses" lists the same; a test checks both).
 * Every `LL_KAFKA_*` code is 503; any other error is a bug: 500 `LL_INTERNAL`, its cause only in the log.
 */
export const HTTP_STATUS_OF_CODE: Readonly<Partial<Record<ErrorCode, number>>> = Object.freeze({
  LL_ARGUMENT_INVALID: 400,
  LL_SCHEMA_INVALID: 400,
  LL_DECODE: 400,
  LL_UNAUTHORIZED: 401,
  LL_FORBIDDEN: 403,
  LL_NOT_FOUND: 404,
  LL_DLQ_CONFLICT: 409,
  LL_REDRIVE_LIMIT: 409,
  LL_KEY_NOT_PARKED: 409,
  LL_DECRYPT: 409,
  LL_PAYLOAD_TOO_LARGE: 413,
  LL_INTERNAL: 500,
})

/**
 * The status and body of an error. A dependency's text (Kafka's) is shown only to `showDependencyText`
 * callers (the operator whose replay it was); everyone else gets the code.
 */
export function errorResponse(err: unknown, options: { showDependencyText?: boolean } = {}): { status: number; code: ErrorCode; message: string } {
  if (isLifelineError(err)) {
    const { code } = err
    const status = HTTP_STATUS_OF_CODE[code]
    if (status !== undefined && code !== 'LL_INTERNAL') return { status, code, message: err.message }
    if (code.startsWith('LL_KAFKA_')) return { status: 503, code, message: options.showDependencyText === true ? `Kafka: ${err.message}` : `Kafka refused the request (${code}); the processor's log has its message` }
  }
  return { status: 500, code: 'LL_INTERNAL', message: 'internal error (logged by the processor)' }
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

/** Deepest nesting of arrays and objects a body may have (deeper: 400, before it is parsed). */
export const MAX_BODY_DEPTH = 128

/** The deepest nesting of `[`/`{` in JSON text (strings skipped); stops counting past `limit`. */
export function jsonDepth(text: string, limit = MAX_BODY_DEPTH): number {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    if (inString) {
      if (ch === 0x5c) i++ // backslash: skip the escaped character
      else if (ch === 0x22) inString = false
    } else if (ch === 0x22) inString = true
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max && (max = depth) > limit) return max
    } else if (ch === 0x5d || ch === 0x7d) depth--
  }
  return max
}

export async function readBody(c: Context, schema: TSchema | undefined): Promise<unknown> {
  const text = await c.req.text()
  if (jsonDepth(text) > MAX_BODY_DEPTH) throw invalidArgument(`the body nests deeper than ${MAX_BODY_DEPTH} levels of arrays and objects`)
  if (schema === undefined) {
    if (text.trim() !== '' && text.trim() !== '{}') throw invalidArgument('this endpoint takes no body')
    return undefined
  }
  let body: unknown
  try {
    body = text.trim() === '' ? {} : JSON.parse(text)
  } catch {
    throw invalidArgument('the body is not valid JSON')
  }
  if (!Value.Check(schema, body)) throw invalidArgument(`invalid body: ${[...new Set(problems(schema, body))].join('; ')}`)
  return body
}

/** A query string as an object: a name given once is a string, several times a list (the filter parser refuses lists where it wants one value). */
export function queryObject(c: Context, allowed: readonly string[]): Record<string, unknown> {
  const q = c.req.queries() as Record<string, string[]>
  const out: Record<string, unknown> = {}
  for (const [name, values] of Object.entries(q)) {
    if (!allowed.includes(name)) throw invalidArgument(`${name} is not a query parameter of this endpoint (parameters: ${allowed.join(', ')})`, { field: name })
    const all = name === 'status' ? values.flatMap((v) => v.split(',')) : values
    out[name] = all.length === 1 ? all[0] : all
  }
  return out
}

/** Validates a records filter (the store's parser) and, more strictly than it, that topics are Kafka topic names. */
export function checkFilter(filter: unknown): void {
  parseFilter(filter)
  const f = (filter ?? {}) as Record<string, unknown>
  for (const field of ['topic', 'dlqTopic']) {
    const v = f[field]
    if (typeof v === 'string' && v !== '' && !TOPIC_NAME.test(v)) throw invalidArgument(`filter.${field} must be a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'`, { field })
  }
}

export function pathId(c: Context, what = 'id'): string {
  const raw = c.req.param('id') ?? ''
  if (!/^[1-9][0-9]{0,15}$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw invalidArgument(`${what} must be a positive integer, got ${JSON.stringify(raw.slice(0, 40))}`, { field: 'id' })
  return raw
}

export const bearer = (header: string | undefined): string | undefined => {
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


/**
 * What an approval is about, without any payload value: the record (and, for an edit, whether it replays and
 * where), or the job with its count, target, force and why it needed an approval.
 */
export function approvalSummary(a: Approval): Record<string, unknown> {
  const p = a.payload
  const pick = (...keys: string[]) => Object.fromEntries(keys.filter((k) => p[k] !== undefined).map((k) => [k, p[k]]))
  if (a.action === 'redrive') return pick('jobId', 'count', 'windowCount', 'target', 'force', 'reasons')
  if (a.action === 'edit') return { record: p.id, replay: p.replay === true, ...pick('target') }
  return { record: p.id }
}

/** An approval for JSON: its summary always, its payload (an edit's value...) only when `payload` (a record read). */
export function approvalJson(a: Approval, options: { payload: boolean }): Record<string, unknown> {
  const { payload, ...rest } = a
  return { ...rest, summary: approvalSummary(a), ...(options.payload ? { payload } : {}) }
}
