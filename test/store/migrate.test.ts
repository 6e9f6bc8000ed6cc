import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { isLifelineError, type LifelineError } from '../../src/errors.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { loadMigrations, migrate, migrationLockKey } from '../../src/store/migrate.js'
import { connectAgain, databaseKinds, freshDatabase, tempDir } from '../helpers/db.js'

/** A temporary migrations directory holding `files` (name → SQL). */
async function migrationsDir(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = await tempDir(t, 'lifeline-migrations')
  await addFiles(dir, files)
  return dir
}

async function addFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql)
}

function expectCode(code: LifelineError['code']) {
  return (err: unknown) => {
    assert.ok(isLifelineError(err, code), `expected ${code}, got ${String(err)}`)
    return true
  }
}

async function tableExists(db: SqlExecutor, name: string): Promise<boolean> {
  const { rows } = await db.query<{ exists: boolean }>('select to_regclass($1) is not null as exists', [name])
  return rows[0]?.exists === true
}

const BASE = {
  '0001_create_notes.sql': 'create table notes (id int primary key, body text not null);',
  // Depends on 0001: only works when applied in order.
  '0002_seed.sql': "insert into notes values (1, 'one');\ninsert into notes values (2, 'two');\n",
  '0003_add_column.sql': "alter table notes add column tag text not null default 'none'; update notes set tag = 'seeded';",
}

describe('loadMigrations', () => {
  it('orders files by version, ignores other files and computes sha256 checksums', async (t) => {
    const dir = await migrationsDir(t, { ...BASE, 'README.md': '# notes', '0004_later.sql.bak': 'junk' })
    await mkdir(join(dir, 'drafts.sql')) // a directory, not a file
    const migrations = await loadMigrations(dir)
    assert.deepEqual(
      migrations.map((m) => [m.version, m.name, m.file]),
      [
        [1, 'create_notes', '0001_create_notes.sql'],
        [2, 'seed', '0002_seed.sql'],
        [3, 'add_column', '0003_add_column.sql'],
      ],
    )
    assert.equal(migrations[1]?.checksum, createHash('sha256').update(BASE['0002_seed.sql']).digest('hex'))
  })

  for (const [label, files] of [
    ['a badly named .sql file', { ...BASE, 'add_index.sql': 'select 1' }],
    ['a three-digit version', { '001_init.sql': 'select 1' }],
    ['a duplicate version', { ...BASE, '0002_other_seed.sql': 'select 1' }],
    ['a gap', { '0001_a.sql': 'select 1', '0003_c.sql': 'select 1' }],
    ['a set not starting at 0001', { '0002_b.sql': 'select 1' }],
  ] as const) {
    it(`rejects ${label} with LL_DB_MIGRATION`, async (t) => {
      const dir = await migrationsDir(t, files)
      await assert.rejects(loadMigrations(dir), expectCode('LL_DB_MIGRATION'))
    })
  }

  it('rejects a missing directory with LL_DB_MIGRATION', async (t) => {
    const dir = await tempDir(t)
    await assert.rejects(loadMigrations(join(dir, 'nope')), expectCode('LL_DB_MIGRATION'))
  })

  it('derives a stable 64-bit lock key per table name', () => {
    assert.equal(migrationLockKey('lifeline_migrations'), migrationLockKey('lifeline_migrations'))
    assert.notEqual(migrationLockKey('lifeline_migrations'), migrationLockKey('other_migrations'))
    assert.equal(BigInt.asIntN(64, migrationLockKey('x')), migrationLockKey('x'))
  })
})

for (const kind of databaseKinds()) {
  describe(`migrate: ${kind}`, () => {
    it('applies pending migrations in order and records each with its checksum', async (t) => {
      const db = await freshDatabase(t, kind)
      const migrations = await loadMigrations(await migrationsDir(t, BASE))
      const applied = await migrate(db, migrations)
      assert.deepEqual(applied.map((m) => m.version), [1, 2, 3])
      assert.deepEqual((await db.query('select id, body, tag from notes order by id')).rows, [
        { id: 1, body: 'one', tag: 'seeded' },
        { id: 2, body: 'two', tag: 'seeded' },
      ])
      const { rows } = await db.query<{ version: number; name: string; checksum: string; applied_at: unknown }>(
        'select version, name, checksum, applied_at from lifeline_migrations order by version',
      )
      assert.deepEqual(rows.map((r) => [r.version, r.name, r.checksum]), migrations.map((m) => [m.version, m.name, m.checksum]))
      assert.ok(rows.every((r) => r.applied_at instanceof Date))
    })

    it('is idempotent: a second run applies nothing, a new file only itself', async (t) => {
      const db = await freshDatabase(t, kind)
      const dir = await migrationsDir(t, BASE)
      await migrate(db, await loadMigrations(dir))
      assert.deepEqual(await migrate(db, await loadMigrations(dir)), [])
      await addFiles(dir, { '0004_more.sql': "insert into notes (id, body) values (3, 'three')" })
      assert.deepEqual((await migrate(db, await loadMigrations(dir))).map((m) => m.file), ['0004_more.sql'])
      assert.equal((await db.query('select * from notes')).rowCount, 3)
    })

    it('refuses an applied migration whose file was edited, applying nothing new', async (t) => {
      const db = await freshDatabase(t, kind)
      const dir = await migrationsDir(t, { '0001_create_notes.sql': BASE['0001_create_notes.sql'] })
      await migrate(db, await loadMigrations(dir))
      await addFiles(dir, {
        '0001_create_notes.sql': 'create table notes (id bigint primary key, body text);',
        '0002_seed.sql': BASE['0002_seed.sql'],
      })
      await assert.rejects(migrate(db, await loadMigrations(dir)), (err) => {
        assert.ok(isLifelineError(err, 'LL_DB_MIGRATION'))
        assert.equal(err.details.file, '0001_create_notes.sql')
        assert.match(err.message, /append-only/)
        return true
      })
      assert.equal((await db.query('select * from notes')).rowCount, 0, '0002 was not applied')
    })

    it('rolls a failing run back entirely, including the migrations before the failing one', async (t) => {
      const db = await freshDatabase(t, kind)
      const dir = await migrationsDir(t, {
        '0001_create_notes.sql': BASE['0001_create_notes.sql'],
        '0002_broken.sql': "insert into notes values (1, 'ok');\ninsert into notes values (1, 'duplicate');",
      })
      await assert.rejects(migrate(db, await loadMigrations(dir)), (err) => {
        assert.ok(isLifelineError(err, 'LL_DB_MIGRATION'))
        assert.equal(err.details.file, '0002_broken.sql')
        assert.equal(err.details.sqlState, '23505')
        assert.ok(isLifelineError(err.cause, 'LL_DB_QUERY'))
        return true
      })
      assert.equal(await tableExists(db, 'notes'), false)
      assert.equal(await tableExists(db, 'lifeline_migrations'), false)
    })

    it('keeps its records in the table it is given and refuses unsafe table names', async (t) => {
      const db = await freshDatabase(t, kind)
      const migrations = await loadMigrations(await migrationsDir(t, BASE))
      await migrate(db, migrations, { table: 'app_schema_versions' })
      assert.equal(await tableExists(db, 'app_schema_versions'), true)
      assert.equal(await tableExists(db, 'lifeline_migrations'), false)
      await assert.rejects(migrate(db, migrations, { table: 'x; drop table notes' }), expectCode('LL_OPTIONS_INVALID'))
      await assert.rejects(migrate(db, migrations, { table: 'Mixed' }), expectCode('LL_OPTIONS_INVALID'))
    })

    it(
      'applies each migration exactly once when several executors migrate concurrently',
      { skip: kind === 'pglite' && 'PGlite is one connection in one process: nothing can race it' },
      async (t) => {
        const db = await freshDatabase(t, kind)
        const executors = [db, ...(await Promise.all([1, 2, 3, 4].map(() => connectAgain(t, db))))]
        const migrations = await loadMigrations(
          await migrationsDir(t, {
            // The sleep keeps the first runner inside its transaction while the others queue on the lock.
            '0001_create_runs.sql': 'create table runs (id serial primary key, migration int not null); select pg_sleep(0.3);',
            '0002_record.sql': 'insert into runs (migration) values (2);',
            '0003_record.sql': 'insert into runs (migration) values (3);',
          }),
        )
        const results = await Promise.all(executors.map((executor) => migrate(executor, migrations)))
        const appliedCounts = results.map((applied) => applied.length).sort()
        assert.deepEqual(appliedCounts, [0, 0, 0, 0, 3])
        assert.deepEqual((await db.query('select migration from runs order by id')).rows, [{ migration: 2 }, { migration: 3 }])
        assert.equal((await db.query('select * from lifeline_migrations')).rowCount, 3)
      },
    )
  })
}
