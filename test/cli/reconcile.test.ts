/**
 * `lifeline reconcile`. Most checks run the command tree in this process (buildProgram(), what main.ts runs);
 * one runs bin/lifeline.js as a child process for the end-to-end path: loading a TypeScript module, the exit
 * code of --fail-on-drift, close() of the definitions, and the error line main.ts prints.
 *
 * The definitions come from a module written to a temp dir: `stock` compares tables stock_source and
 * stock_target in the database the run is recorded in (2 missing, 2 extra, 2 different among 25 rows).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { loadDefinitions } from '../../src/cli/commands/reconcile.js'
import { runCli, runCliFails } from '../helpers/cli.js'
import { isLifelineError } from '../../src/errors.js'
import { openPglite } from '../../src/store/open.js'
import { pgliteDataDir, tempDir } from '../helpers/db.js'

const exec = promisify(execFile)
const cli = new URL('../../bin/lifeline.js', import.meta.url).pathname
const RECONCILE = new URL('../../src/effects/reconcile.ts', import.meta.url).href

/** The definitions module: `stock` (fails reading after the cursor in `<dir>/fail-at` while that file exists), `other` in an array. */
function moduleSource(dir: string): string {
  return `
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { defineReconciliation } from ${JSON.stringify(RECONCILE)}

const dir = ${JSON.stringify(dir)}
const side = (table) => ({
  async read(cursor, limit, { db }) {
    const failAt = join('fail-at')
    if (cursor !== null && existsSync(failAt) && readFileSync(failAt, 'utf8') === cursor) throw new Error('source went away')
    const { rows } = await db.query(\`select id, qty from \${table} where ($1::text is null or id > $1) order by id limit $2\`, [cursor, limit])
    return { rows: rows.map((r) => ({ key: r.id, value: { qty: r.qty } })), next: rows.length < limit ? null : rows[rows.length - 1].id }
  },
  async get(ids, { db }) {
    const { rows } = await db.query(\`select id, qty from \${table} where id = any($1::text[])\`, [ids])
    return new Map(rows.map((r) => [r.id, { qty: r.qty }]))
  },
})
function join(name) { return dir + '/' + name }
const close = () => appendFileSync(join('closed.log'), 'closed\\n')

export const stock = defineReconciliation({
  name: 'stock',
  description: 'stock rows against their copy',
  source: side('stock_source'),
  target: side('stock_target'),
  key: (id: string) => id,
  batchSize: 4,
  repair: {
    missing: async ({ key, source }, { db }) => { await db.query('insert into stock_target values ($1, $2)', [key, source.qty]) },
    extra: async ({ key }, { db }) => { await db.query('delete from stock_target where id = $1', [key]) },
    different: async ({ key, source }, { db }) => { await db.query('update stock_target set qty = $2 where id = $1', [key, source.qty]) },
  },
  close,
})
export const more = [defineReconciliation({ name: 'other', source: { read: async () => ({ rows: [], next: null }) }, target: { get: async () => new Map() }, key: (k: string) => k, close })]
`
}

/** A temp dir with the module (`defs.ts`) and a PGlite data dir holding the two tables with their drift. */
async function seeded(t: TestContext): Promise<{ dir: string; module: string; db: string }> {
  const dir = await tempDir(t, 'lifeline-reconcile-cli')
  const module = join(dir, 'defs.ts')
  // As in an ESM project: without it, tsx compiles a .ts file to CommonJS (or name the module .mts).
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
  writeFileSync(module, moduleSource(dir))
  const db = await pgliteDataDir(t)
  const store = await openPglite({ dataDir: db })
  try {
    for (const table of ['stock_source', 'stock_target']) await store.query(`create table ${table} (id text primary key, qty integer not null)`)
    await store.query(`insert into stock_source select 'k' || lpad(i::text, 2, '0'), i * 10 from generate_series(1, 25) as i`)
    await store.query(`insert into stock_target select * from stock_source where id not in ('k03', 'k17')`)
    await store.query(`insert into stock_target values ('x01', 1), ('x02', 2)`)
    await store.query(`update stock_target set qty = -1 where id in ('k05', 'k20')`)
  } finally {
    await store.close()
  }
  return { dir, module, db }
}

async function targetRows(db: string): Promise<unknown[]> {
  const store = await openPglite({ dataDir: db })
  try {
    return (await store.query('select id, qty from stock_target order by id')).rows
  } finally {
    await store.close()
  }
}

/** Runs `lifeline reconcile <args>` in this process and returns what it printed. */
const reconcile = async (args: string[]): Promise<string> => (await runCli(['reconcile', ...args])).out

const reconcileFails = (args: string[], code?: string): Promise<string> => runCliFails(['reconcile', ...args], code)

describe('lifeline reconcile', { concurrency: true }, () => {
  test('in process: list, run, runs, findings, resume and option checks', async (t) => {
    const { dir, module, db } = await seeded(t)
    const opts = ['--module', module, '--database', db]
    const closes = () => (existsSync(join(dir, 'closed.log')) ? readFileSync(join(dir, 'closed.log'), 'utf8').split('\n').length - 1 : 0)

    await t.test('list names the module\'s definitions and closes them once', async () => {
      const stdout = await reconcile(['list', '--module', module])
      assert.match(stdout, /^NAME\s+BATCH SIZE\s+EXTRA PASS\s+REPAIRS\s+DESCRIPTION\nother\s+500\s+no\s+-\nstock\s+4\s+yes\s+missing,extra,different\s+stock rows against their copy\n$/)
      assert.equal(closes(), 1, 'the shared close() runs once')
      const json = JSON.parse(await reconcile(['list', '--module', module, '--json']))
      assert.equal(json.module, module)
      assert.deepEqual(json.reconciliations.map((r: { name: string }) => r.name), ['other', 'stock'])
      assert.deepEqual(json.reconciliations[1].repairs, ['missing', 'extra', 'different'])
    })

    await t.test('run is a dry run by default: it prints the drift and changes nothing', async () => {
      const before = await targetRows(db)
      const stdout = await reconcile(['run', 'stock', ...opts])
      assert.match(stdout, /^run 1 of stock: completed \(dry run\) in \d+s, 14 batches\nchecked 27: missing 2, extra 2, different 2; repaired 0, repair failed 0\n\n/)
      assert.match(stdout, /^KIND\s+KEY\s+REPAIRED\s+SOURCE\s+TARGET\s+DIFF \/ REPAIR ERROR$/m)
      assert.match(stdout, /^missing\s+k03\s+no\s+\{"qty":30\}$/m)
      assert.match(stdout, /^different\s+k05\s+no\s+\{"qty":50\}\s+\{"qty":-1\}\s+\{"fields":\["qty"\]\}$/m)
      assert.match(stdout, /^extra\s+x02\s+no\s+\{"qty":2\}$/m)
      assert.match(stdout, /dry run: nothing was changed; run again with --repair to repair\n$/)
      assert.deepEqual(await targetRows(db), before)
    })

    await t.test('runs and findings read the records', async () => {
      assert.match(await reconcile(['runs', '--database', db]), /^ID\s+NAME\s+STATUS\s+MODE\s+CHECKED\s+MISSING\s+EXTRA\s+DIFFERENT\s+REPAIRED\s+REPAIR FAILED\s+STARTED AT\s+TOOK\s+NEXT\s+ERROR\n1\s+stock\s+completed\s+dry run\s+27\s+2\s+2\s+2\s+0\s+0\s+\S+Z\s+\d+s\n$/)
      assert.deepEqual(JSON.parse(await reconcile(['runs', '--name', 'other', '--json', '--database', db])), [])
      const missing = await reconcile(['findings', '1', '--kind', 'missing', '--database', db])
      assert.match(missing, /^run 1 of stock: completed \(dry run\), missing 2, extra 2, different 2, repaired 0, repair failed 0\n\nKIND.*\nmissing\s+k03\s.*\nmissing\s+k17\s.*\n$/)
      const json = JSON.parse(await reconcile(['findings', '1', '--limit', '2', '--json', '--database', db]))
      assert.equal(json.run.id, '1')
      assert.equal(json.findings.length, 2)
      assert.match(json.findings[0].foundAt, /^\d{4}-\d\d-\d\dT/)
      assert.equal(await reconcileFails(['findings', '99', '--database', db], 'LL_NOT_FOUND'), 'reconciliation run 99 does not exist')
    })

    await t.test('an interrupted run fails with LL_RECONCILE; --resume continues it; --repair repairs', async () => {
      writeFileSync(join(dir, 'fail-at'), 'k08')
      const failed = await reconcileFails(['run', 'stock', '--repair', ...opts], 'LL_RECONCILE')
      assert.equal(failed, 'reconciliation stock run 2 failed in the source pass at cursor "k08": source went away; resume it with resume: true')
      assert.match(await reconcile(['runs', '--limit', '1', '--database', db]), /\n2\s+stock\s+failed\s+repair\s+8\s+1\s+0\s+1\s+2\s+0\s+\S+Z\s+\d+s\s+source @ k08\s+LL_RECONCILE: source went away\n$/)
      rmSync(join(dir, 'fail-at'))
      const resumed = JSON.parse(await reconcile(['run', 'stock', '--resume', '--json', ...opts]))
      assert.deepEqual([resumed.id, resumed.status, resumed.resumed, resumed.attempts, resumed.repair, resumed.repaired], ['2', 'completed', true, 2, true, 6])
      const clean = await reconcile(['run', 'stock', '--batch-size', '100', ...opts])
      assert.match(clean, /^run 3 of stock: completed \(dry run\) in \d+s, 2 batches\nchecked 25: missing 0, extra 0, different 0; repaired 0, repair failed 0\n$/)
    })

    await t.test('an unknown name lists the known ones; bad options fail before the database is opened', async (t2) => {
      assert.equal(await reconcileFails(['run', 'nope', ...opts], 'LL_RECONCILE'), 'unknown reconciliation "nope"; known: other, stock')
      const never = join(await tempDir(t2), 'never-created')
      assert.equal(await reconcileFails(['run', 'stock', '--batch-size', '0', '--module', module, '--database', never]), '--batch-size must be an integer from 1 to 10000, got 0')
      assert.equal(await reconcileFails(['findings', 'abc', '--database', never]), 'the run id must be a positive integer (as `lifeline reconcile runs` prints it), got abc')
      assert.equal(await reconcileFails(['findings', '1', '--kind', 'odd', '--database', never]), '--kind must be missing, extra or different, got odd')
      assert.equal(await reconcileFails(['runs', '--limit', '0', '--database', never]), '--limit must be an integer from 1 to 10000, got 0')
      assert.match(await reconcileFails(['run', 'stock', '--module', join(dir, 'absent.ts'), '--database', never], 'LL_RECONCILE'), /^reconciliation module \S+absent\.ts does not exist$/)
      assert.equal(existsSync(never), false, 'the database directory was not created')
    })

    await t.test('without --module, lifeline.config.* in the working directory; none: a clear error', async (t2) => {
      const empty = await tempDir(t2)
      await assert.rejects(loadDefinitions(undefined, empty), (err: Error) => isLifelineError(err, 'LL_RECONCILE') && err.message === `no reconciliation definitions: pass --module <file> or add lifeline.config.ts (or .mts, .js, .mjs) to ${empty}`)
      writeFileSync(join(empty, 'lifeline.config.mjs'), `export { stock as default } from ${JSON.stringify(pathToFileURL(module).href)}\n`)
      const { file, definitions } = await loadDefinitions(undefined, empty)
      assert.equal(file, join(empty, 'lifeline.config.mjs'))
      assert.deepEqual(definitions.map((d) => d.name), ['stock'])
      writeFileSync(join(empty, 'broken.mjs'), 'export const x = ;\n')
      await assert.rejects(loadDefinitions('broken.mjs', empty), (err: Error) => isLifelineError(err, 'LL_RECONCILE') && err.message.startsWith(`cannot load reconciliation module ${join(empty, 'broken.mjs')}: `))
    })
  })

  test('child process: --fail-on-drift exits 2 after a dry run; an unknown name exits 1 with the LL_RECONCILE line', async (t) => {
    const { dir, module, db } = await seeded(t)
    const { DATABASE_URL: _url, LIFELINE_DATA_DIR: _dir, ...env } = process.env
    const run = (args: string[]) => exec(process.execPath, [cli, 'reconcile', ...args], { env })
    await assert.rejects(run(['run', 'stock', '--fail-on-drift', '--module', module, '--database', db]), (err: { code: number; stdout: string; stderr: string }) => {
      assert.equal(err.code, 2, err.stderr)
      assert.match(err.stdout, /^run 1 of stock: completed \(dry run\) in \d+s, 14 batches\nchecked 27: missing 2, extra 2, different 2; repaired 0, repair failed 0\n/)
      return true
    })
    assert.equal(readFileSync(join(dir, 'closed.log'), 'utf8'), 'closed\n', 'the CLI closed the definitions once')
    const repaired = await run(['run', 'stock', '--repair', '--fail-on-drift', '--module', module, '--database', db])
    assert.match(repaired.stdout, /^run 2 of stock: completed \(repair\) in \d+s, 14 batches\nchecked 27: missing 2, extra 2, different 2; repaired 6, repair failed 0\n/)
    await assert.rejects(run(['run', 'nope', '--module', module, '--database', db]), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1)
      assert.equal(err.stderr, 'lifeline: unknown reconciliation "nope"; known: other, stock [LL_RECONCILE]\n')
      return true
    })
  })
})
