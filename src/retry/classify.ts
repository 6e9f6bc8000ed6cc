/**
 * Error classification: is a handler failure worth retrying, or permanent (dead-letter it now)?
 *
 * Classification uses names and codes, never message text (STYLE.md §2): the verdict and the code travel
 * to the dead-letter topic in headers, and only they survive the trip unchanged. Anything can be thrown in
 * JavaScript, so every function here accepts `unknown` and never throws on odd values (strings,
 * `undefined`, objects with throwing getters).
 *
 * @module
 * @example
 * throw new NonRetriableError('order 42 references a deleted customer', { code: 'ORDER_ORPHANED' })
 * classifyError(err, { permanentCodes: ['23505'] }) // { kind: 'permanent', rule: 'non-retriable-error', ... }
 */
import { inspect } from 'node:util'

/** Throw this from a handler to skip retries and dead-letter the record now (cf. BullMQ's `UnrecoverableError`). */
export class NonRetriableError extends Error {
  override readonly name: string = 'NonRetriableError'
  /** An application code, carried to the dead-letter headers (`lifeline.error.code`). */
  readonly code: string | undefined

  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = options.code
  }
}

/** Codes of {@link DecodeError}: bytes that do not parse, or a parsed value that fails its schema. */
export type DecodeErrorCode = 'LL_DECODE' | 'LL_SCHEMA_INVALID'

/** A record key or value could not be decoded or failed its schema: permanent, as the bytes never change. */
export class DecodeError extends Error {
  override readonly name: string = 'DecodeError'
  readonly code: DecodeErrorCode
  /** Structured context for logs (never secrets). */
  readonly details: Readonly<Record<string, unknown>>

  constructor(message: string, options: { code?: DecodeErrorCode; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = options.code ?? 'LL_DECODE'
    this.details = Object.freeze({ ...(options.details ?? {}) })
  }
}

/** Codes that are permanent whatever the options say. */
export const PERMANENT_CODES: readonly string[] = Object.freeze(['LL_DECODE', 'LL_SCHEMA_INVALID'])

/** How many `cause` links {@link classifyError} follows below the thrown error. */
export const MAX_CAUSE_DEPTH = 8

/** A user classifier's verdict; undefined = no opinion, fall through to the built-in rules. */
export type ClassifierVerdict = 'retry' | 'permanent' | undefined

export interface ClassifyOptions {
  /** Error codes (`err.code`, anywhere in the cause chain) that are permanent, e.g. `['23505']`. */
  permanentCodes?: readonly string[]
  /** Consulted first with the thrown value. A classifier that throws propagates its error. */
  classifier?: (err: unknown) => ClassifierVerdict
}

/** Which rule decided a classification (for logs and tests). */
export type ClassificationRule = 'classifier' | 'non-retriable-error' | 'decode' | 'permanent-code' | 'lifeline-error' | 'default'

/** The verdict on a failure plus the fields that describe it in logs and dead-letter headers. */
export interface Classification {
  kind: 'retriable' | 'permanent'
  rule: ClassificationRule
  /** The thrown value's class: `err.name` (or its constructor's name), `typeof` for primitives, `'null'`. */
  errorClass: string
  /** `err.code` as a string, `'UNKNOWN'` when absent. */
  code: string
  message: string
  /** `err.stack` when it is a string. */
  stack: string | undefined
}

/** `read()`, or `fallback` when it throws: a hostile getter or proxy trap must not make classification fail. */
function safely<T>(read: () => T, fallback: T): T {
  try {
    return read()
  } catch (err) {
    void err // deliberately dropped: a value we cannot read is one we cannot use
    return fallback
  }
}

/** `obj[key]` for objects and functions; undefined otherwise or when reading throws. */
function prop(obj: unknown, key: string): unknown {
  if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null) return undefined
  return safely(() => (obj as Record<string, unknown>)[key], undefined)
}

function codeOf(err: unknown): string | undefined {
  const code = prop(err, 'code')
  if (typeof code === 'string' && code !== '') return code
  if (typeof code === 'number' && Number.isFinite(code)) return String(code)
  return undefined
}

function nameOf(err: unknown): string | undefined {
  const name = prop(err, 'name')
  return typeof name === 'string' && name !== '' ? name : undefined
}

function classOf(err: unknown): string {
  if (err === null) return 'null'
  if (typeof err !== 'object' && typeof err !== 'function') return typeof err
  const name = nameOf(err)
  const ctor = prop(prop(err, 'constructor'), 'name')
  const ctorName = typeof ctor === 'string' && ctor !== '' ? ctor : undefined
  // `class MyError extends Error {}` keeps name 'Error'; its constructor knows better.
  if (name === 'Error' && ctorName !== undefined && ctorName !== 'Object') return ctorName
  return name ?? ctorName ?? 'Object'
}

function messageOf(err: unknown): string {
  if (typeof err === 'string') return err
  if ((typeof err !== 'object' && typeof err !== 'function') || err === null) return String(err)
  const message = prop(err, 'message')
  if (typeof message === 'string') return message
  return safely(() => inspect(err, { depth: 2, breakLength: Infinity }), '[uninspectable value]')
}

/** Classifies by name first so errors from another copy of this package (or a vm realm) still count. */
function isNonRetriable(err: unknown): boolean {
  return safely(() => err instanceof NonRetriableError, false) || nameOf(err) === 'NonRetriableError'
}

function isLifelinePermanent(err: unknown): boolean {
  return nameOf(err) === 'LifelineError' && prop(err, 'retriable') === false
}

/**
 * Whether a failure says Lifeline's database is unreachable rather than anything about the record: an
 * `LL_DB_CONNECT` that may fix itself (`retriable` not false) on the error or one of its causes — the
 * inbox's transaction could not start, or its connection broke.
 */
export function isDatabaseOutage(err: unknown): boolean {
  for (const link of causeChain(err)) {
    if (nameOf(link) === 'LifelineError' && codeOf(link) === 'LL_DB_CONNECT' && prop(link, 'retriable') !== false) return true
  }
  return false
}

/** `err`, then its causes, up to {@link MAX_CAUSE_DEPTH} links below it; stops at a cycle or a missing cause. */
function* causeChain(err: unknown): Generator<unknown> {
  const seen = new Set<unknown>()
  let link: unknown = err
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH && link !== undefined && link !== null && !seen.has(link); depth++) {
    seen.add(link)
    yield link
    link = prop(link, 'cause')
  }
}

/**
 * Classifies a thrown value. Rules, first match wins:
 * 1. `options.classifier` (`'retry'` / `'permanent'`; undefined = no opinion);
 * 2. walking the error and up to {@link MAX_CAUSE_DEPTH} causes: a {@link NonRetriableError}, a
 *    {@link DecodeError} or {@link PERMANENT_CODES} code, or a code in `options.permanentCodes` → permanent;
 * 3. a `LifelineError` with `retriable: false` → permanent;
 * 4. anything else → retriable.
 */
export function classifyError(err: unknown, options: ClassifyOptions = {}): Classification {
  // The stack is read when something reads it (a failure context), not for every failed attempt:
  // formatting a stack is the costliest part of an error (source-mapped, far more so).
  let stack: string | undefined | null = null
  const describe = (kind: Classification['kind'], rule: ClassificationRule): Classification => ({
    kind,
    rule,
    errorClass: classOf(err),
    code: codeOf(err) ?? 'UNKNOWN',
    message: messageOf(err),
    get stack() {
      if (stack === null) {
        const read = prop(err, 'stack')
        stack = typeof read === 'string' ? read : undefined
      }
      return stack
    },
  })

  const verdict = options.classifier?.(err)
  if (verdict === 'retry') return describe('retriable', 'classifier')
  if (verdict === 'permanent') return describe('permanent', 'classifier')

  const permanentCodes = new Set(options.permanentCodes ?? [])
  for (const link of causeChain(err)) {
    if (isNonRetriable(link)) return describe('permanent', 'non-retriable-error')
    const code = codeOf(link)
    if (nameOf(link) === 'DecodeError' || (code !== undefined && PERMANENT_CODES.includes(code))) {
      return describe('permanent', 'decode')
    }
    if (code !== undefined && permanentCodes.has(code)) return describe('permanent', 'permanent-code')
  }

  if (isLifelinePermanent(err)) return describe('permanent', 'lifeline-error')
  return describe('retriable', 'default')
}
