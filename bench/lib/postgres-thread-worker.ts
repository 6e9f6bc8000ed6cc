/**
 * The worker-thread side of {@link ./postgres-thread.ts} (an experiment of issue 14): a `pg` pool ({@link openPostgres}) in its own
 * thread, answering the statements the main thread posts. Loaded only as a worker's entry point.
 *
 * Messages in (arrays, the first element the operation):
 * - `['query', id, text, params, prepared]`, `['script', id, sql]`;
 * - `['begin', id, tx]`, `['tx-query', id, tx, text, params, prepared]`, `['tx-script', id, tx, sql]`,
 *   `['end', id, tx, commit]` (COMMIT when `commit`, else ROLLBACK);
 * - `['close', id]`.
 * Messages out: `[id, true, result]`, `[id, false, error]` ({@link serializeError}), and
 * `['log', level, fields, message]` for the executor's own log lines (the logger is the main thread's).
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { Logger } from '../../src/logger.js'
import { prepared, type SqlQueryable } from '../../src/store/executor.js'
import { openPostgres, type PostgresOptions } from '../../src/store/postgres.js'
import { runScript } from '../../src/store/script.js'
import { fromTransfer, serializeError, toTransfer, type ThreadRequest } from './postgres-thread-messages.js'

const port = parentPort
if (port === null) throw new Error('postgres-thread.ts runs only as a worker thread (see bench/lib/postgres-thread.ts)')

/** Log lines go to the main thread's logger; `err` fields travel as their serialized form. */
function forwardingLogger(bindings: Record<string, unknown>): Logger {
  const line = (level: string) => (fields: Record<string, unknown> | string, message?: string) => {
    const obj = typeof fields === 'string' ? {} : { ...fields }
    if (obj.err !== undefined) obj.err = serializeError(obj.err)
    port!.postMessage(['log', level, { ...bindings, ...obj }, typeof fields === 'string' ? fields : (message ?? '')])
  }
  const logger = { trace: line('trace'), debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), fatal: line('fatal'), child: (more: Record<string, unknown>) => forwardingLogger({ ...bindings, ...more }) }
  return logger as unknown as Logger
}

const options = workerData as Omit<PostgresOptions, 'logger'>
const executor = await openPostgres({ ...options, logger: forwardingLogger({}) }).catch((err: unknown) => {
  port.postMessage([0, false, serializeError(err)])
  return undefined
})

if (executor !== undefined) {
  port.postMessage([0, true, null])
  const transactions = new Map<number, { tx: SqlQueryable; end: (commit: boolean) => void; endId?: number }>()
  const answer = (id: number, work: Promise<unknown>) =>
    work.then(
      (result) => port.postMessage([id, true, toTransfer(result)]),
      (err: unknown) => port.postMessage([id, false, serializeError(err)]),
    )
  const statement = (text: string, isPrepared: boolean) => (isPrepared ? prepared(text) : text)
  const inTransaction = (tx: number) => {
    const t = transactions.get(tx)
    if (t === undefined) throw new Error(`no open transaction ${tx}`)
    return t
  }

  port.on('message', (msg: ThreadRequest) => {
    switch (msg[0]) {
      case 'query':
        void answer(msg[1], executor.query(statement(msg[2], msg[4]), fromTransfer(msg[3])))
        return
      case 'script':
        void answer(msg[1], runScript(executor, msg[2]))
        return
      case 'begin': {
        const [, id, tx] = msg
        let began = false
        const done = executor.transaction(
          (handle) =>
            new Promise<void>((resolve, reject) => {
              began = true
              transactions.set(tx, { tx: handle, end: (commit) => (commit ? resolve() : reject(new Error('rolled back by the caller'))) })
              port.postMessage([id, true, null])
            }),
        )
        done.then(
          () => {
            const endId = transactions.get(tx)?.endId
            transactions.delete(tx)
            if (endId !== undefined) port.postMessage([endId, true, null])
          },
          (err: unknown) => {
            const endId = transactions.get(tx)?.endId
            transactions.delete(tx)
            const target = began ? endId : id
            if (target !== undefined) port.postMessage([target, false, serializeError(err)])
          },
        )
        return
      }
      case 'tx-query':
        void answer(msg[1], Promise.resolve().then(() => inTransaction(msg[2]).tx.query(statement(msg[3], msg[5]), fromTransfer(msg[4]))))
        return
      case 'tx-script':
        void answer(msg[1], Promise.resolve().then(() => runScript(inTransaction(msg[2]).tx, msg[3])))
        return
      case 'end': {
        const [, id, tx, commit] = msg
        const t = transactions.get(tx)
        if (t === undefined) {
          port.postMessage([id, false, serializeError(new Error(`no open transaction ${tx}`))])
          return
        }
        t.endId = id
        t.end(commit)
        return
      }
      case 'close':
        void answer(msg[1], executor.close())
        return
    }
  })
}
