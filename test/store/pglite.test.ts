import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { openPglite } from '../../src/store/open.js'
import { defer, pgliteDataDir, tempDir } from '../helpers/db.js'

/** A process that stays alive until the test ends. */
function liveProcess(t: TestContext): number {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  defer(t, () => child.kill('SIGKILL'))
  assert.ok(child.pid !== undefined)
  return child.pid
}

/** The pid of a process that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await once(child, 'exit')
  assert.ok(child.pid !== undefined)
  return child.pid
}

function writeLock(path: string, pid: number): void {
  writeFileSync(path, JSON.stringify({ pid, hostname: hostname(), since: new Date().toISOString() }))
}

describe('openPglite', () => {
  it('keeps data across close and reopen of the same data directory, creating missing parents', async (t) => {
    const dataDir = join(await tempDir(t), 'nested', 'deeper', 'db')
    const first = await openPglite({ dataDir })
    defer(t, () => first.close())
    await first.query('create table kept (id int8 primary key, body jsonb)')
    await first.transaction((tx) => tx.query('insert into kept values ($1, $2)', ['42', { ok: true }]))
    await first.close()
    assert.equal(existsSync(`${dataDir}.lock`), false, 'close() releases the lock')

    const second = await openPglite({ dataDir })
    defer(t, () => second.close())
    assert.deepEqual((await second.query('select id, body from kept')).rows, [{ id: '42', body: { ok: true } }])
  })

  it('refuses a data directory locked by another live process, naming its pid', async (t) => {
    const dataDir = join(await tempDir(t), 'db')
    const pid = liveProcess(t)
    writeLock(`${dataDir}.lock`, pid)
    await assert.rejects(openPglite({ dataDir }), (err) => {
      assert.ok(isLifelineError(err, 'LL_DB_LOCKED'))
      assert.match(err.message, new RegExp(`pid ${pid}\\b`))
      return true
    })
    assert.equal(JSON.parse(readFileSync(`${dataDir}.lock`, 'utf8')).pid, pid, 'the owner keeps its lock')
  })

  it('takes over a stale lock left by a process that exited', async (t) => {
    const dataDir = await pgliteDataDir(t)
    writeLock(`${dataDir}.lock`, await deadPid())
    const db = await openPglite({ dataDir })
    defer(t, () => db.close())
    assert.equal(JSON.parse(readFileSync(`${dataDir}.lock`, 'utf8')).pid, process.pid)
    assert.deepEqual((await db.query('select 1 as one')).rows, [{ one: 1 }])
  })

  it('refuses a second open of the same directory in the same process until the first closes', async (t) => {
    const dataDir = await pgliteDataDir(t)
    const first = await openPglite({ dataDir })
    defer(t, () => first.close())
    await assert.rejects(openPglite({ dataDir }), (err) => isLifelineError(err, 'LL_DB_LOCKED'))
    await first.close()
    const again = await openPglite({ dataDir })
    await again.close()
  })

  it('opens in memory for memory:// without touching the disk', async (t) => {
    const db = await openPglite({ dataDir: 'memory://' })
    defer(t, () => db.close())
    assert.equal(existsSync('memory:.lock'), false)
    await db.query('create table t (id int)')
    assert.equal((await db.query('insert into t values (1), (2)')).rowCount, 2)
  })

  // Regression: PGlite's one connection is held by the transaction, so this used to hang forever.
  it('fails fast when the executor is called inside its own transaction', async (t) => {
    const db = await openPglite({ dataDir: await pgliteDataDir(t) })
    defer(t, () => db.close())
    await assert.rejects(
      db.transaction(async () => db.query('select 1')),
      (err) => isLifelineError(err, 'LL_DB_QUERY'),
    )
    await assert.rejects(
      db.transaction(async () => db.transaction(async () => 1)),
      (err) => isLifelineError(err, 'LL_DB_QUERY'),
    )
    assert.deepEqual((await db.query('select 1 as one')).rows, [{ one: 1 }], 'usable afterwards')
  })
})
