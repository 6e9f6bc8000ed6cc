/**
 * Reconciliation on every database kind: a source table and a target table in the database with exact,
 * injected drift (2 missing, 2 extra, 2 different among 25 source rows), read in batches of 4.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { Registry } from 'prom-client'
import {
  defineReconciliation,
  diffFields,
  getReconciliation,
  getReconciliationRun,
  listReconciliationFindings,
  listReconciliationRuns,
  listReconciliations,
  registerReconciliation,
  runReconciliation,
  scheduleReconciliation,
  unregisterReconciliation,
  type ReconcileBatch,
  type ReconcileContext,
  type ReconcileRepair,
  type ReconciliationSpec,
} from '../../src/effects/reconcile.js'
import { isLifelineError, type ErrorCode } from '../../src/errors.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { databaseKinds, freshDatabase, randomName, type DatabaseKind } from '../helpers/db.js'
import { waitFor } from '../helpers/wait.js'

interface Stock { qty: number; name: string }

const SOURCE_KEYS = Array.from({ length: 25 }, (_, i) => `k${String(i + 1).padStart(2, '0')}`)
const DRIFT = { missing: ['k03', 'k17'], extra: ['x01', 'x02'], different: ['k05', 'k20'] }
const BATCH = 4

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  let caught: Error | undefined
  await assert.rejects(promise, (err: Error) => {
    assert.ok(isLifelineError(err, code), `expected ${code}, got ${String(err)}`)
    caught = err
    return true
  })
  return caught!
}

/** Source `stock_source` and target `stock_target` (id, qty, name) with the drift of {@link DRIFT}. */
async function seeded(t: TestContext, kind: DatabaseKind): Promise<SqlExecutor> {
  const db = await freshDatabase(t, kind)
  for (const table of ['stock_source', 'stock_target']) await db.query(`create table ${table} (id text primary key, qty integer not null, name text not null)`)
  for (const [i, id] of SOURCE_KEYS.entries()) await db.query('insert into stock_source values ($1, $2, $3)', [id, i * 10, `item ${id}`])
  await db.query('insert into stock_target select * from stock_source where id <> all($1::text[])', [DRIFT.missing])
  await db.query(`insert into stock_target values ('x01', 1, 'stray 1'), ('x02', 2, 'stray 2')`)
  await db.query(`update stock_target set qty = qty + 1 where id = 'k05'`)
  await db.query(`update stock_target set name = 'renamed' where id = 'k20'`)
  return db
}

const snapshot = async (db: SqlExecutor, table: string) => (await db.query(`select id, qty, name from ${table} order by id`)).rows

/** A keyset reader over `table` (cursor: the last id of the batch) and a batch lookup, through the run's db. */
function tableSide(table: string) {
  return {
    async read(cursor: string | null, limit: number, { db }: ReconcileContext): Promise<ReconcileBatch<string, Stock>> {
      const { rows } = await db.query<{ id: string; qty: number; name: string }>(`select id, qty, name from ${table} where ($1::text is null or id > $1) order by id limit $2`, [cursor, limit])
      return { rows: rows.map((r) => ({ key: r.id, value: { qty: r.qty, name: r.name } })), next: rows.length < limit ? null : rows[rows.length - 1]!.id }
    },
    async get(ids: string[], { db }: ReconcileContext): Promise<Map<string, Stock>> {
      const { rows } = await db.query<{ id: string; qty: number; name: string }>(`select id, qty, name from ${table} where id = any($1::text[])`, [ids])
      return new Map(rows.map((r) => [r.id, { qty: r.qty, name: r.name }]))
    },
  }
}

const repairTarget: ReconcileRepair<string, Stock, Stock> = {
  missing: async ({ key, source }, { db }) => void (await db.query('insert into stock_target values ($1, $2, $3)', [key, source.qty, source.name])),
  extra: async ({ key }, { db }) => void (await db.query('delete from stock_target where id = $1', [key])),
  different: async ({ key, source }, { db }) => void (await db.query('update stock_target set qty = $2, name = $3 where id = $1', [key, source.qty, source.name])),
}

function stockReconciliation(overrides: Partial<ReconciliationSpec<string, Stock, Stock>> = {}) {
  return defineReconciliation<string, Stock, Stock>({
    name: randomName('stock'),
    source: tableSide('stock_source'),
    target: tableSide('stock_target'),
    key: (id) => id,
    repair: repairTarget,
    batchSize: BATCH,
    ...overrides,
  })
}

const findingKeys = async (db: SqlExecutor, runId: string) =>
  Object.fromEntries(await Promise.all((['missing', 'extra', 'different'] as const).map(async (kind) => [kind, (await listReconciliationFindings(db, runId, { kind })).map((f) => f.key).sort()])))

for (const kind of databaseKinds()) {
  describe(`reconciliation on ${kind}`, { concurrency: true }, () => {
    test('a dry run finds exactly the injected drift and changes nothing', async (t) => {
      const db = await seeded(t, kind)
      const def = stockReconciliation()
      const before = await snapshot(db, 'stock_target')
      const run = await runReconciliation(def, { db })
      assert.equal(run.status, 'completed')
      assert.equal(run.repair, false)
      assert.equal(run.resumed, false)
      assert.deepEqual(
        { checked: run.checked, missing: run.missing, extra: run.extra, different: run.different, repaired: run.repaired, repairFailed: run.repairFailed },
        { checked: 27, missing: 2, extra: 2, different: 2, repaired: 0, repairFailed: 0 },
      )
      // 25 source rows in 7 batches (the 7th is the short one), then 25 target rows in 7.
      assert.equal(run.batches, 14)
      assert.ok(run.finishedAt instanceof Date)
      assert.deepEqual(await findingKeys(db, run.id), DRIFT)
      assert.deepEqual(await snapshot(db, 'stock_target'), before, 'a dry run changed the target')

      const all = await listReconciliationFindings(db, run.id)
      assert.equal(all.length, 6)
      const k05 = all.find((f) => f.key === 'k05')!
      assert.deepEqual(k05.source, { qty: 40, name: 'item k05' })
      assert.deepEqual(k05.target, { qty: 41, name: 'item k05' })
      assert.deepEqual(k05.diff, { fields: ['qty'] })
      assert.deepEqual(all.find((f) => f.key === 'k20')!.diff, { fields: ['name'] })
      const k03 = all.find((f) => f.key === 'k03')!
      assert.equal(k03.target, null)
      assert.equal(k03.repaired, false)
      assert.equal(all.find((f) => f.key === 'x01')!.source, null)
      const stored = await getReconciliationRun(db, run.id)
      assert.deepEqual([stored.status, stored.checked, stored.missing, stored.extra, stored.different, stored.cursor], ['completed', 27, 2, 2, 2, null])
    })

    test('a repair run repairs every finding and the next run finds nothing', async (t) => {
      const db = await seeded(t, kind)
      const def = stockReconciliation()
      const repaired = await runReconciliation(def, { db, repair: true })
      assert.deepEqual([repaired.missing, repaired.extra, repaired.different, repaired.repaired, repaired.repairFailed], [2, 2, 2, 6, 0])
      assert.ok((await listReconciliationFindings(db, repaired.id)).every((f) => f.repaired && f.repairError === null && f.repairedAt instanceof Date))
      assert.deepEqual(await snapshot(db, 'stock_target'), await snapshot(db, 'stock_source'))
      const clean = await runReconciliation(def, { db })
      assert.deepEqual([clean.checked, clean.missing, clean.extra, clean.different], [25, 0, 0, 0])
      assert.deepEqual(await listReconciliationFindings(db, clean.id), [])
      assert.deepEqual((await listReconciliationRuns(db, { name: def.name })).map((r) => r.id), [clean.id, repaired.id])
    })

    test('an interrupted run resumes at its first unfinished batch', async (t) => {
      const db = await seeded(t, kind)
      const side = tableSide('stock_source')
      const reads: Array<string | null> = []
      const lookups: string[][] = []
      let failAt: string | null = 'k08' // the third batch: after k01-k04 and k05-k08
      const target = tableSide('stock_target')
      const def = stockReconciliation({
        source: {
          async read(cursor, limit, ctx) {
            reads.push(cursor)
            if (cursor !== null && cursor === failAt) throw new Error('source connection reset')
            return side.read(cursor, limit, ctx)
          },
          get: side.get,
        },
        target: {
          read: target.read,
          get: async (ids, ctx) => {
            lookups.push(ids)
            return target.get(ids, ctx)
          },
        },
      })
      const err = await expectCode(runReconciliation(def, { db, repair: true }), 'LL_RECONCILE')
      const runId = (err as { details?: { runId?: string } }).details?.runId
      assert.ok(runId !== undefined)
      assert.match(err.message, /failed in the source pass at cursor "k08": source connection reset; resume it/)
      const failed = await getReconciliationRun(db, runId)
      assert.deepEqual([failed.status, failed.phase, failed.cursor, failed.batches, failed.checked, failed.missing, failed.different, failed.repaired], ['failed', 'source', 'k08', 2, 8, 1, 1, 2])
      assert.equal(failed.errorCode, 'LL_RECONCILE')
      assert.equal(failed.error, 'source connection reset')
      assert.deepEqual(reads, [null, 'k04', 'k08'])
      assert.deepEqual(lookups.flat(), SOURCE_KEYS.slice(0, 8))

      await expectCode(runReconciliation(def, { db, resume: true, repair: false }), 'LL_ARGUMENT_INVALID')
      reads.length = 0
      lookups.length = 0
      failAt = null
      const resumed = await runReconciliation(def, { db, resume: true })
      assert.equal(resumed.id, runId)
      assert.equal(resumed.resumed, true)
      assert.equal(resumed.repair, true, 'a resumed run keeps its repair setting')
      assert.equal(resumed.attempts, 2)
      assert.equal(resumed.status, 'completed')
      assert.equal(resumed.error, null)
      assert.equal(reads[0], 'k08', 'the resumed run starts at the stored cursor')
      assert.ok(!reads.includes(null) && !reads.includes('k04'), `finished batches were read again: ${JSON.stringify(reads)}`)
      assert.ok(!lookups.flat().some((k) => SOURCE_KEYS.slice(0, 8).includes(k)), 'finished batches were checked again')
      assert.deepEqual([resumed.checked, resumed.missing, resumed.extra, resumed.different, resumed.repaired], [27, 2, 2, 2, 6])
      assert.deepEqual(await findingKeys(db, resumed.id), DRIFT)
      assert.deepEqual(await snapshot(db, 'stock_target'), await snapshot(db, 'stock_source'))
      const again = await runReconciliation(def, { db, resume: true })
      assert.equal(again.resumed, false, 'a completed run is not resumed: a new one starts')
      assert.notEqual(again.id, runId)
    })

    test('a run whose process died (running, stale heartbeat) is taken over; a live one is not', async (t) => {
      const db = await seeded(t, kind)
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      const side = tableSide('stock_source')
      let entered = false
      const def = stockReconciliation({
        source: {
          async read(cursor, limit, ctx) {
            if (cursor === 'k04') {
              entered = true
              await gate
            }
            return side.read(cursor, limit, ctx)
          },
          get: side.get,
        },
      })
      const first = runReconciliation(def, { db, staleAfterMs: 1000 })
      await waitFor(() => entered, 'the first run to reach its second batch', 15_000)
      const busy = await expectCode(runReconciliation(def, { db, resume: true }), 'LL_RECONCILE')
      assert.equal((busy as { retriable?: boolean }).retriable, true)
      assert.match(busy.message, /is already running \(run \d+, heartbeat at /)
      release()
      const done = await first
      assert.equal(done.status, 'completed')

      // A process killed mid-run leaves its run `running` with a heartbeat that stops moving.
      await db.query(`update lifeline_reconcile_runs set status = 'running', phase = 'source', resume_cursor = 'k20', finished_at = null, heartbeat_at = now() - interval '1 hour' where id = $1`, [done.id])
      const taken = await runReconciliation(def, { db, resume: true })
      assert.equal(taken.id, done.id)
      assert.equal(taken.attempts, 2)
      assert.equal(taken.status, 'completed')
      await db.query(`update lifeline_reconcile_runs set status = 'running', heartbeat_at = now() - interval '1 hour' where id = $1`, [done.id])
      const fresh = await runReconciliation(def, { db })
      assert.notEqual(fresh.id, done.id)
      const abandoned = await getReconciliationRun(db, done.id)
      assert.equal(abandoned.status, 'failed')
      assert.match(abandoned.error!, /^abandoned: no heartbeat since /)
    })

    test('a paused process whose run was taken over stops without touching it', async (t) => {
      const db = await seeded(t, kind)
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      let paused = true
      let entered = false
      const side = tableSide('stock_source')
      const def = stockReconciliation({
        source: {
          async read(cursor, limit, ctx) {
            if (paused && cursor === 'k04') {
              paused = false
              entered = true
              await gate
            }
            return side.read(cursor, limit, ctx)
          },
          get: side.get,
        },
      })
      const slow = runReconciliation(def, { db })
      await waitFor(() => entered, 'the first process to pause in its second batch', 15_000)
      await db.query(`update lifeline_reconcile_runs set heartbeat_at = now() - interval '1 hour'`)
      const taken = await runReconciliation(def, { db, resume: true })
      assert.deepEqual([taken.status, taken.attempts, taken.missing, taken.extra, taken.different], ['completed', 2, 2, 2, 2])
      release()
      const err = await expectCode(slow, 'LL_RECONCILE')
      assert.match(err.message, /is no longer running here: another process took it over/)
      const after = await getReconciliationRun(db, taken.id)
      assert.deepEqual([after.status, after.error, after.batches, after.missing], ['completed', null, taken.batches, 2])
    })

    test('a failing repair is recorded on its finding and the run goes on', async (t) => {
      const db = await seeded(t, kind)
      const def = stockReconciliation({
        repair: {
          ...repairTarget,
          missing: async (row, ctx) => {
            if (row.key === 'k03') throw new Error('target refused k03')
            await repairTarget.missing!(row, ctx)
          },
        },
      })
      const run = await runReconciliation(def, { db, repair: true })
      assert.equal(run.status, 'completed')
      assert.deepEqual([run.missing, run.extra, run.different, run.repaired, run.repairFailed], [2, 2, 2, 5, 1])
      const k03 = (await listReconciliationFindings(db, run.id, { kind: 'missing' })).find((f) => f.key === 'k03')!
      assert.equal(k03.repaired, false)
      assert.equal(k03.repairError, 'target refused k03')
      assert.deepEqual((await listReconciliationFindings(db, run.id, { repaired: false })).map((f) => f.key), ['k03'])
      const next = await runReconciliation(stockReconciliation({ name: def.name }), { db })
      assert.deepEqual(await findingKeys(db, next.id), { missing: ['k03'], extra: [], different: [] })
    })

    test('metrics count findings, repairs and runs by name', async (t) => {
      const db = await seeded(t, kind)
      const registry = new Registry()
      const def = stockReconciliation({ repair: { ...repairTarget, extra: async () => Promise.reject(new Error('no delete')) } })
      const value = async (metric: string, labels: Record<string, string>) =>
        (await registry.getSingleMetric(metric)!.get()).values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value
      const before = Date.now() / 1000
      await runReconciliation(def, { db, registry })
      await runReconciliation(def, { db, registry, repair: true })
      for (const kind of ['missing', 'extra', 'different']) assert.equal(await value('lifeline_reconcile_mismatches_total', { name: def.name, kind }), 4, kind)
      assert.equal(await value('lifeline_reconcile_repaired_total', { name: def.name, kind: 'missing' }), 2)
      assert.equal(await value('lifeline_reconcile_repaired_total', { name: def.name, kind: 'different' }), 2)
      assert.equal(await value('lifeline_reconcile_repaired_total', { name: def.name, kind: 'extra' }), undefined)
      assert.equal(await value('lifeline_reconcile_repair_failures_total', { name: def.name, kind: 'extra' }), 2)
      assert.equal(await value('lifeline_reconcile_runs_total', { name: def.name, status: 'completed' }), 2)
      const last = (await value('lifeline_reconcile_last_run_timestamp_seconds', { name: def.name }))!
      assert.ok(last >= before && last <= Date.now() / 1000, String(last))

      const broken = stockReconciliation({ name: def.name, source: { read: tableSide('stock_source').read }, target: { get: async () => Promise.reject(new Error('target down')) } })
      await expectCode(runReconciliation(broken, { db, registry }), 'LL_RECONCILE')
      assert.equal(await value('lifeline_reconcile_runs_total', { name: def.name, status: 'failed' }), 1)
      assert.equal(await value('lifeline_reconcile_last_run_timestamp_seconds', { name: def.name }), last, 'a failed run is not a completed one')
    })

    test('a key read twice (as a Redis SCAN may) is one finding; null lookups are absent rows', async (t) => {
      const db = await freshDatabase(t, kind)
      // SCAN-like: a cursor into a fixed order that repeats a key across batches; MGET-like: nulls for absent keys.
      const stock = new Map([['a', 1], ['b', 2], ['c', 3], ['d', 4]])
      const order = ['a', 'b', 'c', 'b', 'd', 'a']
      const redis = new Map([['a', '1'], ['b', '20'], ['e', '5']])
      const spec: ReconciliationSpec<string, number, string> = {
        name: randomName('redis'),
        source: {
          read: async (cursor, limit) => {
            const from = cursor === null ? 0 : Number(cursor)
            const keys = order.slice(from, from + limit)
            return { rows: keys.map((key) => ({ key, value: stock.get(key)! })), next: from + limit >= order.length ? null : String(from + limit) }
          },
          get: async (keys) => new Map(keys.map((k) => [k, stock.get(k) ?? null])),
        },
        target: {
          get: async (keys) => new Map(keys.map((k) => [k, redis.get(k) ?? null])),
          read: async (cursor) => (cursor === null ? { rows: [...redis].map(([key, value]) => ({ key, value })), next: null } : { rows: [], next: null }),
        },
        key: (k) => k,
        compare: (qty, text) => (String(qty) === text ? 'equal' : { db: qty, redis: text }),
        batchSize: 2,
      }
      const run = await runReconciliation(defineReconciliation(spec), { db })
      assert.deepEqual([run.missing, run.extra, run.different], [2, 1, 1])
      assert.deepEqual(await findingKeys(db, run.id), { missing: ['c', 'd'], extra: ['e'], different: ['b'] })
      assert.deepEqual((await listReconciliationFindings(db, run.id, { kind: 'different' }))[0]!.diff, { db: 2, redis: '20' })

      // A repair that does not stick (b) is not repeated when the key comes back in a later batch.
      const repairs: string[] = []
      const repair: ReconcileRepair<string, number, string> = {
        different: ({ keyText }) => void repairs.push(keyText),
        missing: ({ keyText, source }) => {
          if (keyText === 'd') throw new Error('redis is read-only')
          redis.set(keyText, String(source))
        },
      }
      const repaired = await runReconciliation(defineReconciliation({ ...spec, repair }), { db, repair: true })
      assert.deepEqual(repairs, ['b'])
      assert.deepEqual([repaired.missing, repaired.extra, repaired.different, repaired.repaired, repaired.repairFailed], [2, 1, 1, 2, 1])
      assert.equal((await listReconciliationFindings(db, repaired.id, { kind: 'missing', repaired: false }))[0]?.repairError, 'redis is read-only')
    })

    test('bad readers fail the run; a throwing compare reports the row as different', async (t) => {
      const db = await seeded(t, kind)
      const side = tableSide('stock_source')
      const stuck = stockReconciliation({ source: { read: async (cursor, limit, ctx) => ({ ...(await side.read(cursor, limit, ctx)), next: 'same' }), get: side.get } })
      const err = await expectCode(runReconciliation(stuck, { db, batchSize: 10_000 }), 'LL_RECONCILE')
      assert.match(err.message, /source\.read returned its own cursor "same" as next: it would never finish/)
      const shapeless = stockReconciliation({ source: { read: side.read }, target: { get: async () => ({}) as Map<string, Stock> } })
      assert.match((await expectCode(runReconciliation(shapeless, { db }), 'LL_RECONCILE')).message, /target\.get must resolve to a Map keyed by key\(\)/)

      const picky = stockReconciliation({ compare: (s, tv) => { if (s.qty === 100) throw new Error('cannot compare'); return diffFields(s, tv) } })
      const run = await runReconciliation(picky, { db })
      const k11 = (await listReconciliationFindings(db, run.id, { kind: 'different' })).find((f) => f.key === 'k11')
      assert.deepEqual(k11?.diff, { compareError: 'cannot compare' })
      assert.equal(run.different, 3)
    })

    test('a schedule runs when due, never two at once, and stop() aborts a run in progress', async (t) => {
      const db = await seeded(t, kind)
      let active = 0
      let most = 0
      let slow = false
      let entered = false
      const side = tableSide('stock_source')
      const def = stockReconciliation({
        source: {
          async read(cursor, limit, ctx) {
            active += 1
            most = Math.max(most, active)
            try {
              if (slow && cursor === 'k04') {
                entered = true
                await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
              }
              return await side.read(cursor, limit, ctx)
            } finally {
              active -= 1
            }
          },
          get: side.get,
        },
      })
      const done: string[] = []
      const schedule = scheduleReconciliation(def, { db, everyMs: 1000, onRun: (run) => void done.push(run.id) })
      t.after(() => schedule.stop())
      // Generous: on a loaded 2-core machine an embedded-PGlite run can take seconds (CI saw 15 s pass without two).
      await waitFor(() => done.length >= 2, 'two scheduled runs', 60_000)
      slow = true
      await waitFor(() => entered, 'a third run to start', 15_000)
      const stopping = schedule.stop()
      assert.equal(schedule.stop(), stopping, 'stop() twice returns the same promise')
      await stopping
      assert.equal(most, 1, 'two runs overlapped')
      const runs = (await listReconciliationRuns(db, { name: def.name })).reverse()
      assert.deepEqual(runs.map((r) => r.status), ['completed', 'completed', 'aborted'])
      assert.ok(runs[1]!.startedAt.getTime() - runs[0]!.finishedAt!.getTime() >= 900, 'the second run started before the interval passed')
      assert.equal(runs[2]!.errorCode, 'LL_ABORTED')

      // A second schedule of the name (another instance) finds the run not yet due, then resumes the aborted one.
      slow = false
      const resumedIds: string[] = []
      const other = scheduleReconciliation(def, { db, everyMs: 1000, onRun: (run) => void resumedIds.push(run.id) })
      t.after(() => other.stop())
      await waitFor(() => resumedIds.length >= 1, 'the aborted run to be resumed', 15_000)
      await other.stop()
      assert.equal(resumedIds[0], runs[2]!.id)
    })
  })
}

test('defineReconciliation validates the definition', () => {
  const ok = { name: 'stock', source: { read: async () => ({ rows: [], next: null }) }, target: { get: async () => new Map() }, key: (k: string) => k }
  const invalid = (spec: unknown, message: RegExp) =>
    assert.throws(() => defineReconciliation(spec as ReconciliationSpec<string, unknown, unknown>), (err: Error) => isLifelineError(err, 'LL_OPTIONS_INVALID') && message.test(err.message))
  invalid({ ...ok, name: 'has space' }, /reconciliation\.name/)
  invalid({ ...ok, batchSize: 0 }, /reconciliation\.batchSize/)
  invalid({ ...ok, target: {} }, /reconciliation\.target: must have required properties get/)
  invalid({ ...ok, key: 'id' }, /reconciliation\.key/)
  invalid({ ...ok, repair: { missed: () => undefined } }, /reconciliation\.repair\.missed: unknown option/)
  invalid({ ...ok, target: { ...ok.target, read: ok.source.read } }, /extra pass needs both target\.read and source\.get/)
  invalid({ ...ok, cron: '* * * * *' }, /reconciliation\.cron: unknown option/)
  const def = defineReconciliation(ok)
  assert.equal(def.batchSize, 500)
  assert.equal(def.extraPass, false)
  assert.ok(Object.isFrozen(def))

  class Side {
    readonly client = { connected: true }
    async get() { return new Map<string, number>() }
  }
  assert.equal(defineReconciliation({ ...ok, target: new Side() }).extraPass, false, 'a class instance with its methods on the prototype is accepted')
})

test('diffFields names the fields that differ', () => {
  assert.equal(diffFields({ a: 1, b: [1] }, { b: [1], a: 1 }), 'equal')
  assert.deepEqual(diffFields({ a: 1, b: 2 }, { a: 1, b: 3, c: 4 }), { fields: ['b', 'c'] })
  assert.equal(diffFields({ a: 1, b: 2 }, { a: 1, b: 3, updatedAt: 1 }, ['a']), 'equal')
  assert.equal(diffFields(5, '5'), 'values differ')
  assert.equal(diffFields(5, 5), 'equal')
})

test('the registry finds definitions by name and lists the known ones for an unknown one', () => {
  const spec = { source: { read: async () => ({ rows: [], next: null }) }, target: { get: async () => new Map() }, key: (k: string) => k }
  const a = defineReconciliation({ ...spec, name: randomName('reg_a') })
  const b = defineReconciliation({ ...spec, name: randomName('reg_b') })
  registerReconciliation(a, b)
  try {
    registerReconciliation(a)
    assert.equal(getReconciliation(a.name), a)
    assert.ok(listReconciliations().includes(b))
    assert.throws(() => registerReconciliation(defineReconciliation({ ...spec, name: a.name })), (err: Error) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    assert.throws(() => getReconciliation('nope', [b, a]), (err: Error) => isLifelineError(err, 'LL_RECONCILE') && err.message === `unknown reconciliation "nope"; known: ${[a.name, b.name].sort().join(', ')}`)
  } finally {
    unregisterReconciliation(a.name)
    unregisterReconciliation(b.name)
  }
})

test('unknown runs are LL_NOT_FOUND and bad arguments LL_ARGUMENT_INVALID', async (t) => {
  const db = await freshDatabase(t, 'pglite')
  await expectCode(getReconciliationRun(db, '424242'), 'LL_NOT_FOUND')
  await expectCode(listReconciliationFindings(db, '424242'), 'LL_NOT_FOUND')
  await expectCode(getReconciliationRun(db, 'abc'), 'LL_ARGUMENT_INVALID')
  await expectCode(listReconciliationRuns(db, { limit: 0 }), 'LL_ARGUMENT_INVALID')
  const def = defineReconciliation({ name: 'n', source: { read: async () => ({ rows: [], next: null }) }, target: { get: async () => new Map() }, key: (k: string) => k })
  await expectCode(runReconciliation(def, { db, batchSize: 0 }), 'LL_OPTIONS_INVALID')
  const controller = new AbortController()
  controller.abort()
  await expectCode(runReconciliation(def, { db, signal: controller.signal }), 'LL_ABORTED')
  const empty = await runReconciliation(def, { db })
  assert.deepEqual([empty.status, empty.checked, empty.batches], ['completed', 0, 1])
})
