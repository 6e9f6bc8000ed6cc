/**
 * {@link SqlExecutor} over a real PostgreSQL server through a `pg` connection pool.
 *
 * Values come back as `pg` parses them, which PGlite is configured to match: `int8`/`bigint` (and
 * `count(*)`) and `numeric` as **strings** (a JS number cannot hold every int8), so callers cast in SQL
 * (`count(*)::int`) or in JS (`Number(row.n)`, `BigInt(row.n)`); `bytea` as Buffer; json/jsonb parsed;
 * timestamps as Date. Pass JSON parameters as `JSON.stringify(value)`: pg sends a JS array as a PostgreSQL
 * array literal, not as JSON.
 *
 * @module
 */
import pg from 'pg'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { abortedTransactionError, classifyDriverError, wrapDriverError } from './driver-error.js'
import { preparedName, type SqlExecutor, type SqlQueryable, type SqlResult, type SqlRow } from './executor.js'
import { runScriptKey, type ScriptRunner } from './script.js'
import { postgresDefaults } from './postgres-defaults.js'

export { postgresDefaults }

export interface PostgresOptions {
  /** Connection URL, `postgres://user:password@host:port/database` (or `postgresql://`). */
  url: string
  /** Most connections the pool opens at once. Default {@link postgresDefaults}.poolSize (10). */
  poolSize?: number
  /** Milliseconds to wait for a connection (new, or free in a busy pool) before LL_DB_CONNECT. Default 10 000. */
  connectTimeoutMs?: number
  /**
   * Milliseconds a statement may run (the server cancels it: LL_DB_QUERY, retriable, sqlState 57014); a
   * server that stops answering altogether (a hung host, a network partition) fails the statement 5 s
   * later on the client side (LL_DB_CONNECT, retriable; the connection is dropped). 0: no limit. Default
   * 60 000.
   */
  statementTimeoutMs?: number
  /**
   * Run the statements marked {@link prepared} (the ordering protocol's) as named prepared statements, each
   * parsed and planned once per connection. Default true. Turn it off behind a pooler that does not keep
   * a server connection per client connection (PgBouncer in transaction mode before 1.21, or without
   * `max_prepared_statements`).
   */
  preparedStatements?: boolean
  /** Parent logger; the executor logs under `{ component: 'store', kind: 'postgres' }`. Default: silent. */
  logger?: Logger
}


const KIND = 'postgres'

/** The client gives up on a statement this long after the server should have cancelled it. */
const CLIENT_TIMEOUT_MARGIN_MS = 5_000

/** Why a pooled connection broke (its 'error' event), for the statements that fail on it afterwards. */
const lostConnections = new WeakMap<pg.ClientBase, Error>()

function positiveInteger(value: unknown, path: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new LifelineError('LL_OPTIONS_INVALID', `${path} must be a positive integer, got ${String(value)}`, {
      details: { path },
    })
  }
}

/** Host and database of a URL, for logs: never the password. */
function describeUrl(url: string): string {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  return parsed === undefined ? '(unparsable url)' : `${parsed.host}${parsed.pathname}`
}

function toResult<R extends SqlRow>(result: pg.QueryResult): SqlResult<R> {
  return { rows: result.rows as R[], rowCount: result.rowCount ?? result.rows.length }
}

/** Wraps a statement's failure; on a connection that broke, the reason it broke is the better cause. */
function statementError(client: pg.ClientBase, err: unknown, statement: string): LifelineError {
  const lost = lostConnections.get(client)
  return lost === undefined
    ? wrapDriverError(err, { phase: 'query', kind: KIND, statement })
    : wrapDriverError(lost, { phase: 'lost', kind: KIND, statement })
}

/** A connection-level failure leaves the client unusable: hand it back destroyed, not to the idle list. */
function releaseAfter(client: pg.PoolClient, err: unknown): void {
  const code = err instanceof LifelineError ? err.code : classifyDriverError(err, 'query').code
  client.release(code === 'LL_DB_CONNECT')
}

/**
 * One statement through the extended protocol even without parameters, so that several `;`-separated
 * statements are refused (42601) exactly as PGlite refuses them; scripts go through {@link runScriptKey}.
 */
async function runOne<R extends SqlRow>(
  client: pg.PoolClient,
  text: string,
  params: readonly unknown[] | undefined,
  prepare: boolean,
): Promise<SqlResult<R>> {
  const config: pg.QueryConfig & { queryMode: 'extended' } = { text, values: [...(params ?? [])], queryMode: 'extended' }
  if (prepare) {
    const name = preparedName(text)
    if (name !== undefined) config.name = name
  }
  try {
    return toResult<R>(await client.query(config))
  } catch (err) {
    throw statementError(client, err, text)
  }
}

/**
 * Opens a pool on `options.url` and checks that one connection can be made, so a wrong URL fails here
 * (LL_DB_CONNECT) rather than at the first query.
 *
 * @example
 * const db = await openPostgres({ url: 'postgres://app@db.internal:5432/lifeline', poolSize: 20 })
 * const { rows } = await db.query<{ n: string }>('select count(*) as n from jobs where state = $1', ['ready'])
 * await db.close()
 */
export async function openPostgres(options: PostgresOptions): Promise<SqlExecutor & AsyncDisposable> {
  if (typeof options.url !== 'string' || options.url === '') {
    throw new LifelineError('LL_OPTIONS_INVALID', 'url must be a non-empty postgres:// URL', { details: { path: 'url' } })
  }
  const poolSize = options.poolSize ?? postgresDefaults.poolSize
  const connectTimeoutMs = options.connectTimeoutMs ?? postgresDefaults.connectTimeoutMs
  positiveInteger(poolSize, 'poolSize')
  positiveInteger(connectTimeoutMs, 'connectTimeoutMs')
  const statementTimeoutMs = options.statementTimeoutMs ?? postgresDefaults.statementTimeoutMs
  const prepare = options.preparedStatements ?? true
  if (typeof prepare !== 'boolean') {
    throw new LifelineError('LL_OPTIONS_INVALID', `preparedStatements must be a boolean, got ${String(prepare)}`, { details: { path: 'preparedStatements' } })
  }
  if (statementTimeoutMs !== 0) positiveInteger(statementTimeoutMs, 'statementTimeoutMs')
  const log = (options.logger ?? silentLogger()).child({ component: 'store', kind: KIND })
  const target = describeUrl(options.url)

  const pool = new pg.Pool({
    connectionString: options.url,
    max: poolSize,
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'lifeline',
    ...(statementTimeoutMs === 0 ? {} : { statement_timeout: statementTimeoutMs, query_timeout: statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS }),
  })
  // An idle client whose connection drops emits 'error' on the pool; unhandled, it would crash the process.
  pool.on('error', (err) => log.warn({ err, target }, 'idle PostgreSQL connection failed; the pool will replace it'))
  // A checked-out client has no pool listener: a connection dropped while the application holds it (say, in
  // a transaction between statements) would also be an unhandled 'error'. Remember why it broke, so the next
  // statement on it fails as LL_DB_CONNECT with that cause (pg itself only says "not queryable").
  pool.on('connect', (client) => {
    client.on('error', (err) => {
      lostConnections.set(client, err)
      log.warn({ err, target }, 'PostgreSQL connection failed')
    })
  })

  async function connect(statement?: string): Promise<pg.PoolClient> {
    try {
      return await pool.connect()
    } catch (err) {
      throw wrapDriverError(err, { phase: 'connect', kind: KIND, ...(statement === undefined ? {} : { statement }) })
    }
  }

  try {
    ;(await connect()).release()
  } catch (err) {
    await pool.end().catch((endErr: unknown) => log.debug({ err: endErr }, 'ending the pool after a failed open'))
    throw err
  }
  log.debug({ target, poolSize }, 'PostgreSQL pool open')

  let closing: Promise<void> | undefined
  const inFlight = new Set<Promise<unknown>>()

  /**
   * Runs `work` counted as in-flight, so close() lets it finish first: pool.end() waits for checked-out
   * clients but strands a call still waiting for one.
   */
  function track<T>(work: () => Promise<T>): Promise<T> {
    if (closing !== undefined) return Promise.reject(new LifelineError('LL_DB_CLOSED', `the ${KIND} executor was used after close()`))
    const running = work()
    inFlight.add(running)
    const forget = () => inFlight.delete(running)
    running.then(forget, forget)
    return running
  }

  async function withClient<T>(statement: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await connect(statement)
    let result: T
    try {
      result = await fn(client)
    } catch (err) {
      releaseAfter(client, err)
      throw err
    }
    client.release()
    return result
  }

  /** Rolls back after `fn` threw; a client whose ROLLBACK fails is in an unknown state and is destroyed. */
  async function rollback(client: pg.PoolClient): Promise<void> {
    try {
      await client.query('ROLLBACK')
      client.release()
    } catch (rollbackErr) {
      log.warn({ err: rollbackErr }, 'ROLLBACK failed; destroying the connection')
      client.release(true)
    }
  }

  async function runTransaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    const client = await connect('BEGIN')
    try {
      await client.query('BEGIN')
    } catch (err) {
      releaseAfter(client, err)
      throw statementError(client, err, 'BEGIN')
    }
    let active = true
    function assertActive(): void {
      if (!active) throw new LifelineError('LL_DB_CLOSED', 'a transaction handle was used after its transaction ended')
    }
    const tx: SqlQueryable & ScriptRunner = {
      async query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
        assertActive()
        return runOne<R>(client, text, params, prepare)
      },
      async [runScriptKey](sql: string) {
        assertActive()
        await client.query(sql).catch((err: unknown) => {
          throw statementError(client, err, sql)
        })
      },
    }

    let result: T
    try {
      result = await fn(tx)
    } catch (err) {
      active = false
      await rollback(client)
      throw err
    }
    active = false
    let commit: pg.QueryResult
    try {
      commit = await client.query('COMMIT')
    } catch (err) {
      // A connection lost during COMMIT leaves the outcome unknown: the caller must treat it as maybe-applied.
      releaseAfter(client, err)
      throw statementError(client, err, 'COMMIT')
    }
    client.release()
    if (commit.command === 'ROLLBACK') throw abortedTransactionError(KIND)
    return result
  }

  const executor: SqlExecutor & AsyncDisposable & ScriptRunner = {
    kind: KIND,
    query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
      return track(() => withClient(text, (client) => runOne<R>(client, text, params, prepare)))
    },
    transaction(fn) {
      return track(() => runTransaction(fn))
    },
    async [runScriptKey](sql: string) {
      await track(() =>
        withClient(sql, async (client) => {
          try {
            await client.query(sql) // no parameters: the simple protocol, which accepts several statements
          } catch (err) {
            throw statementError(client, err, sql)
          }
        }),
      )
    },
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...inFlight])
        await pool.end()
        log.debug({ target }, 'PostgreSQL pool closed')
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return executor.close()
    },
  }
  return executor
}
