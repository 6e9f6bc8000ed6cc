/**
 * `inbox`: what effect-once costs. The same backlog (3 partitions, 1,000 keys, an `event-id` header per
 * record) is consumed by a handler writing one row per record into `bench_effects`:
 * - plain batched (the baseline): records handed over in the same event-loop turn, up to 16 (the inbox's
 *   group-commit rule and size), are written with one multi-row `INSERT` (autocommit): the same rows in the
 *   same batches, without the event-id claim;
 * - statement (the headline): the inbox's group commit (up to 16 records started together) with the claim
 *   and the multi-row insert as one autocommit statement (`statement`): one round trip, like the baseline;
 * - batch handler: the same groups in a transaction, a `batchHandler` writing the group's rows with one
 *   multi-row insert: BEGIN, the multi-row claim, the insert, COMMIT;
 * - batched: the same group commit with a per-record `handler` (BEGIN, the claim, one insert per record,
 *   COMMIT);
 * - inbox (unbatched, `batch.maxRecords: 1`): one transaction per record (claim, insert, commit);
 * - plain: one autocommit insert per record (the old baseline, for reference).
 * On the PostgreSQL server (a fresh database on `DATABASE_URL`, default the local server) and on embedded
 * PGlite. Each variant runs with a fresh group and fresh tables; rounds alternate the order and keep each
 * variant's best, after one unmeasured warm-up run. Throughput is records / (last handled − first handled).
 * Headline: group-commit inbox in one statement / plain batched insert on the server (goal ≥ 0.8).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createInbox, inboxDefaults } from '../src/effects/inbox.js'
import { createAdmin, createProducer } from '../src/kafka/index.js'
import type { ProduceRecord } from '../src/kafka/index.js'
import { createConsumer } from '../src/runtime/consumer.js'
import { openDatabase, type SqlExecutor } from '../src/store/index.js'
import { migrateLifeline } from '../src/store/schema.js'
import { benchDatabase } from './lib/database.js'
import { round } from './lib/results.js'
import { perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'
import { suffix } from './lib/topics.js'

const PARTITIONS = 3
const KEYS = 1000
const CONCURRENCY = 32

type Variant = 'plain' | 'plainBatched' | 'inbox' | 'batched' | 'batchHandler' | 'statement'
const VARIANTS: Variant[] = ['plainBatched', 'statement', 'batchHandler', 'batched', 'inbox', 'plain']
const PAYLOAD = 'x'.repeat(64)
const GROUP = inboxDefaults.batchMaxRecords

/** One multi-row INSERT of `rows` into bench_effects. */
async function insertRows(q: Pick<SqlExecutor, 'query'>, rows: ReadonlyArray<{ id: string; key: string }>): Promise<void> {
  const values = rows.map((_, i) => `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`).join(', ')
  await q.query(`insert into bench_effects (id, k, payload) values ${values}`, rows.flatMap((r) => [r.id, r.key, PAYLOAD]))
}

/**
 * The baseline's writer: rows handed over in the same event-loop turn, up to `max` (the inbox's group-commit
 * rule), go in one multi-row autocommit INSERT.
 */
function batchedInsert(db: SqlExecutor, max: number): (id: string, key: string) => Promise<void> {
  let queue: Array<{ id: string; key: string; resolve(): void; reject(err: unknown): void }> = []
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    while (queue.length > 0) {
      const batch = queue.slice(0, max)
      queue = queue.slice(max)
      insertRows(db, batch).then(
        () => batch.forEach((p) => p.resolve()),
        (err: unknown) => batch.forEach((p) => p.reject(err)),
      )
    }
  }
  return (id, key) =>
    new Promise<void>((resolve, reject) => {
      queue.push({ id, key, resolve, reject })
      if (queue.length >= max) flush()
      else if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
}

async function consume(ctx: BenchContext, topic: string, total: number, db: SqlExecutor, variant: Variant): Promise<number> {
  await db.query('drop table if exists bench_effects')
  await db.query('create table bench_effects (id text primary key, k text not null, payload text not null)')
  await db.query('delete from lifeline_inbox where consumer = $1', ['bench-inbox'])
  let done = 0
  let first = 0
  let last = 0
  const insert = (q: Pick<SqlExecutor, 'query'>, id: string, key: string) => q.query('insert into bench_effects (id, k, payload) values ($1, $2, $3)', [id, key, PAYLOAD])
  const insertBatched = batchedInsert(db, GROUP)
  const inbox =
    variant === 'statement'
      ? createInbox<Buffer>({
          db, consumer: 'bench-inbox',
          statement: (events) => ({
            text: 'insert into bench_effects (id, k, payload) select x.id, x.k, $3 from unnest($1::text[], $2::text[]) as x(id, k) join claimed on claimed.event_id = x.id',
            values: [events.map((e) => e.eventId), events.map((e) => e.message.keyText ?? ''), PAYLOAD],
          }),
        })
      : variant === 'batchHandler'
      ? createInbox<Buffer>({ db, consumer: 'bench-inbox', batchHandler: (events, { tx }) => insertRows(tx, events.map((e) => ({ id: e.context.eventId, key: e.message.keyText ?? '' }))) })
      : createInbox<Buffer>({ db, consumer: 'bench-inbox', ...(variant === 'inbox' ? { batch: { maxRecords: 1 } } : {}), handler: async (m, { tx, eventId }) => void (await insert(tx, eventId, m.keyText ?? '')) })
  const consumer = createConsumer<Buffer>({
    brokers: ctx.brokers,
    groupId: `bench-inbox-${variant}-${suffix()}`,
    service: 'benchinbox',
    topics: [topic],
    decoder: 'raw',
    concurrency: CONCURRENCY,
    handler: async (m) => {
      if (first === 0) first = performance.now()
      if (variant === 'plainBatched') await insertBatched(m.header('event-id')!, m.keyText ?? '')
      else if (variant !== 'plain') await inbox.handler(m)
      else await insert(db, m.header('event-id')!, m.keyText ?? '')
      done++
      last = performance.now()
    },
  })
  const started = performance.now()
  await consumer.start()
  try {
    while (done < total && performance.now() - started < 300_000 && !ctx.signal.aborted) await sleep(20)
  } finally {
    await consumer.close()
  }
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from bench_effects')
  if (rows[0]!.n !== total) throw new Error(`expected ${total} effect rows, found ${rows[0]!.n}`)
  return perSecond(done, last - first)
}

type Figures = Record<Variant, number> & { rounds: Record<Variant, number[]> }

async function compare(ctx: BenchContext, topic: string, total: number, db: SqlExecutor, rounds: number): Promise<Figures> {
  const all: Record<Variant, number[]> = { plain: [], plainBatched: [], inbox: [], batched: [], batchHandler: [], statement: [] }
  // Unmeasured: the pool's connections, the JIT and the broker's caches warm up before the first variant.
  await consume(ctx, topic, total, db, 'plainBatched')
  for (let r = 0; r < rounds; r++) {
    for (const variant of r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
      const rps = await consume(ctx, topic, total, db, variant)
      all[variant].push(round(rps))
      ctx.logger.info({ db: db.kind, variant, rps: Math.round(rps) }, 'inbox bench round')
    }
  }
  const best = (v: Variant) => Math.max(...all[v])
  return { plain: best('plain'), plainBatched: best('plainBatched'), inbox: best('inbox'), batched: best('batched'), batchHandler: best('batchHandler'), statement: best('statement'), rounds: all }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const total = ctx.quick ? 8_000 : 30_000
  const pgliteTotal = ctx.quick ? 2_000 : 5_000
  const rounds = ctx.quick ? 2 : 3
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  const topic = `bench-inbox-${suffix()}`
  const small = `bench-inbox-small-${suffix()}`
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-bench-inbox-'))
  const { db: server, server: url, drop } = await benchDatabase('lifeline_bench_inbox', CONCURRENCY)
  const pglite = await openDatabase({ dataDir: join(dir, 'db') })
  try {
    await migrateLifeline(pglite)
    await admin.createTopics([{ topic, partitions: PARTITIONS }, { topic: small, partitions: PARTITIONS }])
    await producer.connect()
    for (const [t, n] of [[topic, total], [small, pgliteTotal]] as const) {
      for (let i = 0; i < n; i += 2000) {
        const records: ProduceRecord[] = []
        for (let j = i; j < Math.min(n, i + 2000); j++) records.push({ topic: t, key: `k-${j % KEYS}`, value: Buffer.from(`{"n":${j}}`), headers: [{ key: 'event-id', value: Buffer.from(`evt-${j}`) }] })
        await producer.send(records)
      }
    }
    const pg = await compare(ctx, topic, total, server, rounds)
    const lite = await compare(ctx, small, pgliteTotal, pglite, rounds)
    const ratio = (f: Figures, v: Variant) => round(f[v] / f.plainBatched, 3)
    const roundsOf = (f: Figures) => VARIANTS.map((v) => `${v} ${f.rounds[v].join(' / ')}`).join('; ')
    return {
      params: {
        records: total, pglite_records: pgliteTotal, partitions: PARTITIONS, keys: KEYS, concurrency: CONCURRENCY, pool_size: CONCURRENCY, group: GROUP, handler: 'one row per record',
        baseline: `plain batched: the rows handed over in one event-loop turn, up to ${GROUP}, in one multi-row autocommit INSERT`, rounds: `${rounds}, alternating order, best each`, server: url,
      },
      metrics: {
        postgres_plain_batched_rps: pg.plainBatched,
        postgres_inbox_statement_rps: pg.statement,
        postgres_inbox_batch_handler_rps: pg.batchHandler,
        postgres_inbox_batched_rps: pg.batched,
        postgres_inbox_rps: pg.inbox,
        postgres_plain_rps: pg.plain,
        postgres_inbox_statement_ratio: ratio(pg, 'statement'),
        postgres_inbox_batch_handler_ratio: ratio(pg, 'batchHandler'),
        postgres_inbox_batched_ratio: ratio(pg, 'batched'),
        postgres_inbox_ratio: ratio(pg, 'inbox'),
        postgres_plain_ratio: ratio(pg, 'plain'),
        postgres_rounds: roundsOf(pg),
        pglite_plain_batched_rps: lite.plainBatched,
        pglite_inbox_statement_rps: lite.statement,
        pglite_inbox_batch_handler_rps: lite.batchHandler,
        pglite_inbox_batched_rps: lite.batched,
        pglite_inbox_rps: lite.inbox,
        pglite_plain_rps: lite.plain,
        pglite_inbox_statement_ratio: ratio(lite, 'statement'),
        pglite_inbox_batch_handler_ratio: ratio(lite, 'batchHandler'),
        pglite_inbox_batched_ratio: ratio(lite, 'batched'),
        pglite_inbox_ratio: ratio(lite, 'inbox'),
        pglite_rounds: roundsOf(lite),
      },
      baseline: { postgres_plain_batched_rps: pg.plainBatched },
      headline: { metric: 'postgres_inbox_statement_rps', baseline: 'postgres_plain_batched_rps' },
      goal: `ratio ≥ 0.8 (group-commit inbox, claim and multi-row insert in one statement per group (statement) / a plain multi-row insert of the same rows in the same batches, on the PostgreSQL server)`,
      target: { minRatio: 0.8 },
      summary: [
        `PostgreSQL server: plain batched ${pg.plainBatched} rec/s; inbox group commit in one statement ${pg.statement} rec/s (ratio ${ratio(pg, 'statement')}), with batchHandler ${pg.batchHandler} rec/s (ratio ${ratio(pg, 'batchHandler')}), with a per-record handler ${pg.batched} (${ratio(pg, 'batched')}), unbatched ${pg.inbox} (${ratio(pg, 'inbox')}); plain per record ${pg.plain} (${ratio(pg, 'plain')})`,
        `PGlite: plain batched ${lite.plainBatched} rec/s; one statement ${lite.statement} (${ratio(lite, 'statement')}), batchHandler ${lite.batchHandler} (${ratio(lite, 'batchHandler')}), per-record handler ${lite.batched} (${ratio(lite, 'batched')}), unbatched ${lite.inbox} (${ratio(lite, 'inbox')}); plain per record ${lite.plain} (${ratio(lite, 'plain')})`,
      ],
    }
  } finally {
    await producer.close()
    await admin.deleteTopics([topic, small]).catch(() => undefined)
    await admin.close()
    await drop()
    await pglite.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
