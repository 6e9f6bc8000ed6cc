import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import pg from 'pg'
import { isLifelineError } from '../../src/errors.js'
import { sendInTransaction, StatementFailure } from '../../src/store/postgres-statements.js'
import { databaseUrl, defer, freshDatabase } from '../helpers/db.js'

const needsServer = !process.env.DATABASE_URL && 'needs DATABASE_URL'
const INSERT = 'insert into claims (id) values ($1) returning id'

/** A bare pg client on a fresh database with a `claims` table, and a count of the round trips it starts. */
async function setup(t: TestContext): Promise<{ client: pg.Client; roundTrips: () => number; ids: () => Promise<string[]> }> {
  const db = await freshDatabase(t, 'postgres')
  await db.query('create table claims (id text primary key)')
  const client = new pg.Client({ connectionString: databaseUrl(db) })
  await client.connect()
  defer(t, () => client.end())
  // Each extended-protocol statement ends with a Sync, each simple-protocol one is a Query message: one answer each.
  let trips = 0
  const connection = (client as unknown as { connection: Record<'sync' | 'query', (...args: unknown[]) => unknown> }).connection
  for (const method of ['sync', 'query'] as const) {
    const original = connection[method].bind(connection)
    connection[method] = (...args: unknown[]) => {
      trips++
      return original(...args)
    }
  }
  return { client, roundTrips: () => trips, ids: async () => (await db.query<{ id: string }>('select id from claims order by id')).rows.map((r) => r.id) }
}

/** The failure `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<StatementFailure> {
  const err = await promise.then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof StatementFailure, String(err))
  return err
}

describe('sendInTransaction (PostgreSQL)', { skip: needsServer }, () => {
  it('sends BEGIN with the first statement in one round trip; the statement runs inside the transaction it opens', async (t) => {
    const { client, roundTrips, ids } = await setup(t)
    const result = await sendInTransaction(client, INSERT, ['a'], 'opening', 'extended')
    assert.deepEqual(result.rows, [{ id: 'a' }])
    assert.equal(roundTrips(), 1)
    assert.equal(client.getTransactionStatus(), 'T')
    assert.deepEqual((await sendInTransaction(client, INSERT, ['b'], 'inside', 'extended')).rows, [{ id: 'b' }])
    await client.query('ROLLBACK')
    assert.deepEqual(await ids(), [], 'both rows were inside the transaction')
  })

  // The guard: a claim must never commit without its effects. After a failed BEGIN, PostgreSQL discards the
  // messages up to the round trip's one Sync, so the statement never runs; in autocommit it would have stuck.
  for (const [how, begin] of [
    ['at parse', 'BEGIN ISOLATION LEVEL bogus'],
    ['at execution', 'select 1 / 0'],
  ] as const) {
    it(`never runs the statement when the BEGIN of its round trip fails (${how}), nor any statement queued behind it`, async (t) => {
      const { client, roundTrips, ids } = await setup(t)
      const opening = sendInTransaction(client, INSERT, ['a'], 'opening', 'extended', begin)
      const next = sendInTransaction(client, INSERT, ['b'], 'inside', 'extended')
      const commit = sendInTransaction(client, 'COMMIT', undefined, 'inside', 'simple')
      const failed = await failure(opening)
      assert.equal(failed.statement, begin, 'reported as the BEGIN failing')
      for (const refused of [await failure(next), await failure(commit)]) {
        assert.ok(isLifelineError(refused.cause, 'LL_DB_QUERY'), String(refused.cause))
        assert.match(refused.cause.message, /not inside a transaction block \(status I; its BEGIN failed\)/)
      }
      assert.deepEqual(await ids(), [], 'nothing ran in autocommit')
      assert.equal(roundTrips(), 1, 'the refused statements were never sent')
      assert.equal(client.getTransactionStatus(), 'I')
    })
  }

  it('reports a failing first statement as that statement; the transaction it opened is failed, not committed', async (t) => {
    const { client, ids } = await setup(t)
    const failed = await failure(sendInTransaction(client, 'insert into missing_table (id) values ($1)', ['a'], 'opening', 'extended'))
    assert.equal(failed.statement, 'insert into missing_table (id) values ($1)')
    assert.equal((failed.cause as { code?: string }).code, '42P01')
    const refused = await failure(sendInTransaction(client, INSERT, ['b'], 'inside', 'extended'))
    assert.equal((refused.cause as { code?: string }).code, '25P02', 'in the failed transaction block')
    assert.equal((await client.query('ROLLBACK')).command, 'ROLLBACK')
    assert.deepEqual(await ids(), [])
  })

  it('refuses to open a transaction on a connection already inside one (its statement would join that transaction)', async (t) => {
    const { client, ids } = await setup(t)
    await client.query('BEGIN')
    const refused = await failure(sendInTransaction(client, INSERT, ['a'], 'opening', 'extended'))
    assert.ok(isLifelineError(refused.cause, 'LL_DB_QUERY'))
    assert.match(refused.cause.message, /already inside one \(status T\)/)
    await client.query('COMMIT')
    assert.deepEqual(await ids(), [])
  })

  // Cannot happen with BEGIN in front; if a driver change ever split the round trip, this is how it would show.
  it('says so when the opening round trip did not leave a transaction open (a leading statement that is not BEGIN)', async (t) => {
    const { client } = await setup(t)
    const failed = await failure(sendInTransaction(client, INSERT, ['a'], 'opening', 'extended', "set application_name = 'lifeline'"))
    assert.ok(isLifelineError(failed.cause, 'LL_DB_QUERY'))
    assert.match(failed.cause.message, /status I/)
  })
})
