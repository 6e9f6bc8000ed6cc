/**
 * The one SQL-executor interface every Lifeline store is written against. Two implementations:
 * real PostgreSQL through `pg` ({@link ./postgres.ts}) and embedded PGlite ({@link ./pglite.ts}).
 * No driver type crosses this boundary.
 *
 * @module
 */

export type SqlRow = Record<string, unknown>

export interface SqlResult<R extends SqlRow = SqlRow> {
  rows: R[]
  /** Rows affected (INSERT/UPDATE/DELETE) or returned (SELECT). */
  rowCount: number
}

/** Anything that can run a parameterised statement: the executor itself or an open transaction. */
export interface SqlQueryable {
  /** Runs one statement with `$1..$n` parameters. Never build SQL from strings: pass values as params. */
  query<R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>>
}

export interface SqlExecutor extends SqlQueryable {
  /** `postgres` (a server through `pg`) or `pglite` (embedded). */
  readonly kind: 'postgres' | 'pglite'
  /**
   * Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws (and rethrows).
   * Statements must go through the `tx` handed to `fn`, not the executor.
   */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>
  /** Idempotent: a second call returns the same promise. */
  close(): Promise<void>
}
