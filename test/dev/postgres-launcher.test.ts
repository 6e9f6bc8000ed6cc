import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { startPostgres } from '../../src/dev/postgres-launcher.js'
import { alive } from '../../src/dev/processes.js'
import { openPostgres } from '../../src/store/postgres.js'
import { defer } from '../helpers/cleanup.js'
import { waitFor } from '../helpers/kafka.js'

describe('private PostgreSQL launcher', () => {
  test('starts a fresh instance, keeps its data across a SIGKILL outage, and deletes it on close', async (t) => {
    const pg = await startPostgres()
    defer(t, () => pg.close())
    assert.match(pg.version, /^\d+$/)
    const db = await openPostgres({ url: pg.url(), poolSize: 2, connectTimeoutMs: 2000 })
    defer(t, () => db.close())
    await db.query('create table t (v int)')
    await db.query('insert into t values (1)')

    await pg.stop({ mode: 'kill' })
    assert.equal(pg.running, false)
    await assert.rejects(db.query('select 1'))
    await pg.start()
    // The pool reconnects; the committed row survived the crash (crash recovery).
    await waitFor(async () => (await db.query('select 1').then(() => true, () => false)), 'the pool to reconnect', 30_000)
    assert.deepEqual((await db.query<{ v: number }>('select v from t')).rows, [{ v: 1 }])

    // The Unix socket works too (what a consumer in a network namespace uses).
    const viaSocket = await openPostgres({ url: pg.socketUrl(), poolSize: 1 })
    defer(t, () => viaSocket.close())
    assert.equal((await viaSocket.query<{ n: number }>('select count(*)::int as n from t')).rows[0]!.n, 1)

    await db.close()
    await viaSocket.close()
    await pg.close()
    assert.equal(existsSync(pg.dataDir), false)
    await pg.close() // idempotent
  })

  // A campaign died of this: after a SIGKILL the postmaster was still a zombie (not yet reaped) when the
  // harness started it again, and PostgreSQL's lock-file check (kill 0) took it for a running postmaster.
  test('a start refused because postmaster.pid names a live process is tried again until that process is gone', { skip: process.getuid?.() !== 0 ? 'needs root (the server runs as the postgres user)' : false }, async (t) => {
    const pg = await startPostgres()
    defer(t, () => pg.close())
    await pg.stop({ mode: 'fast' })
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    // A process of the postgres user named by the lock file, gone 1.5 s later (PostgreSQL ignores one it may not signal).
    const holder = spawn('sleep', ['1.5'], { uid, gid, stdio: 'ignore' })
    defer(t, () => holder.kill('SIGKILL'))
    const lock = join(pg.dataDir, 'postmaster.pid')
    writeFileSync(lock, `${holder.pid}\n${pg.dataDir}\n${Math.floor(Date.now() / 1000)}\n${pg.port}\n\n\n\n`)
    chownSync(lock, uid, gid)
    const started = Date.now()
    await pg.start()
    assert.ok(pg.running)
    assert.ok(Date.now() - started >= 1000, `it waited for the lock's process (${Date.now() - started} ms)`)
    const db = await openPostgres({ url: pg.url(), poolSize: 1, connectTimeoutMs: 2000 })
    defer(t, () => db.close())
    assert.equal((await db.query<{ one: number }>('select 1 as one')).rows[0]!.one, 1)
    await db.close()
  })

  test('a server started by a process killed with SIGKILL does not outlive it', async (t) => {
    const script = `import { startPostgres } from ${JSON.stringify(new URL('../../src/dev/postgres-launcher.ts', import.meta.url).href)}
import { readFileSync } from 'node:fs'
const pg = await startPostgres()
console.log('READY ' + readFileSync(pg.dataDir + '/postmaster.pid', 'utf8').split('\\n')[0] + ' ' + pg.dataDir)
setInterval(() => {}, 1000)`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    defer(t, () => child.kill('SIGKILL'))
    const [pid, dataDir] = await new Promise<[number, string]>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /READY (\d+) (\S+)\n/.exec(out)
        if (m) resolve([Number(m[1]), m[2]!])
      })
      child.on('exit', (code) => reject(new Error(`starter exited with ${code}: ${out}`)))
    })
    assert.ok(alive(pid))
    child.kill('SIGKILL')
    await waitFor(() => !alive(pid), 'the orphaned PostgreSQL to stop', 60_000)
    await waitFor(() => !existsSync(dataDir), 'its temporary directory to be deleted', 30_000)
  })
})
