/**
 * Turns a driver error (`pg` or PGlite) into a {@link LifelineError}: pure classification by SQLSTATE or
 * errno, never by message text. Both drivers report server errors with the same shape (`code` = SQLSTATE,
 * `severity`, `constraint`, `table`, ...), so one function serves both.
 *
 * @module
 */
import { LifelineError, type ErrorCode } from '../errors.js'

/**
 * Where the error happened: opening a connection, running a statement on an open one, or running one on a
 * connection already known to be broken (`lost`, which is always a connection failure whatever the error).
 */
export type DriverPhase = 'connect' | 'query' | 'lost'

interface ServerErrorShape {
  code: string
  severity: string
  constraint?: string
  table?: string
  schema?: string
  column?: string
}

/** Socket-level failures: the server is unreachable or the connection broke. */
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
])

/**
 * SQLSTATEs that mean "the connection or the server is the problem, not the statement".
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
function isConnectionSqlState(state: string): boolean {
  return (
    state.startsWith('08') || // connection_exception
    state.startsWith('28') || // invalid_authorization_specification
    state === '3D000' || // invalid_catalog_name: the database does not exist
    state === '53300' || // too_many_connections
    state === '57P01' || // admin_shutdown
    state === '57P02' || // crash_shutdown
    state === '57P03' || // cannot_connect_now
    state === '57P04' // database_dropped
  )
}

/** Transactions PostgreSQL rolled back for a conflict with another one: run again, they can succeed. */
const CONFLICT_SQLSTATES: ReadonlySet<string> = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
])

/** Statement failures that succeed when the whole transaction is simply run again. */
const RETRIABLE_SQLSTATES = new Set([
  '57014', // query_canceled: statement_timeout (the statement may succeed when the server is less busy)
  ...CONFLICT_SQLSTATES,
  '55P03', // lock_not_available
])

/** The server's error fields when `err` came from PostgreSQL (through either driver), else undefined. */
export function serverError(err: unknown): ServerErrorShape | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const e = err as Partial<Record<keyof ServerErrorShape, unknown>>
  return typeof e.code === 'string' && typeof e.severity === 'string' ? (err as ServerErrorShape) : undefined
}

/** node-postgres's own query_timeout: the server did not answer at all (hung host, network partition). */
function isClientTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === 'Query read timeout'
}

function errnoOf(err: unknown): string | undefined {
  if (err === null || typeof err !== 'object') return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && NETWORK_ERRNOS.has(code) ? code : undefined
}

/** The code a driver error maps to, and whether retrying (the connection or the transaction) may help. */
export function classifyDriverError(err: unknown, phase: DriverPhase): { code: ErrorCode; retriable: boolean } {
  const server = serverError(err)
  // Wrong credentials or a missing database do not fix themselves; a refused or broken connection may.
  const permanent = server !== undefined && (server.code.startsWith('28') || server.code === '3D000')
  if (phase === 'connect' || phase === 'lost') return { code: 'LL_DB_CONNECT', retriable: !permanent }
  if (server !== undefined) {
    if (isConnectionSqlState(server.code)) return { code: 'LL_DB_CONNECT', retriable: !permanent }
    return { code: 'LL_DB_QUERY', retriable: RETRIABLE_SQLSTATES.has(server.code) }
  }
  if (errnoOf(err) !== undefined || isClientTimeout(err)) return { code: 'LL_DB_CONNECT', retriable: true }
  return { code: 'LL_DB_QUERY', retriable: false }
}

/** First line of a statement, short enough for a log line (parameters are never part of it). */
function statementSummary(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim()
  return oneLine.length > 120 ? `${oneLine.slice(0, 117)}...` : oneLine
}

/**
 * Wraps a driver error as LL_DB_QUERY or LL_DB_CONNECT with `details.sqlState` (when the server sent one)
 * so callers can classify by SQLSTATE, e.g. `err.details.sqlState === '23505'` for a unique violation.
 * A LifelineError passes through unchanged.
 */
export function wrapDriverError(
  err: unknown,
  context: { phase: DriverPhase; kind: 'postgres' | 'pglite'; statement?: string },
): LifelineError {
  if (err instanceof LifelineError) return err
  const { code, retriable } = classifyDriverError(err, context.phase)
  const server = serverError(err)
  const reason = err instanceof Error ? err.message : String(err)
  const details: Record<string, unknown> = { kind: context.kind }
  if (server !== undefined) {
    details.sqlState = server.code
    for (const key of ['constraint', 'table', 'schema', 'column'] as const) {
      if (server[key] !== undefined) details[key] = server[key]
    }
  } else if (errnoOf(err) !== undefined) {
    details.errno = errnoOf(err)
  }
  if (context.statement !== undefined) details.statement = statementSummary(context.statement)
  const what = {
    connect: `could not open the ${context.kind} database`,
    query: `${context.kind} statement failed`,
    lost: `${context.kind} statement failed: the connection was lost`,
  }[context.phase]
  const state = server === undefined ? '' : ` [${server.code}]`
  return new LifelineError(code, `${what}: ${reason}${state}`, { cause: err, retriable, details })
}

/**
 * PGlite has one connection, held by an open transaction: a call on the executor (not the `tx` handle)
 * from inside its own transaction() would wait for that transaction forever, so it fails at once with this.
 */
export function ownTransactionError(): LifelineError {
  return new LifelineError('LL_DB_QUERY', 'the executor was called inside its own transaction(): use the tx handle (PGlite has one connection, held by the transaction)')
}

/**
 * The error for COMMIT of a transaction in which a statement failed but its error was caught: PostgreSQL
 * rolls it back (pg reports the COMMIT as `ROLLBACK`, PGlite throws). Both become this one error.
 */
export function abortedTransactionError(kind: 'postgres' | 'pglite', cause?: unknown): LifelineError {
  return new LifelineError(
    'LL_DB_QUERY',
    `${kind} transaction was rolled back at COMMIT: a statement inside it failed and its error was caught [25P02]`,
    { cause, details: { kind, sqlState: '25P02' } },
  )
}

/**
 * Runs `transaction` (a whole transaction: it must do nothing outside the database) again, up to `times` runs
 * in all, while it fails with a deadlock or a serialization failure — PostgreSQL rolled it back and says a
 * new run can succeed. (A redrive recording its batch while the indexer links records that came back locks
 * the same record rows in another order.)
 */
export async function againOnConflict<T>(transaction: () => Promise<T>, times = 4): Promise<T> {
  for (let run = 1; ; run++) {
    try {
      return await transaction()
    } catch (err) {
      const state = err instanceof LifelineError ? err.details.sqlState : undefined
      if (run >= times || typeof state !== 'string' || !CONFLICT_SQLSTATES.has(state)) throw err
    }
  }
}
