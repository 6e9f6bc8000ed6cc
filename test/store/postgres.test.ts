import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { isLifelineError } from '../../src/errors.js'
import { startTcpProxy } from '../../src/dev/tcp-proxy.js'
import { openPostgres } from '../../src/store/postgres.js'
import { prepared, preparedName } from '../../src/store/executor.js'
import { defer, randomName } from '../helpers/db.js'
import { waitFor } from '../helpers/wait.js'

/** A local port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())))
  assert.ok(address !== null && typeof address === 'object')
  return address.port
}


const needsServer = !process.env.DATABASE_URL && 'needs DATABASE_URL'

describe('openPostgres', () => {
  it('fails at open with a retriable LL_DB_CONNECT when nothing listens', async () => {
    const port = await closedPort()
    await assert.rejects(openPostgres({ url: `postgres://nobody@127.0.0.1:${port}/none`, connectTimeoutMs: 2000 }), (err) => {
      assert.ok(isLifelineError(err, 'LL_DB_CONNECT'))
      assert.equal(err.retriable, true)
      assert.equal(err.details.errno, 'ECONNREFUSED')
      return true
    })
  })

  it('refuses invalid options with LL_OPTIONS_INVALID naming the option', async () => {
    for (const [options, path] of [
      [{ url: '' }, 'url'],
      [{ url: 'postgres://x@127.0.0.1/x', poolSize: 0 }, 'poolSize'],
      [{ url: 'postgres://x@127.0.0.1/x', connectTimeoutMs: 1.5 }, 'connectTimeoutMs'],
      [{ url: 'postgres://x@127.0.0.1/x', preparedStatements: 'yes' as unknown as boolean }, 'preparedStatements'],
    ] as const) {
      await assert.rejects(openPostgres(options), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.details.path === path)
    }
  })

  it(
    'fails at open with a non-retriable LL_DB_CONNECT (3D000) for a database that does not exist',
    { skip: needsServer },
    async () => {
      const url = new URL(process.env.DATABASE_URL as string)
      url.pathname = `/${randomName('lifeline_missing', '_')}`
      await assert.rejects(openPostgres({ url: url.href }), (err) => {
        assert.ok(isLifelineError(err, 'LL_DB_CONNECT'))
        assert.equal(err.details.sqlState, '3D000')
        assert.equal(err.retriable, false)
        return true
      })
    },
  )

  // Regression: a checked-out client has no pool 'error' listener, so a connection dropped between two
  // statements of a transaction crashed the process with an unhandled 'error' event.
  it('runs a statement marked prepared() as a named prepared statement, unless preparedStatements is false', { skip: needsServer }, async () => {
    const text = prepared(`select $1::int + 1 as n -- ${randomName('prepared-test', '_')}`)
    const name = preparedName(text)
    assert.match(name ?? '', /^lifeline_\d+$/)
    assert.equal(prepared(text), text)
    assert.equal(preparedName(text), name, 'a text keeps its name')
    assert.equal(preparedName('select 1'), undefined)
    for (const preparedStatements of [true, false]) {
      const db = await openPostgres({ url: process.env.DATABASE_URL as string, preparedStatements })
      try {
        const seen = await db.transaction(async (tx) => {
          for (let i = 0; i < 3; i++) assert.equal((await tx.query<{ n: number }>(text, [i])).rows[0]!.n, i + 1)
          const { rows } = await tx.query<{ name: string }>('select name from pg_prepared_statements where name = $1', [name])
          return rows.length
        })
        assert.equal(seen, preparedStatements ? 1 : 0)
      } finally {
        await db.close()
      }
    }
  })

  it('turns a connection killed mid-transaction into LL_DB_CONNECT, then recovers', { skip: needsServer }, async (t) => {
    const logged: { msg?: string }[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) })
    const url = process.env.DATABASE_URL as string
    const db = await openPostgres({ url, poolSize: 1, logger })
    const killer = await openPostgres({ url, poolSize: 1 })
    defer(t, () => Promise.all([db.close(), killer.close()]))

    await assert.rejects(
      db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('select pg_backend_pid() as pid')
        await killer.query('select pg_terminate_backend($1)', [rows[0]?.pid])
        await waitFor(() => logged.some((line) => line.msg === 'PostgreSQL connection failed'), 'the connection failure to be logged', 5000)
        await tx.query('select 1')
      }),
      (err) => {
        assert.ok(isLifelineError(err, 'LL_DB_CONNECT'))
        // pg_terminate_backend sends 57P01 (admin_shutdown) and closes the socket; which of the two the client
        // sees first is a race: the SQLSTATE is 57P01, or absent when the closed socket won (regression: this
        // assertion was once strict on 57P01 and failed about one run in three under load).
        assert.ok([undefined, '57P01'].includes(err.details.sqlState as string | undefined), JSON.stringify(err.details))
        assert.equal(err.retriable, true)
        return true
      },
    )
    assert.deepEqual((await db.query('select 1 as one')).rows, [{ one: 1 }], 'the pool replaced the dead connection')
  })
  it('cancels a statement past statementTimeoutMs (retriable LL_DB_QUERY, 57014); the pool goes on', { skip: needsServer }, async (t) => {
    const db = await openPostgres({ url: process.env.DATABASE_URL as string, statementTimeoutMs: 300, poolSize: 1 })
    t.after(() => db.close())
    const started = Date.now()
    await assert.rejects(db.query('select pg_sleep(3)'), (err) => {
      assert.ok(isLifelineError(err, 'LL_DB_QUERY'))
      assert.equal(err.details.sqlState, '57014')
      assert.equal(err.retriable, true)
      return true
    })
    assert.ok(Date.now() - started < 2500, `cancelled after ${Date.now() - started} ms`)
    assert.deepEqual((await db.query('select 1 as one')).rows, [{ one: 1 }])
  })

  it('fails a statement to a server that stops answering (a network partition) as retriable LL_DB_CONNECT, then recovers through a new connection', { skip: needsServer, timeout: 60_000 }, async (t) => {
    const url = new URL(process.env.DATABASE_URL as string)
    const proxy = await startTcpProxy({ target: { host: url.hostname, port: Number(url.port || 5432) } })
    t.after(() => proxy.close())
    url.hostname = proxy.host
    url.port = String(proxy.port)
    const db = await openPostgres({ url: url.href, statementTimeoutMs: 200, poolSize: 1 })
    t.after(() => db.close())
    assert.deepEqual((await db.query('select 1 as one')).rows, [{ one: 1 }])
    proxy.partition()
    const started = Date.now()
    await assert.rejects(db.query('select 2 as two'), (err) => {
      assert.ok(isLifelineError(err, 'LL_DB_CONNECT'), String(err))
      assert.equal(err.retriable, true)
      return true
    })
    const waited = Date.now() - started
    assert.ok(waited >= 5000 && waited < 15_000, `the client gave up after ${waited} ms (statement timeout + 5 s)`)
    proxy.heal()
    assert.deepEqual((await db.query('select 3 as three')).rows, [{ three: 3 }], 'a new connection after the partition')
  })
})
