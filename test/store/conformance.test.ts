/**
 * One suite, every database kind: the embedded PGlite and (with DATABASE_URL) a real PostgreSQL server must
 * behave the same through SqlExecutor, or code tested on one breaks on the other.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isLifelineError, type LifelineError } from '../../src/errors.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { describeDatabase } from '../../src/store/open.js'
import { runScript } from '../../src/store/script.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'

function expectCode(code: LifelineError['code'], sqlState?: string) {
  return (err: unknown) => {
    assert.ok(isLifelineError(err, code), `expected ${code}, got ${String(err)}`)
    if (sqlState !== undefined) assert.equal(err.details.sqlState, sqlState)
    return true
  }
}

async function itemsTable(db: SqlExecutor): Promise<void> {
  await db.query('create table items (id text primary key, n int8 not null default 0, body jsonb, data bytea)')
}

async function count(db: SqlExecutor): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from items')
  return rows[0]?.n ?? -1
}

for (const kind of databaseKinds()) {
  describe(`SqlExecutor conformance: ${kind}`, () => {
    it('runs parameterised statements and stores parameter text verbatim', async (t) => {
      const db = await freshDatabase(t, kind)
      assert.equal(db.kind, kind)
      await itemsTable(db)
      const sneaky = "x'); drop table items; --"
      const inserted = await db.query('insert into items (id, n) values ($1, $2), ($3, $4)', [sneaky, 1, 'b', 2])
      assert.equal(inserted.rowCount, 2)
      const { rows, rowCount } = await db.query<{ id: string }>('select id from items where id = $1', [sneaky])
      assert.deepEqual(rows, [{ id: sneaky }])
      assert.equal(rowCount, 1)
      assert.equal((await db.query('update items set n = n + 1')).rowCount, 2)
      assert.equal((await db.query('delete from items where id = $1', ['nope'])).rowCount, 0)
      assert.equal((await db.query('select * from items where false')).rowCount, 0)
    })

    it('round-trips jsonb: an object parameter, or JSON.stringify for arrays', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const body = { name: 'zoë ✓', nested: { list: [1, 'two', null, { deep: true }] }, empty: {} }
      await db.query('insert into items (id, body) values ($1, $2)', ['obj', body])
      await db.query('insert into items (id, body) values ($1, $2)', ['arr', JSON.stringify([1, 2, 3])])
      const { rows } = await db.query<{ id: string; body: unknown }>('select id, body from items order by id')
      assert.deepEqual(rows, [
        { id: 'arr', body: [1, 2, 3] },
        { id: 'obj', body },
      ])
    })

    it('round-trips bytea: Buffer in, Buffer out', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      await db.query('insert into items (id, data) values ($1, $2)', ['bin', data])
      const { rows } = await db.query<{ data: unknown; parts: unknown[] }>(
        "select data, array[data, '\\x00ff'::bytea] as parts from items",
      )
      const row = rows[0]
      assert.ok(row !== undefined && Buffer.isBuffer(row.data), 'bytea comes back as a Buffer')
      assert.ok(data.equals(row.data))
      assert.ok(Buffer.isBuffer(row.parts[1]) && row.parts[1].equals(Buffer.from([0, 255])))
    })

    it('returns int8 as a string (no precision loss) unless cast explicitly', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const big = '9007199254740993' // 2^53 + 1: not representable as a JS number
      await db.query('insert into items (id, n) values ($1, $2)', ['big', big])
      const { rows } = await db.query('select n, count(*) over () as total, 7::int8::int as small, 1.50::numeric as dec from items')
      assert.deepEqual(rows, [{ n: big, total: '1', small: 7, dec: '1.50' }])
      assert.equal(await count(db), 1)
    })

    it('reports INSERT ... ON CONFLICT DO NOTHING as rowCount 1, then 0', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const insert = 'insert into items (id) values ($1) on conflict do nothing'
      assert.equal((await db.query(insert, ['k'])).rowCount, 1)
      assert.equal((await db.query(insert, ['k'])).rowCount, 0)
    })

    it('tells an upsert insert from an update with RETURNING (xmax = 0)', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const upsert = `insert into items (id, n) values ($1, 1)
        on conflict (id) do update set n = items.n + 1
        returning (xmax = 0) as inserted, n::int as n`
      assert.deepEqual((await db.query(upsert, ['u'])).rows, [{ inserted: true, n: 1 }])
      assert.deepEqual((await db.query(upsert, ['u'])).rows, [{ inserted: false, n: 2 }])
    })

    it('commits a transaction: its writes are visible and its result returned', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const result = await db.transaction(async (tx) => {
        await tx.query('insert into items (id) values ($1), ($2)', ['a', 'b'])
        return (await tx.query('select count(*)::int as n from items')).rows[0]
      })
      assert.deepEqual(result, { n: 2 })
      assert.equal(await count(db), 2)
    })

    it('rolls a transaction back when its callback throws, rethrowing the original error', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      const boom = new Error('boom')
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('insert into items (id) values ($1)', ['a'])
          throw boom
        }),
        (err) => err === boom,
      )
      assert.equal(await count(db), 0)
      // The connection is usable afterwards (on pg it went back to the pool rolled back).
      await db.transaction((tx) => tx.query('insert into items (id) values ($1)', ['b']))
      assert.equal(await count(db), 1)
    })

    it('leaves nothing when a statement fails inside a transaction, even if the callback catches it', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      await db.query('insert into items (id) values ($1)', ['taken'])
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('insert into items (id) values ($1)', ['new'])
          await tx.query('insert into items (id) values ($1)', ['taken'])
        }),
        expectCode('LL_DB_QUERY', '23505'),
      )
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('insert into items (id) values ($1)', ['new'])
          await tx.query('insert into items (id) values ($1)', ['taken']).catch(() => 'swallowed')
        }),
        expectCode('LL_DB_QUERY', '25P02'),
      )
      assert.deepEqual((await db.query('select id from items')).rows, [{ id: 'taken' }])
    })

    it('refuses a transaction handle used after its transaction ended', async (t) => {
      const db = await freshDatabase(t, kind)
      const leaked = await db.transaction(async (tx) => tx)
      await assert.rejects(leaked.query('select 1'), expectCode('LL_DB_CLOSED'))
    })

    it('supports SELECT ... FOR UPDATE SKIP LOCKED', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      await db.query("insert into items (id) values ('1'), ('2'), ('3')")
      const claim = 'select id from items order by id limit 1 for update skip locked'
      const claimed = await db.transaction(async (tx) => (await tx.query<{ id: string }>(claim)).rows)
      assert.deepEqual(claimed, [{ id: '1' }])
    })

    it('lets concurrent transactions claim distinct rows with SKIP LOCKED', { skip: kind === 'pglite' && 'PGlite has one connection: transactions never overlap' }, async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      await db.query("insert into items (id) values ('1'), ('2'), ('3')")
      const claim = 'select id from items order by id limit 1 for update skip locked'
      let releaseFirst!: () => void
      const held = new Promise<void>((resolve) => (releaseFirst = resolve))
      let firstClaimed!: (id: string) => void
      const firstId = new Promise<string>((resolve) => (firstClaimed = resolve))
      const first = db.transaction(async (tx) => {
        firstClaimed((await tx.query<{ id: string }>(claim)).rows[0]?.id ?? '')
        await held
      })
      assert.equal(await firstId, '1')
      const second = await db.transaction(async (tx) => (await tx.query<{ id: string }>(claim)).rows[0]?.id)
      releaseFirst()
      await first
      assert.equal(second, '2')
    })

    it('wraps driver errors as LL_DB_QUERY carrying the SQLSTATE', async (t) => {
      const db = await freshDatabase(t, kind)
      await itemsTable(db)
      await db.query('insert into items (id) values ($1)', ['dup'])
      await assert.rejects(db.query('insert into items (id) values ($1)', ['dup']), (err) => {
        assert.ok(isLifelineError(err, 'LL_DB_QUERY'))
        assert.equal(err.details.sqlState, '23505')
        assert.equal(err.details.constraint, 'items_pkey')
        assert.equal(err.details.kind, kind)
        assert.ok(err.cause instanceof Error, 'the driver error is kept as the cause')
        return true
      })
      await assert.rejects(db.query('selec 1'), expectCode('LL_DB_QUERY', '42601'))
      await assert.rejects(db.query('select * from missing_table'), expectCode('LL_DB_QUERY', '42P01'))
      // query() runs exactly one statement on both drivers; scripts go through runScript.
      await assert.rejects(db.query('select 1; select 2'), expectCode('LL_DB_QUERY', '42601'))
    })

    it('runs multi-statement scripts on the executor and inside a transaction', async (t) => {
      const db = await freshDatabase(t, kind)
      await runScript(db, 'create table s (id int); insert into s values (1); insert into s values (2);')
      await db.transaction((tx) => runScript(tx, 'insert into s values (3); update s set id = id * 10'))
      assert.deepEqual((await db.query('select id from s order by id')).rows, [{ id: 10 }, { id: 20 }, { id: 30 }])
      await assert.rejects(runScript(db, 'insert into s values (4); insert into nowhere values (5)'), expectCode('LL_DB_QUERY', '42P01'))
      assert.equal((await db.query('select id from s')).rowCount, 3, 'a failed script leaves nothing (implicit transaction)')
    })

    it('describes itself from select version()', async (t) => {
      const db = await freshDatabase(t, kind)
      const label = await describeDatabase(db)
      const expected = kind === 'postgres' ? /^PostgreSQL \d+\.\d+ \(server\)$/ : /^PGlite \S+ \(PostgreSQL \d+\.\d+, embedded\)$/
      assert.match(label, expected)
    })

    it('close() returns the same promise twice; use after close rejects LL_DB_CLOSED', async (t) => {
      const db = await freshDatabase(t, kind)
      const first = db.close()
      assert.equal(db.close(), first)
      await first
      await assert.rejects(db.query('select 1'), expectCode('LL_DB_CLOSED'))
      await assert.rejects(db.transaction(async () => 1), expectCode('LL_DB_CLOSED'))
      await assert.rejects(runScript(db, 'select 1'), expectCode('LL_DB_CLOSED'))
    })

    it('close() waits for statements already running', async (t) => {
      const db = await freshDatabase(t, kind)
      const running = db.query<{ n: number }>('select pg_sleep(0.2), 1 as n')
      await db.close()
      assert.deepEqual((await running).rows.map((row) => row.n), [1])
    })
  })
}
