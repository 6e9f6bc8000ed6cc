/**
 * Storage: the one folder that imports the database drivers (`pg`, `@electric-sql/pglite`). Everything
 * else talks to a {@link SqlExecutor}, the same on a PostgreSQL server and on embedded PGlite.
 *
 * Values read back are the same on both: int8/bigint and numeric as strings (cast with `::int` or
 * `Number()`), bytea as Buffer, json/jsonb parsed, timestamps as Date. Errors are LifelineErrors:
 * LL_DB_QUERY with `details.sqlState` (e.g. '23505'), LL_DB_CONNECT, LL_DB_LOCKED, LL_DB_MIGRATION, LL_DB_CLOSED.
 *
 * @example
 * import { databaseFromEnv, loadMigrations, migrate } from './store/index.js'
 * const db = await databaseFromEnv()
 * await migrate(db, await loadMigrations('migrations'))
 *
 * @module
 */
export type { SqlExecutor, SqlQueryable, SqlResult, SqlRow } from './executor.js'
export { openPostgres, openPglite } from './open.js'
export { postgresDefaults } from './postgres-defaults.js'
export type { PostgresOptions } from './postgres.js'
export type { PgliteOptions } from './pglite.js'
export {
  DEFAULT_DATA_DIR,
  databaseFromEnv,
  databaseOptionsFromEnv,
  describeDatabase,
  isPostgresUrl,
  openDatabase,
} from './open.js'
export type { OpenDatabaseOptions } from './open.js'
export { loadMigrations, migrate, migrateDefaults, migrationLockKey } from './migrate.js'
export type { MigrateOptions, Migration } from './migrate.js'
