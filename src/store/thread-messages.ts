/**
 * What crosses between the main thread and the database thread ({@link ./thread.ts}) (pure).
 *
 * Structured cloning keeps Dates, strings, numbers and bigints, but turns a Buffer into a plain Uint8Array,
 * copies a view's whole backing store (a small Buffer is a slice of an 8 KiB pool), and drops an error's
 * own fields (`code`, `details`). So values go as exact-length Uint8Arrays and come back as Buffers, and
 * errors go as plain objects and come back as the same LifelineError.
 *
 * @module
 */
import { ErrorCodes, LifelineError, type ErrorCode } from '../errors.js'
import type { PostgresOptions } from './postgres.js'

/** What the thread opens: an embedded PGlite in `dataDir` (in memory without one), or a `pg` pool. */
export type DatabaseSpec = { kind: 'pglite'; dataDir?: string } | ({ kind: 'postgres' } & Omit<PostgresOptions, 'logger'>)

/**
 * Requests to the thread; `id` names the request (its answer carries it), `db` an executor opened in the
 * thread, `tx` an open transaction (numbered across executors).
 */
export type ThreadRequest =
  | [op: 'open', id: number, db: number, spec: DatabaseSpec]
  | [op: 'query', id: number, db: number, text: string, params: unknown[] | undefined, prepared: boolean]
  | [op: 'script', id: number, db: number, sql: string]
  | [op: 'begin', id: number, db: number, tx: number]
  | [op: 'tx-query', id: number, tx: number, text: string, params: unknown[] | undefined, prepared: boolean]
  | [op: 'tx-script', id: number, tx: number, sql: string]
  | [op: 'end', id: number, tx: number, commit: boolean]
  | [op: 'close', id: number, db: number]

/** Answers (the request's id, then success and its result or the error), and log lines of an executor. */
export type ThreadReply = [id: number, ok: true, result: unknown] | [id: number, ok: false, error: SerializedError] | [op: 'log', db: number, level: string, fields: Record<string, unknown>, message: string]

export interface SerializedError {
  name: string
  message: string
  code?: string
  retriable?: boolean
  details?: Record<string, unknown>
  cause?: SerializedError
}

/** An error as a plain object: name, message, and a LifelineError's code, retriable and details; its cause too. */
export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) }
  const out: SerializedError = { name: err.name, message: err.message }
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') out.code = code
  if (err instanceof LifelineError) {
    out.retriable = err.retriable
    out.details = { ...err.details }
  }
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1)
  return out
}

/** The error {@link serializeError} described: a LifelineError again when it was one (same code, retriable, details). */
export function deserializeError(e: SerializedError): Error {
  const cause = e.cause === undefined ? undefined : deserializeError(e.cause)
  if (e.name === 'LifelineError' && e.code !== undefined && Object.hasOwn(ErrorCodes, e.code)) {
    return new LifelineError(e.code as ErrorCode, e.message, { ...(cause === undefined ? {} : { cause }), ...(e.retriable === undefined ? {} : { retriable: e.retriable }), ...(e.details === undefined ? {} : { details: e.details }) })
  }
  const err = new Error(e.message, cause === undefined ? undefined : { cause })
  err.name = e.name
  if (e.code !== undefined) (err as Error & { code?: string }).code = e.code
  return err
}

/** A byte value as an exact-length Uint8Array: a view over a larger store is copied, so only its bytes travel. */
function exact(v: Uint8Array): Uint8Array {
  return v.byteOffset === 0 && v.byteLength === v.buffer.byteLength ? v : new Uint8Array(v)
}

const asBuffer = (v: Uint8Array): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength))

/** Statement parameters or result rows ready to post: byte values (also inside arrays) made exact. */
export function toTransfer<T>(value: T): T {
  return walk(value, exact) as T
}

/** Parameters or rows as received: byte values (also inside arrays) are Buffers again. */
export function fromTransfer<T>(value: T): T {
  return walk(value, asBuffer) as T
}

/**
 * Applies `bytes` to every Uint8Array in a parameter list or a result (`{ rows, rowCount }`): the values,
 * the elements of array values, and the fields of rows. JSON values never hold bytes and are left alone.
 */
function walk(value: unknown, bytes: (v: Uint8Array) => Uint8Array): unknown {
  if (value instanceof Uint8Array) return bytes(value)
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i]
      const w = v instanceof Uint8Array ? bytes(v) : Array.isArray(v) ? walk(v, bytes) : v
      if (w !== v) (out ??= value.slice())[i] = w
    }
    return out ?? value
  }
  if (value !== null && typeof value === 'object' && 'rows' in value && Array.isArray((value as { rows: unknown }).rows)) {
    for (const row of (value as { rows: Array<Record<string, unknown>> }).rows) {
      for (const k in row) {
        const v = row[k]
        if (v instanceof Uint8Array) row[k] = bytes(v)
        else if (Array.isArray(v)) row[k] = walk(v, bytes)
      }
    }
  }
  return value
}
