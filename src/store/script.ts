/**
 * Multi-statement SQL scripts (migration files) without widening the public {@link SqlQueryable}.
 *
 * `query()` runs exactly one statement: pg would run several through its simple protocol but then
 * returns an array of results, and PGlite refuses them outright (42601, "cannot insert multiple commands
 * into a prepared statement"). A script needs a different call on each driver (pg: `query(text)` without
 * parameters; PGlite: `exec(text)`), so both executors and their transaction handles carry it under a
 * symbol that only this folder knows.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import type { SqlQueryable } from './executor.js'

/** Internal: the key of the script method on executors and transaction handles made in this folder. */
export const runScriptKey: unique symbol = Symbol('lifeline.store.runScript')

/** Internal: a queryable that can also run a script of several `;`-separated statements. */
export interface ScriptRunner {
  [runScriptKey](sql: string): Promise<void>
}

/**
 * Runs `sql` (any number of statements, no parameters) on `target`, an executor or transaction handle
 * created by `openPostgres` / `openPglite`. Inside a transaction handle the statements join that transaction.
 */
export async function runScript(target: SqlQueryable, sql: string): Promise<void> {
  const runner = (target as Partial<ScriptRunner>)[runScriptKey]
  if (typeof runner !== 'function') {
    throw new LifelineError(
      'LL_DB_QUERY',
      'this executor cannot run multi-statement scripts: use one opened by openDatabase, openPostgres or openPglite',
    )
  }
  await runner.call(target, sql)
}
