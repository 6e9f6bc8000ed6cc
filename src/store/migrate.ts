/**
 * Append-only SQL migrations: files `NNNN_name.sql` numbered 0001, 0002, ... without gaps, applied in
 * order, each recorded with the sha256 of its text. An applied file may never change (add a new one
 * instead); a changed one stops migrate() with LL_DB_MIGRATION.
 *
 * One migrate() call is one transaction under a transaction-scoped advisory lock, so processes starting
 * together apply each migration exactly once, and a failing migration leaves nothing behind. Statements
 * that PostgreSQL refuses inside a transaction (`CREATE INDEX CONCURRENTLY`, `VACUUM`) cannot be used,
 * and a file must not contain its own BEGIN/COMMIT.
 *
 * @module
 */
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LifelineError, isLifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SqlExecutor } from './executor.js'
import { runScript } from './script.js'

export interface Migration {
  /** The number before the first `_`: 1 for `0001_init.sql`. */
  readonly version: number
  /** The part between `NNNN_` and `.sql`. */
  readonly name: string
  /** The file name, for messages. */
  readonly file: string
  /** The file's text: one or more `;`-separated statements. */
  readonly sql: string
  /** sha256 (hex) of `sql`. */
  readonly checksum: string
}

export interface MigrateOptions {
  /** The table recording applied migrations, `name` or `schema.name` in lower case. Default `lifeline_migrations`. */
  table?: string
  /** Advisory-lock key serialising concurrent migrate() calls. Default: derived from `table` ({@link migrationLockKey}). */
  lockKey?: bigint
  /** Parent logger; each applied migration is logged at info. Default: silent. */
  logger?: Logger
}

/** Defaults of {@link MigrateOptions}. */
export const migrateDefaults = { table: 'lifeline_migrations' } as const satisfies Partial<MigrateOptions>

const FILE_NAME = /^(\d{4})_([A-Za-z0-9][A-Za-z0-9_-]*)\.sql$/
const TABLE_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/

function migrationError(message: string, details: Record<string, unknown> = {}, cause?: unknown): LifelineError {
  return new LifelineError('LL_DB_MIGRATION', message, { details, ...(cause === undefined ? {} : { cause }) })
}

/** Builds a {@link Migration} from a file name and its text (pure); a name not shaped `NNNN_name.sql` is refused. */
export function toMigration(file: string, sql: string): Migration {
  const match = FILE_NAME.exec(file)
  if (match === null) {
    throw migrationError(`migration file name ${JSON.stringify(file)} is not NNNN_name.sql (e.g. 0001_create_jobs.sql)`, { file })
  }
  const checksum = createHash('sha256').update(sql).digest('hex')
  return { version: Number(match[1]), name: match[2] as string, file, sql, checksum }
}

/** Sorts by version and checks the set (pure): versions must run 1, 2, 3, ... with no duplicate and no gap. */
export function orderMigrations(migrations: readonly Migration[]): Migration[] {
  const sorted = [...migrations].sort((a, b) => a.version - b.version)
  sorted.forEach((migration, index) => {
    const previous = sorted[index - 1]
    if (previous !== undefined && previous.version === migration.version) {
      throw migrationError(`migrations ${previous.file} and ${migration.file} share version ${migration.version}`, {
        version: migration.version,
      })
    }
    if (migration.version !== index + 1) {
      throw migrationError(
        `migration version ${index + 1} is missing before ${migration.file}: versions must run 0001, 0002, ... without gaps`,
        { version: index + 1 },
      )
    }
  })
  return sorted
}

/**
 * Reads every `*.sql` file of `dir` (other files are ignored) into ordered migrations. Rejects
 * (LL_DB_MIGRATION) a `.sql` file not named `NNNN_name.sql`, a duplicate or missing version, an unreadable dir.
 */
export async function loadMigrations(dir: string): Promise<Migration[]> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    throw migrationError(`cannot read the migrations directory ${dir}`, { dir }, err)
  }
  const files = entries.filter((entry) => entry.isFile() && entry.name.endsWith('.sql')).map((entry) => entry.name)
  const migrations = await Promise.all(files.map(async (file) => toMigration(file, await readFile(join(dir, file), 'utf8'))))
  return orderMigrations(migrations)
}

/** The default advisory-lock key for a migrations table: the first 64 bits of sha256 of its name (pure). */
export function migrationLockKey(table: string): bigint {
  return createHash('sha256').update(`lifeline:migrations:${table}`).digest().readBigInt64BE(0)
}

/**
 * Applies the migrations the database has not run yet, in order, in one transaction; returns those applied
 * (empty when up to date). Refuses (LL_DB_MIGRATION) when an applied migration's file has changed or a
 * migration fails; in both cases nothing of this call remains. Versions recorded in the database but absent
 * from `migrations` (a newer release ran here) are logged and left alone.
 */
export async function migrate(
  db: SqlExecutor,
  migrations: readonly Migration[],
  options: MigrateOptions = {},
): Promise<Migration[]> {
  const table = options.table ?? migrateDefaults.table
  if (!TABLE_NAME.test(table)) {
    throw new LifelineError('LL_OPTIONS_INVALID', `table must be a lower-case name or schema.name, got ${JSON.stringify(table)}`, {
      details: { path: 'table' },
    })
  }
  const ordered = orderMigrations(migrations)
  const lockKey = options.lockKey ?? migrationLockKey(table)
  const log = (options.logger ?? silentLogger()).child({ component: 'store', table })

  const appliedNow = await db.transaction(async (tx) => {
    // Held until COMMIT/ROLLBACK: a second migrate() waits here, then sees everything the first applied.
    await tx.query('select pg_advisory_xact_lock($1::int8)', [lockKey.toString()])
    await tx.query(
      `create table if not exists ${table} (
         version integer primary key,
         name text not null,
         checksum text not null,
         applied_at timestamptz not null default now()
       )`,
    )
    const { rows } = await tx.query<{ version: number; checksum: string }>(`select version, checksum from ${table} order by version`)
    const byVersion = new Map(ordered.map((migration) => [migration.version, migration]))
    const applied = new Set<number>()
    for (const row of rows) {
      applied.add(row.version)
      const migration = byVersion.get(row.version)
      if (migration === undefined) {
        log.warn({ version: row.version }, 'the database has a migration this release does not know; leaving it alone')
      } else if (migration.checksum !== row.checksum) {
        throw migrationError(
          `migration ${migration.file} was changed after it was applied (checksum ${row.checksum.slice(0, 12)}... in ${table}, ${migration.checksum.slice(0, 12)}... on disk); migrations are append-only: restore the file and add a new migration`,
          { version: migration.version, file: migration.file, table },
        )
      }
    }

    const pending = ordered.filter((migration) => !applied.has(migration.version))
    for (const migration of pending) {
      try {
        await runScript(tx, migration.sql)
      } catch (err) {
        const sqlState = isLifelineError(err) ? err.details.sqlState : undefined
        const reason = err instanceof Error ? err.message : String(err)
        throw migrationError(`migration ${migration.file} failed, nothing was applied: ${reason}`, {
          version: migration.version,
          file: migration.file,
          ...(sqlState === undefined ? {} : { sqlState }),
        }, err)
      }
      await tx.query(`insert into ${table} (version, name, checksum) values ($1, $2, $3)`, [
        migration.version,
        migration.name,
        migration.checksum,
      ])
    }
    return pending
  })
  // Logged after COMMIT: until then a later failure would have undone them.
  for (const migration of appliedNow) log.info({ version: migration.version, file: migration.file }, 'migration applied')
  return appliedNow
}
