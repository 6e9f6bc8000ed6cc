/**
 * A fresh, randomly named PostgreSQL database for one benchmark run on the server in `DATABASE_URL`
 * (default the local one), migrated, and dropped at the end; or an embedded PGlite one in a temporary
 * directory, deleted at the end.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SqlExecutor } from '../../src/store/executor.js'
import { openDatabase } from '../../src/store/open.js'
import { openPostgres } from '../../src/store/postgres.js'
import { openInThread } from '../../src/store/thread.js'
import { migrateLifeline } from '../../src/store/schema.js'

export interface BenchDatabase {
  db: SqlExecutor
  /** The server URL with the password hidden (for `params`). */
  server: string
  /** Closes the pool and drops the database (never throws). */
  drop(): Promise<void>
}

export const serverUrl = (): string => process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/**
 * Creates `<prefix>_<8 hex>` on the server, opens a pool of `poolSize` on it and applies Lifeline's migrations
 * (or what `migrateWith` applies instead, e.g. the migrations up to an earlier version).
 */
export async function benchDatabase(prefix: string, poolSize: number, migrateWith: (db: SqlExecutor) => Promise<unknown> = migrateLifeline): Promise<BenchDatabase> {
  const url = serverUrl()
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  const admin = await openPostgres({ url, poolSize: 1 })
  await admin.query(`create database ${name}`)
  const dbUrl = new URL(url)
  dbUrl.pathname = `/${name}`
  // PG_THREAD=1: the pool in the database thread (an experiment of issue 14: bench/README.md, hol notes).
  const db = process.env.PG_THREAD ? await openInThread({ kind: 'postgres', url: dbUrl.href, poolSize }) : await openPostgres({ url: dbUrl.href, poolSize })
  const drop = async () => {
    await db.close().catch(() => undefined)
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined)
    await admin.close().catch(() => undefined)
  }
  await migratedOrDropped(db, drop, migrateWith)
  return { db, server: url.replace(/\/\/[^@]*@/, '//***@'), drop }
}

/** Migrates `db`; if that fails, drops it (`drop`) and rethrows. */
async function migratedOrDropped(db: SqlExecutor, drop: () => Promise<void>, migrateWith: (db: SqlExecutor) => Promise<unknown>): Promise<void> {
  try {
    await migrateWith(db)
  } catch (err) {
    await drop()
    throw err
  }
}

/** An embedded PGlite database in a new temporary directory, migrated; `drop()` closes it and deletes the directory. */
export async function benchPglite(prefix: string): Promise<Omit<BenchDatabase, 'server'>> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
  // PGLITE_THREAD=0: PGlite in this thread, as before it ran in the database thread (bench/README.md, hol notes).
  const db = await openDatabase({ dataDir: dir, thread: process.env.PGLITE_THREAD !== '0' })
  const drop = async () => {
    await db.close().catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
  }
  await migratedOrDropped(db, drop, migrateLifeline)
  return { db, drop }
}
