/**
 * How the statements of a transaction reach a `pg` connection ({@link ./postgres.ts}): BEGIN travels with the
 * transaction's first statement, in one round trip, and no statement of a transaction is ever sent to a
 * connection that is not inside one.
 *
 * node-postgres sends one statement at a time per connection and waits for its answer, so a separate BEGIN
 * costs a whole round trip (a wake-up of the server's backend and of Node's main thread) before the first
 * statement can even be sent. Here the first statement's Parse/Bind/Describe/Execute follow BEGIN's
 * Parse/Bind/Execute in the same write, closed by a single Sync. That one Sync is the guarantee: PostgreSQL
 * runs the messages up to a Sync as one unit and, after an error, discards everything up to the Sync, so a
 * BEGIN that fails leaves the statement behind it unexecuted — it can never run (and commit) on its own.
 * pg's pipeline mode would not do: it closes every statement with its own Sync, and a statement behind a
 * failed BEGIN would then run in autocommit.
 *
 * The connection's transaction status (from each ReadyForQuery) is checked as each statement is about to
 * be written: the opening statement needs an idle connection, every later one (and COMMIT) a connection
 * inside a transaction block — after a failed BEGIN the statements queued behind it are refused, not sent.
 *
 * @module
 */
import pg from 'pg'
import { LifelineError } from '../errors.js'

/** The transaction's first statement (BEGIN goes with it), or one after it. */
export type Placement = 'opening' | 'inside'

/** `extended`: one statement with parameters; `simple`: text without parameters (several statements allowed). */
export type Protocol = 'extended' | 'simple'

/** A statement that failed, and which statement it was (`BEGIN` when the opening round trip failed at BEGIN). */
export class StatementFailure {
  constructor(
    readonly cause: unknown,
    readonly statement: string,
  ) {}
}

/** The parts of pg's Query this module drives (pg calls `submit` when the connection is ready for it). */
interface QueryInternals {
  submit(connection: pg.Connection): Error | null | undefined
  handleCommandComplete(msg: unknown, connection: pg.Connection): void
}

/** pg's transaction status letter from the last ReadyForQuery: I idle, T in a transaction block, E in a failed one. */
type TransactionStatus = ReturnType<pg.ClientBase['getTransactionStatus']>

const INSIDE = new Set<TransactionStatus>(['T', 'E'])

function notInside(status: TransactionStatus): LifelineError {
  return new LifelineError(
    'LL_DB_QUERY',
    `a statement of a transaction was not sent: the connection is not inside a transaction block (status ${status}; its BEGIN failed)`,
    { details: { kind: 'postgres', transactionStatus: status } },
  )
}

/**
 * Sends `text` on `client` as a statement of a transaction at `placement`: resolves with its result, rejects
 * with a {@link StatementFailure}. `opening` sends `begin` (BEGIN; tests pass one that fails) in the same
 * round trip (extended protocol only).
 */
export function sendInTransaction(
  client: pg.ClientBase,
  text: string,
  params: readonly unknown[] | undefined,
  placement: Placement,
  protocol: Protocol,
  begin = 'BEGIN',
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    let completed = 0
    const config: pg.QueryConfig & { queryMode?: 'extended' } = protocol === 'extended' ? { text, values: [...(params ?? [])], queryMode: 'extended' } : { text }
    const query = new pg.Query(
      config,
      (err: Error | undefined, result: unknown) => {
        if (err !== undefined && err !== null) {
          reject(new StatementFailure(err, placement === 'opening' && completed === 0 ? begin : text))
          return
        }
        if (placement === 'inside') {
          resolve(result as pg.QueryResult)
          return
        }
        // The callback runs after ReadyForQuery, so the status is this round trip's. Anything but a transaction
        // block here would mean BEGIN did not take effect (a driver that split the round trip): say so loudly.
        const status = client.getTransactionStatus()
        if (!INSIDE.has(status)) reject(new StatementFailure(notInside(status), text))
        else resolve((result as pg.QueryResult[])[1]!)
      },
    )
    const internals = query as unknown as QueryInternals
    const submit = internals.submit.bind(query)
    const commandComplete = internals.handleCommandComplete.bind(query)
    internals.handleCommandComplete = (msg, connection) => {
      completed++
      commandComplete(msg, connection)
    }
    internals.submit = (connection) => {
      const status = client.getTransactionStatus()
      if (placement === 'inside') return INSIDE.has(status) ? submit(connection) : notInside(status)
      if (status !== 'I') return new LifelineError('LL_DB_QUERY', `a transaction was not begun: the connection is already inside one (status ${status})`, { details: { kind: 'postgres', transactionStatus: status } })
      // One write, one Sync: BEGIN's messages, then the statement's (pg's own submit ends them with the Sync).
      connection.stream.cork()
      try {
        connection.parse({ name: '', text: begin, types: [] }, true)
        connection.bind({}, true)
        connection.execute({}, true)
        return submit(connection)
      } finally {
        connection.stream.uncork()
      }
    }
    client.query(query)
  })
}
