/**
 * An experiment of issue 14 (bench/README.md, hol notes, "The failure path off the main thread"): a
 * {@link SqlExecutor} over a PostgreSQL server whose `pg` pool runs in a worker thread
 * ({@link ./postgres-thread-worker.ts}): the statements' encoding, socket writes and result parsing leave the
 * thread that runs the handlers, which only posts the text and parameters and reads the rows back. The hol
 * profile runs the runtime's state database through it with `PG_THREAD=1`. Not part of Lifeline: it did
 * not gain enough to ship (the notes give the figures).
 *
 * Same contract as {@link openPostgres} (it is that executor, in the other thread): the same options, the
 * same values back (bytea as Buffer, int8 as string), the same LifelineErrors (code, retriable,
 * `details.sqlState`), transactions, prepared statements and scripts; `close()` lets statements in flight
 * finish, ends the pool and the thread. The thread dying fails every statement in flight and every later one
 * with LL_DB_CONNECT (retriable: a runtime retrying a state write keeps its records and reports it).
 *
 * @module
 */
import { Worker } from 'node:worker_threads'
import { LifelineError } from '../../src/errors.js'
import { silentLogger } from '../../src/logger.js'
import { preparedName, type SqlExecutor, type SqlQueryable, type SqlResult, type SqlRow } from '../../src/store/executor.js'
import type { PostgresOptions } from '../../src/store/postgres.js'
import { runScriptKey, type ScriptRunner } from '../../src/store/script.js'
import { deserializeError, fromTransfer, toTransfer, type ThreadReply, type ThreadRequest } from './postgres-thread-messages.js'

const KIND = 'postgres'

/**
 * The thread, on postgres-thread-worker.ts. A worker does not inherit the main thread's loader hooks (tsx,
 * which runs the benchmarks), so it registers tsx's before it imports the TypeScript entry point.
 */
function startThread(workerData: unknown): Worker {
  const options = { workerData, env: process.env, stdout: false, stderr: false }
  const tsx = import.meta.resolve('tsx/esm/api')
  const entry = new URL('./postgres-thread-worker.ts', import.meta.url).href
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}) })`, { ...options, eval: true })
}

/**
 * Opens a `pg` pool on `options.url` in a worker thread and checks one connection, as {@link openPostgres}
 * does (a wrong URL fails here with LL_DB_CONNECT).
 *
 * @example
 * const db = await openPostgresThread({ url: process.env.DATABASE_URL! })
 */
export async function openPostgresThread(options: PostgresOptions): Promise<SqlExecutor & AsyncDisposable> {
  const { logger, ...rest } = options
  const log = (logger ?? silentLogger()).child({ component: 'store', kind: KIND, thread: 'worker' })
  const worker = startThread(rest)
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (err: unknown) => void }>()
  let nextId = 1
  let nextTx = 1
  let dead: LifelineError | undefined
  let closing: Promise<void> | undefined

  const opened = new Promise<void>((resolve, reject) => waiting.set(0, { resolve: () => resolve(), reject }))
  const failAll = (err: LifelineError) => {
    dead ??= err
    for (const w of waiting.values()) w.reject(dead)
    waiting.clear()
  }
  worker.on('message', (msg: ThreadReply) => {
    if (msg[0] === 'log') {
      const [, level, fields, message] = msg
      const f = fields.err === undefined ? fields : { ...fields, err: deserializeError(fields.err as never) }
      ;(log as unknown as Record<string, (o: object, m: string) => void>)[level]?.call(log, f, message)
      return
    }
    const w = waiting.get(msg[0])
    if (w === undefined) return
    waiting.delete(msg[0])
    if (msg[1]) w.resolve(msg[2])
    else w.reject(deserializeError(msg[2]))
  })
  worker.on('error', (err) => failAll(new LifelineError('LL_DB_CONNECT', `the PostgreSQL thread failed: ${err.message}`, { cause: err, details: { kind: KIND } })))
  worker.on('exit', (code) => failAll(new LifelineError('LL_DB_CONNECT', closing === undefined ? `the PostgreSQL thread exited (code ${code})` : `the ${KIND} executor was used after close()`, { details: { kind: KIND } })))

  function call<T>(request: ThreadRequest): Promise<T> {
    if (dead !== undefined) return Promise.reject(dead)
    return new Promise<T>((resolve, reject) => {
      waiting.set(request[1], { resolve: resolve as (v: unknown) => void, reject })
      worker.postMessage(request)
    })
  }
  const afterClose = () => Promise.reject(new LifelineError('LL_DB_CLOSED', `the ${KIND} executor was used after close()`))

  try {
    await opened
  } catch (err) {
    await worker.terminate()
    throw err
  }

  async function query<R extends SqlRow>(text: string, params: readonly unknown[] | undefined, tx?: number): Promise<SqlResult<R>> {
    const values = params === undefined ? undefined : toTransfer([...params])
    const isPrepared = preparedName(text) !== undefined
    const result = await call<SqlResult<R>>(tx === undefined ? ['query', nextId++, text, values, isPrepared] : ['tx-query', nextId++, tx, text, values, isPrepared])
    return fromTransfer(result)
  }

  async function runTransaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    const txId = nextTx++
    await call(['begin', nextId++, txId])
    let active = true
    function assertActive(): void {
      if (!active) throw new LifelineError('LL_DB_CLOSED', 'a transaction handle was used after its transaction ended')
    }
    const handle: SqlQueryable & ScriptRunner = {
      async query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
        assertActive()
        return query<R>(text, params, txId)
      },
      async [runScriptKey](sql: string) {
        assertActive()
        await call(['tx-script', nextId++, txId, sql])
      },
    }
    let result: T
    try {
      result = await fn(handle)
    } catch (err) {
      active = false
      await call(['end', nextId++, txId, false]).catch(() => undefined) // the thread rolled back (or its connection is gone)
      throw err
    }
    active = false
    await call(['end', nextId++, txId, true])
    return result
  }

  const executor: SqlExecutor & AsyncDisposable & ScriptRunner = {
    kind: KIND,
    query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
      return closing === undefined ? query<R>(text, params) : afterClose()
    },
    transaction(fn) {
      return closing === undefined ? runTransaction(fn) : afterClose()
    },
    async [runScriptKey](sql: string) {
      if (closing !== undefined) return afterClose()
      await call(['script', nextId++, sql])
    },
    close() {
      closing ??= (async () => {
        if (dead === undefined) await call(['close', nextId++]).catch((err: unknown) => log.warn({ err }, 'closing the PostgreSQL thread\'s pool failed'))
        await worker.terminate()
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return executor.close()
    },
  }
  return executor
}
