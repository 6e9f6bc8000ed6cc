/**
 * Lifeline's own tables (`migrations/` at the package root), applied with {@link migrate} under the
 * `lifeline_migrations` table. Safe to call from every consumer at start: concurrent calls serialise on
 * the advisory lock and the second one applies nothing.
 */
import { fileURLToPath } from 'node:url'
import type { Logger } from '../logger.js'
import type { SqlExecutor } from './executor.js'
import { loadMigrations, migrate, type Migration } from './migrate.js'

/** The package's `migrations/` directory (src/store and dist/src/store are both below the package root). */
export const LIFELINE_MIGRATIONS_DIR = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../migrations/' : '../../migrations/', import.meta.url))

let cached: Promise<Migration[]> | undefined

/** Applies Lifeline's migrations that `db` has not run yet; returns those applied. */
export async function migrateLifeline(db: SqlExecutor, options: { logger?: Logger } = {}): Promise<Migration[]> {
  cached ??= loadMigrations(LIFELINE_MIGRATIONS_DIR)
  return migrate(db, await cached, { logger: options.logger })
}
