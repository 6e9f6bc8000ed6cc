/**
 * A {@link SqlExecutor} whose database runs in a worker thread: the database thread, one per process,
 * started at the first open ({@link ./thread-host.ts}). The calling thread only posts a statement's text
 * and parameters and reads the rows back; the statement's work happens there.
 *
 * Embedded PGlite opens here by default ({@link ./open.ts}): PGlite is PostgreSQL compiled to WebAssembly,
 * and every statement's execution — parsing, planning, the heap and index writes — would otherwise run on
 * the thread that runs the handlers (bench/README.md, hol notes: 0.61-0.70 → 0.77-0.88 of the healthy throughput with
 * a 1% poison rate). A `pg` pool can open here too (the hol profile's `PG_THREAD=1`); on a server the
 * statements' work is the server's, and moving the client gained nothing measurable, so it is not an option
 * of {@link openPostgres}.
 *
 * The executor is the same as in-process: the same values (bytea as Buffer, int8 as string), LifelineErrors
 * with their code, `retriable` and `details` (their stack is the caller's), transactions, prepared
 * statements, scripts and `close()` (statements in flight finish first). PGlite's guard against a call on the
 * executor from inside its own transaction holds here too. The thread is unreferenced while nothing waits
 * for it, so an idle open database does not keep the process alive, as in-process PGlite does not. If the
 * thread dies, the statements in flight (and the transactions open) fail with LL_DB_CONNECT, retriable, as
 * on a server connection that drops; the next statement starts a new thread and reopens the database there
 * (a pool on the same server, or PGlite on the same data directory, with what it committed). An in-memory
 * PGlite went with the thread: its statements keep failing with LL_DB_CONNECT.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { Worker } from 'node:worker_threads'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { ownTransactionError } from './driver-error.js'
import { releaseOwnLockFile } from './lock-file.js'
import { preparedName, type SqlExecutor, type SqlQueryable, type SqlResult, type SqlRow } from './executor.js'
import { runScriptKey, type ScriptRunner } from './script.js'
import { deserializeError, fromTransfer, toTransfer, type DatabaseSpec, type ThreadReply, type ThreadRequest } from './thread-messages.js'

interface Waiter {
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

interface Host {
  worker: Worker
  waiting: Map<number, Waiter>
  logs: Map<number, Logger>
  dead?: LifelineError
  /** Resolves once the thread has exited (after which nothing of it runs). */
  exited: Promise<void>
}

let host: Host | undefined
let nextId = 1
let nextDb = 1
let nextTx = 1

/**
 * How the thread starts: on thread-host.js when built; from the TypeScript sources (tests, `npm start`, the
 * benchmarks, all under tsx) a worker does not inherit the loader hooks, so it registers tsx's first.
 * Undefined when neither is possible (sources run under another loader): the caller opens in-process.
 */
function workerSource(): { source: string | URL; evaluate: boolean } | undefined {
  if (!import.meta.url.endsWith('.ts')) return { source: new URL('./thread-host.js', import.meta.url), evaluate: false }
  let tsx: string
  try {
    tsx = import.meta.resolve('tsx/esm/api')
  } catch {
    return undefined
  }
  const entry = new URL('./thread-host.ts', import.meta.url).href
  return { source: `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}) })`, evaluate: true }
}

/** True when a database thread can be started here (see {@link workerSource}). */
export function threadAvailable(): boolean {
  return workerSource() !== undefined
}

function startHost(): Host {
  const from = workerSource()
  if (from === undefined) throw new LifelineError('LL_DB_CONNECT', 'the database thread cannot start: run the built package, or the sources under tsx')
  const worker = new Worker(from.source, { eval: from.evaluate, env: process.env, stdout: false, stderr: false })
  worker.unref()
  let exit!: () => void
  const h: Host = { worker, waiting: new Map(), logs: new Map(), exited: new Promise<void>((resolve) => (exit = resolve)) }
  const fail = (err: LifelineError) => {
    h.dead ??= err
    if (host === h) host = undefined
    for (const w of h.waiting.values()) w.reject(h.dead)
    h.waiting.clear()
  }
  worker.on('message', (msg: ThreadReply) => {
    if (msg[0] === 'log') {
      const [, db, level, fields, message] = msg
      const log = h.logs.get(db) as unknown as Record<string, ((o: object, m: string) => void) | undefined> | undefined
      const f = fields.err === undefined ? fields : { ...fields, err: deserializeError(fields.err as never) }
      log?.[level]?.call(log, f, message)
      return
    }
    const w = h.waiting.get(msg[0])
    if (w === undefined) return
    h.waiting.delete(msg[0])
    if (h.waiting.size === 0) worker.unref()
    if (msg[1]) w.resolve(msg[2])
    else w.reject(deserializeError(msg[2]))
  })
  worker.on('error', (err) => fail(new LifelineError('LL_DB_CONNECT', `the database thread failed: ${err.message}`, { cause: err })))
  worker.on('exit', (code) => {
    fail(new LifelineError('LL_DB_CONNECT', `the database thread exited (code ${code})`))
    exit()
  })
  return h
}

/**
 * Internal, for the tests of a dying thread: terminates the database thread as a crash inside it would
 * end it (its databases are not closed). No-op when none runs.
 */
export async function terminateDatabaseThread(): Promise<void> {
  await host?.worker.terminate()
}

function call<T>(h: Host, request: ThreadRequest): Promise<T> {
  if (h.dead !== undefined) return Promise.reject(h.dead)
  return new Promise<T>((resolve, reject) => {
    if (h.waiting.size === 0) h.worker.ref()
    h.waiting.set(request[1], { resolve: resolve as (v: unknown) => void, reject })
    h.worker.postMessage(request)
  })
}

/**
 * The thread's error, with the stack of the call that awaited it (the thread's own frames say nothing). A
 * new Error's stack, not Error.captureStackTrace: only the former has V8's async frames (the callers).
 */
function here(err: unknown): unknown {
  if (err instanceof Error) {
    const frames = new Error().stack?.split('\n').slice(2) ?? []
    err.stack = [`${err.name}: ${err.message}`, ...frames].join('\n')
  }
  return err
}

/**
 * Opens `spec` in the database thread (started now if it is not running) and returns its executor; fails
 * as the in-process open would (LL_DB_CONNECT, LL_DB_LOCKED, ...).
 */
export async function openInThread(spec: DatabaseSpec, logger?: Logger): Promise<SqlExecutor & AsyncDisposable> {
  const kind = spec.kind
  let h = (host ??= startHost())
  const db = nextDb++
  const log = (logger ?? silentLogger()).child({ component: 'store', kind, thread: 'database' })
  /** Opens the database in `target` (its log lines go to `log`). */
  async function openOn(target: Host): Promise<void> {
    target.logs.set(db, log)
    try {
      await call(target, ['open', nextId++, db, spec])
    } catch (err) {
      target.logs.delete(db)
      throw err
    }
  }
  try {
    await openOn(h)
  } catch (err) {
    throw here(err)
  }

  // A database the thread took with it reopens in a new thread at the next call: a server's pool, or PGlite
  // in a data directory (its files hold what was committed; its lock, still this process's, is released
  // first). An in-memory PGlite went with the thread and stays failed.
  const lock = spec.kind === 'pglite' && spec.dataDir !== undefined ? `${spec.dataDir}.lock` : undefined
  const reopens = spec.kind === 'postgres' || lock !== undefined
  let reopening: Promise<void> | undefined
  async function reopen(dead: Host): Promise<void> {
    await dead.exited
    if (lock !== undefined) releaseOwnLockFile(lock)
    const next = (host ??= startHost())
    await openOn(next)
    h = next
    log.warn({ cause: dead.dead?.message }, 'the database thread had stopped: the database is open again in a new one')
  }
  /** The thread to post to: the current one, or a new one with the database reopened there. */
  async function live(): Promise<Host> {
    if (h.dead === undefined) return h
    if (!reopens || closing !== undefined) throw h.dead
    reopening ??= reopen(h).finally(() => (reopening = undefined))
    await reopening
    return h
  }

  let closing: Promise<void> | undefined
  // PGlite has one connection, held by an open transaction: a call on the executor from inside its own
  // transaction() would wait for it forever. As in-process, it fails at once.
  const inside = kind === 'pglite' ? new AsyncLocalStorage<{ active: boolean }>() : undefined

  function assertUsable(): void {
    if (closing !== undefined) throw new LifelineError('LL_DB_CLOSED', `the ${kind} executor was used after close()`)
    if (inside?.getStore()?.active === true) throw ownTransactionError()
  }

  async function query<R extends SqlRow>(text: string, params: readonly unknown[] | undefined, tx?: { id: number; host: Host }): Promise<SqlResult<R>> {
    // No copy of `params` first: posting clones them, and toTransfer copies an array only to change a value.
    const values = params === undefined ? undefined : toTransfer(params as unknown[])
    const isPrepared = preparedName(text) !== undefined
    try {
      const at = tx?.host ?? (h.dead === undefined ? h : await live())
      return fromTransfer(await call<SqlResult<R>>(at, tx === undefined ? ['query', nextId++, db, text, values, isPrepared] : ['tx-query', nextId++, tx.id, text, values, isPrepared]))
    } catch (err) {
      throw here(err)
    }
  }

  async function script(sql: string, tx?: { id: number; host: Host }): Promise<void> {
    try {
      await (tx === undefined ? call(await live(), ['script', nextId++, db, sql]) : call(tx.host, ['tx-script', nextId++, tx.id, sql]))
    } catch (err) {
      throw here(err)
    }
  }

  async function runTransaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
    // A transaction belongs to the thread it began in: if that thread dies, its statements fail with it.
    const txn = { id: nextTx++, host: h }
    try {
      txn.host = await live()
      await call(txn.host, ['begin', nextId++, db, txn.id])
    } catch (err) {
      throw here(err)
    }
    const state = { active: true }
    function assertActive(): void {
      if (!state.active) throw new LifelineError('LL_DB_CLOSED', 'a transaction handle was used after its transaction ended')
    }
    const handle: SqlQueryable & ScriptRunner = {
      async query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
        assertActive()
        return query<R>(text, params, txn)
      },
      async [runScriptKey](sql: string) {
        assertActive()
        await script(sql, txn)
      },
    }
    let result: T
    try {
      result = inside === undefined ? await fn(handle) : await inside.run(state, () => fn(handle))
    } catch (err) {
      state.active = false
      // The thread rolls back; a ROLLBACK that fails is logged there, and the callback's error is the one to see.
      await call(txn.host, ['end', nextId++, txn.id, false]).catch(() => undefined)
      throw err
    }
    state.active = false
    try {
      await call(txn.host, ['end', nextId++, txn.id, true])
    } catch (err) {
      throw here(err)
    }
    return result
  }

  /**
   * Counted in flight, so close() lets it finish first. An async function awaiting the work, not a
   * `.then()` on it: V8 follows a promise's first reaction to find the callers for an error's stack.
   */
  let active = 0
  let drained: (() => void) | undefined
  async function track<T>(work: () => Promise<T>): Promise<T> {
    assertUsable()
    active++
    try {
      return await work()
    } finally {
      if (--active === 0) drained?.()
    }
  }

  const executor: SqlExecutor & AsyncDisposable & ScriptRunner = {
    kind,
    query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) {
      return track(() => query<R>(text, params))
    },
    transaction(fn) {
      return track(() => runTransaction(fn))
    },
    [runScriptKey](sql: string) {
      return track(() => script(sql))
    },
    close() {
      closing ??= (async () => {
        if (active > 0) await new Promise<void>((resolve) => (drained = resolve))
        try {
          await reopening?.catch(() => undefined)
          if (h.dead === undefined) await call(h, ['close', nextId++, db])
          else if (lock !== undefined) {
            await h.exited
            releaseOwnLockFile(lock)
          }
        } catch (err) {
          throw here(err)
        } finally {
          h.logs.delete(db)
        }
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return executor.close()
    },
  }
  return executor
}
