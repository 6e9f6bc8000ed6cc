/**
 * The database thread (src/store/thread.ts) must give the same executor as in-process, only in another
 * thread: values, errors, transactions, prepared statements, scripts, close. PGlite, which opens there by
 * default, runs the whole suite through it (conformance.test.ts among others); these are the thread's own
 * cases, and the `pg` pool in the thread that the hol profile measures (`PG_THREAD=1`).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { openInThread, terminateDatabaseThread } from '../../src/store/thread.js'
import { isLifelineError } from '../../src/errors.js'
import { prepared } from '../../src/store/executor.js'
import { runScript } from '../../src/store/script.js'
import { openPglite } from '../../src/store/open.js'
import { connectAgain, databaseUrl, freshDatabase, tempDir } from '../helpers/db.js'

const needsServer = !process.env.DATABASE_URL && 'needs DATABASE_URL'

describe('openInThread: a pg pool', { skip: needsServer }, () => {
  it('answers like the executor on the main thread: values, errors, transactions, prepared statements, scripts, close', async (t) => {
    const direct = await freshDatabase(t, 'postgres')
    const db = await openInThread({ kind: 'postgres', url: databaseUrl(direct), poolSize: 2 })
    t.after(() => db.close())
    assert.equal(db.kind, 'postgres')
    await runScript(db, 'create table items (id text primary key, n int8, data bytea); create index on items (n)')
    const bytes = Buffer.from([0, 1, 2, 255])
    assert.equal((await db.query('insert into items values ($1, $2, $3), ($4, $5, $6)', ['a', 1, bytes, 'b', 2, null])).rowCount, 2)
    const { rows } = await db.query<{ id: string; n: string; data: Buffer | null }>(prepared('select id, n, data from items order by id'))
    assert.deepEqual(rows, [{ id: 'a', n: '1', data: bytes }, { id: 'b', n: '2', data: null }])
    assert.ok(Buffer.isBuffer(rows[0]!.data))
    assert.deepEqual((await db.query(prepared('select id, n, data from items order by id'))).rows, rows) // the prepared name again
    await assert.rejects(db.query('insert into items (id) values ($1)', ['a']), (err) => isLifelineError(err, 'LL_DB_QUERY') && err.details.sqlState === '23505')

    const other = await connectAgain(t, direct)
    assert.equal(await db.transaction(async (tx) => {
      await tx.query('insert into items (id, n) values ($1, $2)', ['c', 3])
      // Not visible outside before COMMIT.
      assert.equal((await other.query('select count(*)::int as c from items')).rows[0]!.c, 2)
      return 'done'
    }), 'done')
    assert.equal((await other.query('select count(*)::int as c from items')).rows[0]!.c, 3)
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query('insert into items (id, n) values ($1, $2)', ['d', 4])
        throw new Error('the caller failed')
      }),
      /the caller failed/,
    )
    assert.equal((await other.query('select count(*)::int as c from items where id = $1', ['d'])).rows[0]!.c, 0)
    // A failed statement inside: the caller sees the database's error, and nothing of the transaction stays.
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query('insert into items (id, n) values ($1, $2)', ['e', 5])
        await tx.query('insert into items (id) values ($1)', ['a'])
      }),
      (err) => isLifelineError(err, 'LL_DB_QUERY') && err.details.sqlState === '23505',
    )
    assert.equal((await other.query('select count(*)::int as c from items where id = $1', ['e'])).rows[0]!.c, 0)

    await db.close()
    await assert.rejects(db.query('select 1'), (err) => isLifelineError(err, 'LL_DB_CLOSED'))
  })

  it('fails at open with LL_DB_CONNECT, as the main-thread executor does', async () => {
    await assert.rejects(openInThread({ kind: 'postgres', url: 'postgres://nobody@127.0.0.1:1/none', connectTimeoutMs: 2000 }), (err) => isLifelineError(err, 'LL_DB_CONNECT'))
  })
})

describe('openInThread: PGlite (the default for openPglite)', () => {
  it('gives errors the stack of the call that awaited them, with their code and sqlState', async (t) => {
    const db = await openPglite({ dataDir: 'memory://' })
    t.after(() => db.close())
    async function failingCaller() {
      await db.query('select * from no_such_table')
    }
    await assert.rejects(failingCaller(), (err) => {
      assert.ok(isLifelineError(err, 'LL_DB_QUERY'))
      assert.equal(err.details.sqlState, '42P01')
      assert.match(err.stack ?? '', /failingCaller/)
      return true
    })
  })

  it('opens in this thread with thread: false, and refuses a thread option that is not a boolean', async (t) => {
    const here = await openPglite({ dataDir: 'memory://', thread: false })
    t.after(() => here.close())
    assert.deepEqual((await here.query('select 1::int as one')).rows, [{ one: 1 }])
    await assert.rejects(openPglite({ dataDir: 'memory://', thread: 'yes' as never }), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.details.path === 'thread')
  })

  it('does not keep the process alive while idle: a process that forgets close() still exits', async (t) => {
    const dir = await tempDir(t)
    const script = `import { openPglite } from ${JSON.stringify(new URL('../../src/store/open.ts', import.meta.url).href)}
const db = await openPglite({ dataDir: ${JSON.stringify(join(dir, 'db'))} })
await db.query('create table t (x int)')
console.log('opened')`
    const file = join(dir, 'forget-close.mts')
    await writeFile(file, script)
    const run = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(run.signal, null, `timed out: ${run.stderr}`)
    assert.equal(run.status, 0, run.stderr)
    assert.match(run.stdout, /opened/)
  })
})

describe('openInThread: the thread dies', () => {
  it('fails what was in flight with a retriable LL_DB_CONNECT, then reopens PGlite on its data directory in a new thread', async (t) => {
    const dir = await tempDir(t)
    const db = await openPglite({ dataDir: join(dir, 'db') })
    t.after(() => db.close())
    await db.query('create table t (x int)')
    await db.query('insert into t values (1)')
    // A transaction open when the thread dies fails with it, and nothing of it stays.
    let release!: () => void
    let inserted!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const began = new Promise<void>((resolve) => (inserted = resolve))
    const open = db.transaction(async (tx) => {
      await tx.query('insert into t values (2)')
      inserted()
      await held
      await tx.query('insert into t values (3)')
    })
    await began
    await terminateDatabaseThread()
    release()
    await assert.rejects(open, (err) => isLifelineError(err, 'LL_DB_CONNECT') && err.retriable && /database thread exited/.test(err.message))
    // The next statement reopens the database (the lock this process held is released first).
    assert.deepEqual((await db.query('select x from t order by x')).rows, [{ x: 1 }])
    await db.transaction(async (tx) => tx.query('insert into t values (4)'))
    assert.deepEqual((await db.query('select x from t order by x')).rows, [{ x: 1 }, { x: 4 }])
    await db.close()
    // Closed properly: the directory opens again.
    const again = await openPglite({ dataDir: join(dir, 'db') })
    t.after(() => again.close())
    assert.deepEqual((await again.query('select count(*)::int as n from t')).rows, [{ n: 2 }])
  })

  it('an in-memory PGlite went with the thread: its statements keep failing; a new open works', async (t) => {
    const db = await openPglite({ dataDir: 'memory://' })
    t.after(() => db.close())
    await db.query('create table t (x int)')
    await terminateDatabaseThread()
    for (const attempt of [() => db.query('select 1'), () => db.transaction(async (tx) => tx.query('select 1')), () => db.query('select 1')]) {
      await assert.rejects(attempt(), (err) => isLifelineError(err, 'LL_DB_CONNECT') && err.retriable && /database thread exited/.test(err.message))
    }
    const again = await openPglite({ dataDir: 'memory://' })
    t.after(() => again.close())
    assert.deepEqual((await again.query('select 2::int as two')).rows, [{ two: 2 }])
  })
})
