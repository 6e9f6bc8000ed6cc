/**
 * Keeps the planner's statistics of tables current while their writer fills them.
 *
 * Lifeline's tables start empty and can grow by thousands of rows in a minute (a poison storm parks a key
 * per poison record; an outage fills the DLQ). Until a table is analyzed, PostgreSQL's planner has no column
 * statistics for it and guesses: it took `group_id = $1` on the parked keys for a selective condition, where
 * every row of a consumer group shares it, so a head move read every parked key of its group instead of
 * probing the primary key for its own. Measured (bench/README.md, hol notes): a 20-key head move took ~11 ms
 * on a never-analyzed table of 20,000 parked keys, 1.6 ms once analyzed; on PGlite 85 ms against 3.3 ms (in
 * the caller's thread then). A PostgreSQL server's autovacuum analyzes a table within its naptime (a minute by
 * default), and a prepared statement keeps a plan made on the old statistics until then; PGlite runs no
 * autovacuum at all.
 *
 * So a writer counts the rows it writes and runs `ANALYZE` in the background once `firstAt` rows were
 * written and then each time the count has doubled: a logarithmic number of runs, never two at a time, never
 * awaited by a write. An `ANALYZE` also ends prepared statements' cached plans (PostgreSQL replans them on
 * their next execution).
 *
 * @module
 */

export const tableStatsDefaults = {
  /** Rows written before the first `ANALYZE`. */
  firstAt: 100,
} as const

/** Counts writes and runs `analyze()` when they have doubled since the last run (pure but for the callbacks). */
export class TableStatistics {
  #written = 0
  #next: number
  #running: Promise<void> | undefined
  #runs = 0

  constructor(
    private readonly analyze: () => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
    firstAt: number = tableStatsDefaults.firstAt,
  ) {
    this.#next = firstAt
  }

  /** `rows` rows were written. Starts an `ANALYZE` in the background when due. */
  wrote(rows: number): void {
    this.#written += rows
    if (this.#written < this.#next || this.#running !== undefined) return
    this.#next = this.#written * 2
    this.#runs++
    // A run that throws before it returns a promise is a failed run like any other.
    this.#running = new Promise((resolve) => resolve(this.analyze()))
      .then(
        () => undefined,
        (err: unknown) => this.onError(err),
      )
      .finally(() => {
        this.#running = undefined
      })
  }

  /** How many `ANALYZE` runs were started. */
  get runs(): number {
    return this.#runs
  }

  /** Resolves once no `ANALYZE` is running (a closing writer waits for it before its database is closed). */
  settled(): Promise<void> {
    return this.#running ?? Promise.resolve()
  }
}
