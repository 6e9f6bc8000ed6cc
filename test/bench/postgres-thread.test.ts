/**
 * The hol profile's `PG_THREAD=1` experiment (bench/lib/postgres-thread.ts) must be the same executor as the
 * one it is compared with, only in another thread: same values, errors, transactions and prepared statements.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { deserializeError, fromTransfer, serializeError, toTransfer } from '../../bench/lib/postgres-thread-messages.js'
import { openPostgresThread } from '../../bench/lib/postgres-thread.js'
import { isLifelineError, LifelineError } from '../../src/errors.js'
import { prepared } from '../../src/store/executor.js'
import { runScript } from '../../src/store/script.js'
import { connectAgain, databaseUrl, freshDatabase } from '../helpers/db.js'

const needsServer = !process.env.DATABASE_URL && 'needs DATABASE_URL'

describe('postgres-thread messages (pure)', () => {
  it('sends only a view\'s own bytes and gives Buffers back, in parameters and in rows', () => {
    const pooled = Buffer.from('abc') // a slice of Node's 8 KiB pool
    assert.notEqual(pooled.buffer.byteLength, 3)
    const params = toTransfer(['x', pooled, [pooled, null], 7])
    assert.equal((params[1] as Uint8Array).buffer.byteLength, 3)
    assert.equal(((params[2] as unknown[])[0] as Uint8Array).buffer.byteLength, 3)
    const plain = structuredClone(params) // what postMessage does: Buffers arrive as Uint8Arrays
    const back = fromTransfer(plain)
    assert.ok(Buffer.isBuffer(back[1]) && Buffer.isBuffer((back[2] as unknown[])[0]))
    assert.deepEqual(back, ['x', Buffer.from('abc'), [Buffer.from('abc'), null], 7])
    const rows = fromTransfer(structuredClone(toTransfer({ rows: [{ b: pooled, a: [pooled], n: '1', j: { k: 1 } }], rowCount: 1 })))
    assert.ok(Buffer.isBuffer(rows.rows[0]!.b))
    assert.deepEqual(rows.rows[0], { b: Buffer.from('abc'), a: [Buffer.from('abc')], n: '1', j: { k: 1 } })
  })

  it('brings a LifelineError back with its code, retriable flag, details and cause', () => {
    const cause = Object.assign(new Error('duplicate key'), { code: '23505' })
    const err = new LifelineError('LL_DB_QUERY', 'insert failed', { cause, details: { sqlState: '23505', kind: 'postgres' } })
    const back = deserializeError(structuredClone(serializeError(err)))
    assert.ok(isLifelineError(back, 'LL_DB_QUERY'))
    assert.equal(back.message, 'insert failed')
    assert.equal(back.retriable, err.retriable)
    assert.deepEqual(back.details, { sqlState: '23505', kind: 'postgres' })
    assert.equal((back.cause as Error & { code?: string }).code, '23505')
    const plain = deserializeError(serializeError('not an error'))
    assert.equal(plain.message, 'not an error')
  })
})

describe('openPostgresThread', { skip: needsServer }, () => {
  it('answers like the executor on the main thread: values, errors, transactions, prepared statements, scripts, close', async (t) => {
    const direct = await freshDatabase(t, 'postgres')
    const db = await openPostgresThread({ url: databaseUrl(direct), poolSize: 2 })
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
    await assert.rejects(openPostgresThread({ url: 'postgres://nobody@127.0.0.1:1/none', connectTimeoutMs: 2000 }), (err) => isLifelineError(err, 'LL_DB_CONNECT'))
  })
})
