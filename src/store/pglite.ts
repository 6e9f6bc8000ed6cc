/**
 * {@link SqlExecutor} over embedded PGlite (PostgreSQL compiled to WebAssembly, in this process).
 *
 * PGlite has exactly one connection and runs one statement at a time; a transaction holds that connection
 * until it ends. Values are parsed to match `pg` ({@link ./postgres.ts}): int8 as string, bytea as Buffer.
 * A data directory may be open in one process only, guarded by `<dataDir>.lock` (PGlite has no lock).
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { PGlite, TransactionAbortedError, types, type Results, type Transaction } from '@electric-sql/pglite'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { abortedTransactionError, ownTransactionError, wrapDriverError } from './driver-error.js'
import type { SqlExecutor, SqlQueryable, SqlResult, SqlRow } from './executor.js'
import { acquireLockFile } from './lock-file.js'
import { runScriptKey, type ScriptRunner } from './script.js'

export interface PgliteOptions {
  /**
   * Directory holding the database files, created if missing (relative paths resolve against the cwd).
   * `undefined` or `'memory://'`: an in-memory database, gone at close().
   */
  dataDir?: string
  /** Parent logger; the executor logs under `{ component: 'store', kind: 'pglite' }`. Default: silent. */
  logger?: Logger
  /**
   * Run the database in the process's database thread (a worker thread, src/store/thread.ts), so that its
   * statements execute off the thread that runs the handlers. Default true. `false`: in this thread.
   */
  thread?: boolean
}

const KIND = 'pglite'

/**
 * Parse like `pg` does, so code behaves the same on both: PGlite's defaults turn int8 into a JS number
 * (silently losing precision above 2^53) and bytea into a bare Uint8Array. Array types reuse these.
 */
const PARSERS = {
  [types.INT8]: (text: string) => text,
  [types.BYTEA]: (text: string) => Buffer.from(text.slice(2), 'hex'), // hex output format: \x0102...
}

const DML = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE'])

function toResult<R extends SqlRow>(result: Results<R>): SqlResult<R> {
  const affected = result.command !== undefined && DML.has(result.command) ? result.affectedRows : undefined
  return { rows: result.rows, rowCount: affected ?? result.rows.length }
}

function copyParams(params: readonly unknown[] | undefined): unknown[] | undefined {
  return params === undefined ? undefined : [...params]
}

/**
 * Opens (or creates) the database in this thread (`thread` is not read: {@link ./open.ts} chooses the
 * thread). On a data directory held by another live process this throws LL_DB_LOCKED naming that process;
 * a lock whose owner has exited is taken over.
 *
 * @example
 * const db = await openPgliteHere({ dataDir: '.lifeline/db' })
 * await db.transaction(async (tx) => tx.query('insert into seen (id) values ($1)', ['m-1']))
 * await db.close()
 */
export async function openPgliteHere(options: PgliteOptions = {}): Promise<SqlExecutor & AsyncDisposable> {
  const log = (options.logger ?? silentLogger()).child({ component: 'store', kind: KIND })
  const dataDir = options.dataDir === undefined || options.dataDir === 'memory://' ? undefined : resolve(options.dataDir)

  let releaseLock: (() => void) | undefined
  let db: PGlite
  try {
    if (dataDir !== undefined) {
      mkdirSync(dirname(dataDir), { recursive: true })
      releaseLock = acquireLockFile(`${dataDir}.lock`)
      mkdirSync(dataDir, { recursive: true })
    }
    db = await PGlite.create(dataDir, { parsers: PARSERS })
  } catch (err) {
    releaseLock?.()
    if (err instanceof LifelineError) throw err
    const opened = wrapDriverError(err, { phase: 'connect', kind: KIND })
    throw new LifelineError(opened.code, `${opened.message} (${dataDir ?? 'memory://'})`, {
      cause: err,
      retriable: opened.retriable,
      details: { ...opened.details, dataDir: dataDir ?? 'memory://' },
    })
  }
  log.debug({ dataDir: dataDir ?? 'memory://' }, 'PGlite open')

  let closing: Promise<void> | undefined
  const inFlight = new Set<Promise<unknown>>()
  // Set while a transaction() callback runs: PGlite's one connection is held by that transaction, so a call
  // on the executor from inside it would wait for the transaction forever. Fail fast instead of hanging.
  const insideTransaction = new AsyncLocalStorage<{ active: boolean }>()

  function assertUsable(): void {
    if (closing !== undefined) throw new LifelineError('LL_DB_CLOSED', `the ${KIND} executor was used after close()`)
    if (insideTransaction.getStore()?.active === true) throw ownTransactionError()
  }

  /** Runs `work` counted as in-flight, so close() waits for it before closing the database. */
  function track<T>(work: () => Promise<T>): Promise<T> {
    assertUsable()
    const running = work()
    inFlight.add(running)
    const forget = () => inFlight.delete(running)
    running.then(forget, forget)
    return running
  }

  async function runOne<R extends SqlRow>(
    on: PGlite | Transaction,
    text: string,
    params: readonly unknown[] | undefined,
  ): Promise<SqlResult<R>> {
    try {
      return toResult(await on.query<R>(text, copyParams(params)))
    } catch (err) {
      throw wrapDriverError(err, { phase: 'query', kind: KIND, statement: text })
    }
  }

  async function runScriptOn(on: PGlite | Transaction, sql: string): Promise<void> {
    try {
      await on.exec(sql)
    } catch (err) {
      throw wrapDriverError(err, { phase: 'query', kind: KIND, statement: sql })
    }
  }

  function handle(tx: Transaction, state: { active: boolean }): SqlQueryable & ScriptRunner {
    function assertActive(): void {
      if (!state.active) throw new LifelineError('LL_DB_CLOSED', 'a transaction handle was used after its transaction ended')
    }
    return {
      async query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
        assertActive()
        return runOne<R>(tx, text, params)
      },
      async [runScriptKey](sql: string) {
        assertActive()
        await runScriptOn(tx, sql)
      },
    }
  }

  async function runTransaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    const state = { active: true }
    let failure: { error: unknown } | undefined
    try {
      return await db.transaction(async (tx) => {
        try {
          return await insideTransaction.run(state, () => fn(handle(tx, state)))
        } catch (err) {
          failure = { error: err }
          throw err
        } finally {
          state.active = false
        }
      })
    } catch (err) {
      if (failure !== undefined) {
        if (err !== failure.error) log.warn({ err }, 'ROLLBACK failed after the transaction callback threw')
        throw failure.error
      }
      if (err instanceof TransactionAbortedError) throw abortedTransactionError(KIND, err)
      throw wrapDriverError(err, { phase: 'query', kind: KIND, statement: 'BEGIN/COMMIT' })
    }
  }

  const executor: SqlExecutor & AsyncDisposable & ScriptRunner = {
    kind: KIND,
    async query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
      return track(() => runOne<R>(db, text, params))
    },
    async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>) {
      return track(() => runTransaction(fn))
    },
    async [runScriptKey](sql: string) {
      await track(() => runScriptOn(db, sql))
    },
    close() {
      closing ??= (async () => {
        await Promise.allSettled([...inFlight])
        try {
          await db.close()
        } finally {
          releaseLock?.()
        }
        log.debug({ dataDir: dataDir ?? 'memory://' }, 'PGlite closed')
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return executor.close()
    },
  }
  return executor
}
