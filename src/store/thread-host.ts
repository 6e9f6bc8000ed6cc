/**
 * The database thread's side of {@link ./thread.ts}: the entry point of the one worker thread per process
 * that runs the executors opened there (embedded PGlite instances, or a `pg` pool), answering the requests
 * the main thread posts ({@link ThreadRequest}). Loaded only as a worker's entry point.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads'
import type { Logger } from '../logger.js'
import { prepared, type SqlExecutor, type SqlQueryable } from './executor.js'
import { runScript } from './script.js'
import { fromTransfer, serializeError, toTransfer, type DatabaseSpec, type ThreadRequest } from './thread-messages.js'

const port = parentPort
if (port === null) throw new Error('thread-host.ts runs only as a worker thread (see src/store/thread.ts)')

/** An executor's log lines go to the main thread, which logs them with the logger given at open. */
function forwardingLogger(db: number, bindings: Record<string, unknown>): Logger {
  const line = (level: string) => (fields: Record<string, unknown> | string, message?: string) => {
    const obj = typeof fields === 'string' ? {} : { ...fields }
    if (obj.err !== undefined) obj.err = serializeError(obj.err)
    port!.postMessage(['log', db, level, { ...bindings, ...obj }, typeof fields === 'string' ? fields : (message ?? '')])
  }
  const logger = {
    trace: line('trace'), debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), fatal: line('fatal'),
    child: (more: Record<string, unknown>) => forwardingLogger(db, { ...bindings, ...more }),
  }
  return logger as unknown as Logger
}

/** Opens `spec` here, in this thread (the drivers load now, as {@link ./open.ts} loads them). */
async function open(db: number, spec: DatabaseSpec): Promise<SqlExecutor> {
  const logger = forwardingLogger(db, {})
  if (spec.kind === 'pglite') {
    const { openPgliteHere } = await import('./pglite.js')
    return openPgliteHere({ ...(spec.dataDir === undefined ? {} : { dataDir: spec.dataDir }), logger })
  }
  const { kind: _kind, ...options } = spec
  const { openPostgres } = await import('./postgres.js')
  return openPostgres({ ...options, logger })
}

const executors = new Map<number, SqlExecutor>()
const transactions = new Map<number, { handle: SqlQueryable; end: (commit: boolean) => void; endId?: number }>()

function answer(id: number, work: () => Promise<unknown>): void {
  let running: Promise<unknown>
  try {
    running = work()
  } catch (err) {
    running = Promise.reject(err)
  }
  running.then(
    (result) => port!.postMessage([id, true, toTransfer(result ?? null)]),
    (err: unknown) => port!.postMessage([id, false, serializeError(err)]),
  )
}

function executor(db: number): SqlExecutor {
  const e = executors.get(db)
  if (e === undefined) throw new Error(`no open database ${db} in the database thread`)
  return e
}

function transaction(tx: number): SqlQueryable {
  const t = transactions.get(tx)
  if (t === undefined) throw new Error(`no open transaction ${tx} in the database thread`)
  return t.handle
}

/** The text as the main thread marked it: a statement marked {@link prepared} there is marked here too. */
const statement = (text: string, isPrepared: boolean) => (isPrepared ? prepared(text) : text)

/**
 * A transaction held open across requests: BEGIN answers `id` once the callback runs; the callback then
 * waits for 'end' (COMMIT when it resolves, ROLLBACK when it rejects), whose request gets the outcome.
 * A BEGIN that fails before the callback runs answers `id` with its error.
 */
function begin(id: number, db: number, tx: number): void {
  let began = false
  let running: Promise<void>
  try {
    running = executor(db).transaction(
      (handle) =>
        new Promise<void>((resolve, reject) => {
          began = true
          transactions.set(tx, { handle, end: (commit) => (commit ? resolve() : reject(new Error('rolled back by the caller'))) })
          port!.postMessage([id, true, null])
        }),
    )
  } catch (err) {
    running = Promise.reject(err)
  }
  const settle = (reply: (target: number) => void) => {
    const endId = transactions.get(tx)?.endId
    transactions.delete(tx)
    const target = began ? endId : id
    if (target !== undefined) reply(target)
  }
  running.then(
    () => settle((target) => port!.postMessage([target, true, null])),
    (err: unknown) => settle((target) => port!.postMessage([target, false, serializeError(err)])),
  )
}

port.on('message', (msg: ThreadRequest) => {
  switch (msg[0]) {
    case 'open': {
      const [, id, db, spec] = msg
      answer(id, async () => {
        executors.set(db, await open(db, spec))
        return null
      })
      return
    }
    case 'query':
      answer(msg[1], () => executor(msg[2]).query(statement(msg[3], msg[5]), fromTransfer(msg[4])))
      return
    case 'script':
      answer(msg[1], () => runScript(executor(msg[2]), msg[3]))
      return
    case 'begin':
      begin(msg[1], msg[2], msg[3])
      return
    case 'tx-query':
      answer(msg[1], () => transaction(msg[2]).query(statement(msg[3], msg[5]), fromTransfer(msg[4])))
      return
    case 'tx-script':
      answer(msg[1], () => runScript(transaction(msg[2]), msg[3]))
      return
    case 'end': {
      const [, id, tx, commit] = msg
      const t = transactions.get(tx)
      if (t === undefined) {
        port!.postMessage([id, false, serializeError(new Error(`no open transaction ${tx} in the database thread`))])
        return
      }
      t.endId = id
      t.end(commit)
      return
    }
    case 'close': {
      const [, id, db] = msg
      answer(id, async () => {
        const e = executors.get(db)
        executors.delete(db)
        await e?.close()
        return null
      })
      return
    }
  }
})
