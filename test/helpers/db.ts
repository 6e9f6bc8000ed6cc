/**
 * Databases for tests: every test gets a fresh, randomly named database, removed when the test ends.
 * PGlite always runs; PostgreSQL runs too when `DATABASE_URL` names a server whose role may CREATE DATABASE.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { SqlExecutor } from '../../src/store/executor.js'
import { openPglite } from '../../src/store/open.js'
import { openPostgres } from '../../src/store/postgres.js'
import { defer } from './cleanup.js'
import { randomName } from './names.js'

export { defer }
export { randomName } from './names.js'

export type DatabaseKind = SqlExecutor['kind']

/** The kinds to run database tests against: always `pglite`, plus `postgres` when DATABASE_URL is set. */
export function databaseKinds(): DatabaseKind[] {
  return process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite']
}

/** A new empty directory under the OS temp dir, removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'lifeline-test'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
  defer(t, () => rm(dir, { recursive: true, force: true }))
  return dir
}

function adminUrl(): string {
  const url = process.env.DATABASE_URL
  if (!url) throw new Error('DATABASE_URL is not set: the postgres kind needs a server')
  return url
}

async function asAdmin(statement: string): Promise<void> {
  const admin = await openPostgres({ url: adminUrl(), poolSize: 1 })
  try {
    await admin.query(statement)
  } finally {
    await admin.close()
  }
}

/** URL of each fresh PostgreSQL database, by its first executor, for {@link connectAgain}. */
const databaseUrls = new WeakMap<SqlExecutor, string>()

async function freshPostgres(t: TestContext): Promise<SqlExecutor> {
  const name = randomName('lifeline_test', '_')
  await asAdmin(`create database ${name}`)
  defer(t, () => asAdmin(`drop database if exists ${name} with (force)`))
  const url = new URL(adminUrl())
  url.pathname = `/${name}`
  const db = await openPostgres({ url: url.href, poolSize: 4 })
  defer(t, () => db.close())
  databaseUrls.set(db, url.href)
  return db
}

let pgliteTemplate: Promise<string> | undefined

/**
 * A PGlite data directory initialised once per test process. Copying it and opening the copy takes a
 * fraction of a fresh initdb (~0.5 s against 1.5-5 s), and tests the on-disk path users run by default.
 */
function templateDataDir(): Promise<string> {
  pgliteTemplate ??= (async () => {
    const root = mkdtempSync(join(tmpdir(), 'lifeline-pglite-template-'))
    process.on('exit', () => rmSync(root, { recursive: true, force: true }))
    const dataDir = join(root, 'db')
    await (await openPglite({ dataDir })).close()
    return dataDir
  })()
  return pgliteTemplate
}

/** A path holding a copy of a freshly initialised PGlite data directory (not opened), removed when the test ends. */
export async function pgliteDataDir(t: TestContext): Promise<string> {
  const template = await templateDataDir()
  const dataDir = join(await tempDir(t, 'lifeline-pglite'), 'db')
  cpSync(template, dataDir, { recursive: true }) // sync: several times faster than fs.promises.cp here
  return dataDir
}

/**
 * A fresh database of `kind`, closed (then dropped or deleted) when the test ends. PostgreSQL: a new
 * database `lifeline_test_<random>` on DATABASE_URL's server; PGlite: a copy of a freshly initialised data
 * directory in a temp dir.
 */
export async function freshDatabase(t: TestContext, kind: DatabaseKind): Promise<SqlExecutor> {
  if (kind === 'postgres') return freshPostgres(t)
  const db = await openPglite({ dataDir: await pgliteDataDir(t) })
  defer(t, () => db.close())
  return db
}

/** The URL of a PostgreSQL database made by {@link freshDatabase} (for a command line that opens it itself). */
export function databaseUrl(db: SqlExecutor): string {
  const url = databaseUrls.get(db)
  if (url === undefined) throw new Error('databaseUrl needs a postgres executor made by freshDatabase')
  return url
}

/** A second executor on the same PostgreSQL database as `db` (from {@link freshDatabase}), closed before it is dropped. */
export async function connectAgain(t: TestContext, db: SqlExecutor): Promise<SqlExecutor> {
  const url = databaseUrls.get(db)
  if (url === undefined) throw new Error('connectAgain needs a postgres executor made by freshDatabase')
  const other = await openPostgres({ url, poolSize: 4 })
  defer(t, () => other.close())
  return other
}

/**
 * The database runtime tests keep ordering state in: the PostgreSQL server when DATABASE_URL is set (as in
 * CI), else embedded PGlite. Fresh per test.
 */
export function stateDatabase(t: TestContext): Promise<SqlExecutor> {
  return freshDatabase(t, process.env.DATABASE_URL ? 'postgres' : 'pglite')
}
