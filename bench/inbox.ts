/**
 * `inbox`: what effect-once costs. The same backlog (3 partitions, 1,000 keys, an `event-id` header per
 * record) is consumed by a handler doing one PostgreSQL insert per record:
 * - plain: `insert into bench_effects ...` on the pool (autocommit);
 * - inbox (unbatched, `batch.maxRecords: 1`): the same insert through `createInbox`, one transaction per
 *   record (claim the event id, insert, commit);
 * - batched: the inbox's default group commit (up to 16 records started together share a transaction: one
 *   multi-row claim, the inserts, one commit).
 * On the PostgreSQL server (`DATABASE_URL`, default the local server) and on embedded PGlite. Each variant
 * runs with a fresh group and fresh tables; rounds alternate the order and keep each variant's best.
 * Throughput is records / (last handled − first handled). Headline: the inbox with its defaults (group commit) / plain on the server (goal ≥ 0.85);
 * the unbatched ratio is reported too.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createInbox } from '../src/effects/inbox.js'
import { createAdmin, createProducer } from '../src/kafka/index.js'
import type { ProduceRecord } from '../src/kafka/index.js'
import { createConsumer } from '../src/runtime/consumer.js'
import { openDatabase, type SqlExecutor } from '../src/store/index.js'
import { migrateLifeline } from '../src/store/schema.js'
import { round } from './lib/results.js'
import { perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'

const PARTITIONS = 3
const KEYS = 1000
const CONCURRENCY = 32
const suffix = () => `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`

type Variant = 'plain' | 'inbox' | 'batched'

async function consume(ctx: BenchContext, topic: string, total: number, db: SqlExecutor, variant: Variant): Promise<number> {
  await db.query('drop table if exists bench_effects')
  await db.query('create table bench_effects (id text primary key, k text not null, payload text not null)')
  await db.query('delete from lifeline_inbox where consumer = $1', ['bench-inbox'])
  let done = 0
  let first = 0
  let last = 0
  const insert = (q: Pick<SqlExecutor, 'query'>, id: string, key: string) => q.query('insert into bench_effects (id, k, payload) values ($1, $2, $3)', [id, key, 'x'.repeat(64)])
  const inbox = createInbox<Buffer>({ db, consumer: 'bench-inbox', ...(variant === 'inbox' ? { batch: { maxRecords: 1 } } : {}), handler: async (m, { tx, eventId }) => void (await insert(tx, eventId, m.keyText ?? '')) })
  const consumer = createConsumer<Buffer>({
    brokers: ctx.brokers,
    groupId: `bench-inbox-${variant}-${suffix()}`,
    service: 'benchinbox',
    topics: [topic],
    decoder: 'raw',
    concurrency: CONCURRENCY,
    handler: async (m) => {
      if (first === 0) first = performance.now()
      if (variant !== 'plain') await inbox.handler(m)
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

interface Figures {
  plain: number
  inbox: number
  batched: number
  rounds: Record<Variant, number[]>
}

async function compare(ctx: BenchContext, topic: string, total: number, db: SqlExecutor, rounds: number): Promise<Figures> {
  const all: Record<Variant, number[]> = { plain: [], inbox: [], batched: [] }
  const orders: Variant[][] = [['plain', 'inbox', 'batched'], ['batched', 'inbox', 'plain']]
  for (let r = 0; r < rounds; r++) {
    for (const variant of orders[r % 2]!) {
      const rps = await consume(ctx, topic, total, db, variant)
      all[variant].push(round(rps))
      ctx.logger.info({ db: db.kind, variant, rps: Math.round(rps) }, 'inbox bench round')
    }
  }
  return { plain: Math.max(...all.plain), inbox: Math.max(...all.inbox), batched: Math.max(...all.batched), rounds: all }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const total = ctx.quick ? 4_000 : 15_000
  const pgliteTotal = ctx.quick ? 2_000 : 5_000
  const rounds = ctx.quick ? 2 : 3
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  const topic = `bench-inbox-${suffix()}`
  const small = `bench-inbox-small-${suffix()}`
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-bench-inbox-'))
  const server = await openDatabase({ url, poolSize: CONCURRENCY })
  const pglite = await openDatabase({ dataDir: join(dir, 'db') })
  try {
    await migrateLifeline(server)
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
    const ratio = (f: Figures, v: 'inbox' | 'batched') => round(f[v] / f.plain, 3)
    return {
      params: { records: total, pglite_records: pgliteTotal, partitions: PARTITIONS, keys: KEYS, concurrency: CONCURRENCY, pool_size: CONCURRENCY, handler: 'one insert per record', rounds: `${rounds}, alternating order, best each`, server: url.replace(/\/\/[^@]*@/, '//***@') },
      metrics: {
        postgres_plain_rps: pg.plain,
        postgres_inbox_rps: pg.inbox,
        postgres_inbox_batched_rps: pg.batched,
        postgres_inbox_ratio: ratio(pg, 'inbox'),
        postgres_inbox_batched_ratio: ratio(pg, 'batched'),
        postgres_rounds: `plain ${pg.rounds.plain.join(' / ')}; inbox ${pg.rounds.inbox.join(' / ')}; batched ${pg.rounds.batched.join(' / ')}`,
        pglite_plain_rps: lite.plain,
        pglite_inbox_rps: lite.inbox,
        pglite_inbox_batched_rps: lite.batched,
        pglite_inbox_ratio: ratio(lite, 'inbox'),
        pglite_inbox_batched_ratio: ratio(lite, 'batched'),
        pglite_rounds: `plain ${lite.rounds.plain.join(' / ')}; inbox ${lite.rounds.inbox.join(' / ')}; batched ${lite.rounds.batched.join(' / ')}`,
      },
      baseline: { postgres_plain_rps: pg.plain },
      headline: { metric: 'postgres_inbox_batched_rps', baseline: 'postgres_plain_rps' },
      goal: 'ratio ≥ 0.85 (inbox with its default group commit / plain insert throughput on the PostgreSQL server)',
      target: { minRatio: 0.85 },
      summary: [
        `PostgreSQL server: plain ${pg.plain} rec/s, inbox with group commit (default) ${pg.batched} rec/s (ratio ${ratio(pg, 'batched')}), unbatched inbox ${pg.inbox} rec/s (ratio ${ratio(pg, 'inbox')})`,
        `PGlite: plain ${lite.plain} rec/s, group commit ${lite.batched} rec/s (ratio ${ratio(lite, 'batched')}), unbatched ${lite.inbox} rec/s (ratio ${ratio(lite, 'inbox')})`,
      ],
    }
  } finally {
    await producer.close()
    await admin.deleteTopics([topic, small]).catch(() => undefined)
    await admin.close()
    await server.query('drop table if exists bench_effects').catch(() => undefined)
    await server.close()
    await pglite.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
