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

const preparedNames = new Map<string, string>()

/**
 * Marks `text` as a hot statement of fixed text: the PostgreSQL executor runs it as a named prepared
 * statement, parsed and planned once per connection instead of on every run (the ordering protocol's
 * batched statements spend about a third of their server time planning). Returns `text`. The text must
 * hold no values (they go in parameters): each distinct text keeps its name for the life of the process.
 * PGlite, and a PostgreSQL executor opened with `preparedStatements: false`, run it as any other.
 */
export function prepared(text: string): string {
  if (!preparedNames.has(text)) preparedNames.set(text, `lifeline_${preparedNames.size + 1}`)
  return text
}

/** The name {@link prepared} gave `text`; undefined for a statement not marked. */
export function preparedName(text: string): string | undefined {
  return preparedNames.get(text)
}
