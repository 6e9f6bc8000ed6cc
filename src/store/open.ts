/**
 * Choosing the database: a PostgreSQL URL means a server, anything else the embedded PGlite in a data
 * directory (by default `.lifeline/db` under the working directory).
 *
 * @module
 */
import { resolve } from 'node:path'
import { LifelineError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { SqlExecutor } from './executor.js'
import type { PgliteOptions } from './pglite.js'
import type { PostgresOptions } from './postgres.js'

/**
 * The drivers are optional peer dependencies: each is loaded when a database of its kind is opened, so an
 * application on a PostgreSQL server needs no PGlite installed, and one on PGlite no `pg`.
 */
async function driver<T>(load: () => Promise<T>, pkg: string): Promise<T> {
  try {
    return await load()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(pkg)) {
      throw new LifelineError('LL_DB_CONNECT', `this database needs the ${pkg} package: npm install ${pkg}`, { cause: err })
    }
    throw err
  }
}

/** Opens a PostgreSQL server's database (the `pg` driver, loaded now). */
export async function openPostgres(options: PostgresOptions): ReturnType<(typeof import('./postgres.js'))['openPostgres']> {
  return (await driver(() => import('./postgres.js'), 'pg')).openPostgres(options)
}

/**
 * Opens an embedded PGlite database (`@electric-sql/pglite`, loaded now), by default in the process's
 * database thread ({@link ./thread.ts}; `thread: false` keeps it in this one). A relative `dataDir` resolves
 * against the cwd. On a data directory held by another live process: LL_DB_LOCKED naming it.
 *
 * @example
 * const db = await openPglite({ dataDir: '.lifeline/db' })
 * await db.transaction(async (tx) => tx.query('insert into seen (id) values ($1)', ['m-1']))
 * await db.close()
 */
export async function openPglite(options: PgliteOptions = {}): ReturnType<(typeof import('./pglite.js'))['openPgliteHere']> {
  if (options.thread !== undefined && typeof options.thread !== 'boolean') {
    throw new LifelineError('LL_OPTIONS_INVALID', `thread must be a boolean, got ${String(options.thread)}`, { details: { path: 'thread' } })
  }
  const { threadAvailable, openInThread } = await import('./thread.js')
  if (options.thread === false || !threadAvailable()) return (await driver(() => import('./pglite.js'), '@electric-sql/pglite')).openPgliteHere(options)
  const dataDir = options.dataDir === undefined || options.dataDir === 'memory://' ? undefined : resolve(options.dataDir)
  return driver(() => openInThread({ kind: 'pglite', ...(dataDir === undefined ? {} : { dataDir }) }, options.logger), '@electric-sql/pglite')
}

export interface OpenDatabaseOptions {
  /** `postgres://` or `postgresql://` URL of a server. When set, `dataDir` is ignored. */
  url?: string
  /** PGlite data directory when no `url` is given (`'memory://'` for in-memory). Default `.lifeline/db`. */
  dataDir?: string
  /** Pool size for PostgreSQL (ignored by PGlite, which has one connection). Default 10. */
  poolSize?: number
  /** PostgreSQL: how long a statement may run, ms (0: no limit; default 60 000). See {@link PostgresOptions}. */
  statementTimeoutMs?: number
  /** PostgreSQL: run the ordering protocol's statements as named prepared statements (default true). See {@link PostgresOptions}. */
  preparedStatements?: boolean
  /** PGlite: in the process's database thread (default true; see {@link openPglite}). Ignored for PostgreSQL. */
  thread?: boolean
  /** Parent logger. Default: silent. */
  logger?: Logger
}

/** Where PGlite keeps its files when neither `url` nor `dataDir` is given, relative to the cwd. */
export const DEFAULT_DATA_DIR = '.lifeline/db'

/** True for `postgres://` and `postgresql://` URLs. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url)
}

/**
 * Opens PostgreSQL when `options.url` is given, else PGlite at `options.dataDir` (default `.lifeline/db`).
 * A `url` of another scheme is refused (LL_OPTIONS_INVALID) rather than silently falling back to PGlite.
 *
 * @example
 * const db = await openDatabase({ url: process.env.DATABASE_URL })
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<SqlExecutor & AsyncDisposable> {
  const { url, logger } = options
  if (url !== undefined && url !== '') {
    if (!isPostgresUrl(url)) {
      throw new LifelineError('LL_OPTIONS_INVALID', 'url must start with postgres:// or postgresql://', {
        details: { path: 'url' },
      })
    }
    return openPostgres({
      url,
      ...(options.poolSize === undefined ? {} : { poolSize: options.poolSize }),
      ...(options.statementTimeoutMs === undefined ? {} : { statementTimeoutMs: options.statementTimeoutMs }),
      ...(options.preparedStatements === undefined ? {} : { preparedStatements: options.preparedStatements }),
      ...(logger === undefined ? {} : { logger }),
    })
  }
  const dataDir = options.dataDir === 'memory://' ? 'memory://' : resolve(options.dataDir ?? DEFAULT_DATA_DIR)
  return openPglite({ dataDir, ...(options.thread === undefined ? {} : { thread: options.thread }), ...(logger === undefined ? {} : { logger }) })
}

/**
 * The database settings in `env` (pure): `DATABASE_URL` (PostgreSQL) when set and non-empty, else
 * `LIFELINE_DATA_DIR` (PGlite), else nothing, which {@link openDatabase} reads as the default data dir.
 */
export function databaseOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<OpenDatabaseOptions, 'url' | 'dataDir'> {
  const url = env.DATABASE_URL
  if (url !== undefined && url !== '') return { url }
  const dataDir = env.LIFELINE_DATA_DIR
  return dataDir !== undefined && dataDir !== '' ? { dataDir } : {}
}

/** Opens the database that `DATABASE_URL` / `LIFELINE_DATA_DIR` name (see {@link databaseOptionsFromEnv}). */
export async function databaseFromEnv(
  options: { env?: NodeJS.ProcessEnv; logger?: Logger } = {},
): Promise<SqlExecutor & AsyncDisposable> {
  return openDatabase({
    ...databaseOptionsFromEnv(options.env),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  })
}

/**
 * A short label from `kind` and the text of `select version()` (pure), e.g. "PostgreSQL 15.19 (server)"
 * or "PGlite 0.5.16 (PostgreSQL 18.6, embedded)".
 */
export function describeVersion(kind: SqlExecutor['kind'], version: string): string {
  const postgres = /PostgreSQL\s+(\S+)/.exec(version)?.[1] ?? 'unknown version'
  if (kind === 'postgres') return `PostgreSQL ${postgres} (server)`
  const pglite = /\(PGlite\s+([^)\s]+)\)/.exec(version)?.[1]
  return `PGlite${pglite === undefined ? '' : ` ${pglite}`} (PostgreSQL ${postgres}, embedded)`
}

/** Asks the database for its version and returns {@link describeVersion}'s label for it. */
export async function describeDatabase(db: SqlExecutor): Promise<string> {
  const { rows } = await db.query<{ version: string }>('select version() as version')
  return describeVersion(db.kind, rows[0]?.version ?? '')
}
