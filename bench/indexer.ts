/**
 * `indexer`: what the DLQ indexer costs over the least a consumer must do to store the same rows. On a fresh
 * PostgreSQL database (`DATABASE_URL`, default the local server), the same N Lifeline dead letters (3
 * partitions) are stored, alternately, by:
 * - indexer: `createDlqIndexer` (batches of 500: parse, mask check, idempotent store in one transaction,
 *   offsets committed after it) into `lifeline_dlq_records`;
 * - baseline: the raw Kafka client (`poll(500)`, the indexer's batch size) and one multi-row
 *   `INSERT ... ON CONFLICT DO NOTHING` of the same columns per poll batch into a copy of that table (same
 *   indexes), with the fields read straight from the known header names, then the batch's offsets committed.
 * Each variant runs with a fresh group and an empty table; rounds alternate the order and keep each best.
 * Throughput = records stored after the first batch / (last batch stored − first batch stored).
 * Headline: indexer / baseline (goal ≥ 0.8).
 *
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { createDlqIndexer } from '../src/dlq/indexer.js'
import { LifelineHeaders } from '../src/failure/headers.js'
import { createAdmin, createConsumer, createProducer } from '../src/kafka/index.js'
import type { ConsumedRecord } from '../src/kafka/index.js'
import type { SqlExecutor } from '../src/store/executor.js'
import { benchDatabase } from './lib/database.js'
import { deadLetters, produceAll } from './lib/dead-letters.js'
import { round } from './lib/results.js'
import { perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'
import { suffix } from './lib/topics.js'

const SHAPE = { partitions: 3, keys: 100, valueBytes: 200 }
const BATCH = 500

type Variant = 'indexer' | 'baseline'

/** Stored after the first batch / time from the first batch stored to the last. */
interface Span {
  first: number
  last: number
  atFirst: number
}
const rate = (total: number, s: Span): number => perSecond(total - s.atFirst, s.last - s.first)

async function runIndexer(ctx: BenchContext, db: SqlExecutor, topic: string, total: number): Promise<number> {
  await db.query('truncate lifeline_dlq_record_bodies cascade')
  const indexer = createDlqIndexer({ brokers: ctx.brokers, db, topics: [topic], groupId: `bench-indexer-${suffix()}`, migrate: false, pollTimeoutMs: 100, batchSize: BATCH })
  await indexer.start()
  const span: Span = { first: 0, last: 0, atFirst: 0 }
  try {
    const deadline = performance.now() + 300_000
    let seen = 0
    while (seen < total) {
      if (ctx.signal.aborted || performance.now() > deadline) throw new Error('the indexer did not store every record in time')
      await sleep(5)
      const { indexed } = indexer.stats()
      if (indexed === seen) continue
      if (seen === 0) Object.assign(span, { first: performance.now(), atFirst: indexed })
      seen = indexed
      span.last = performance.now()
    }
  } finally {
    await indexer.close()
  }
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from lifeline_dlq_records')
  if (rows[0]!.n !== total) throw new Error(`the indexer stored ${rows[0]!.n} of ${total}`)
  return rate(total, span)
}

const BASELINE_COLUMNS = [
  'topic', 'partition', '"offset"', 'key', 'value', 'headers', '"timestamp"', 'format', 'origin_topic', 'origin_partition', 'origin_offset', 'origin_timestamp',
  'consumer_group', 'service', 'error_class', 'error_code', 'error_message', 'error_stack', 'fingerprint', 'attempts', 'first_failure_at', 'last_failure_at',
  'failed_at', 'details', 'replay_id', 'replayed_before', 'masked',
]
const CAST: Record<number, string> = { 5: '::jsonb', 20: '::timestamptz', 21: '::timestamptz', 22: '::timestamptz', 23: '::jsonb' }

/** The row of a Lifeline dead letter, its fields read straight from the header names (no validation). */
function baselineRow(r: ConsumedRecord): unknown[] {
  const h = new Map<string, string>()
  for (const { key, value } of r.headers) if (value !== null) h.set(key, value.toString('utf8'))
  const num = (k: string) => (h.has(k) ? Number(h.get(k)) : null)
  const text = (k: string) => h.get(k) ?? null
  return [
    r.topic, r.partition, r.offset, r.key, r.value, JSON.stringify(r.headers.map(({ key, value }) => ({ key, value: value === null ? null : value.toString('utf8') }))), r.timestamp, 'lifeline',
    text(LifelineHeaders.originTopic), num(LifelineHeaders.originPartition), num(LifelineHeaders.originOffset), num(LifelineHeaders.originTimestamp),
    text(LifelineHeaders.group), text(LifelineHeaders.service), text(LifelineHeaders.errorClass), text(LifelineHeaders.errorCode), text(LifelineHeaders.errorMessage),
    text(LifelineHeaders.errorStack), text(LifelineHeaders.errorFingerprint), num(LifelineHeaders.attempts), text(LifelineHeaders.firstFailure), text(LifelineHeaders.lastFailure),
    text(LifelineHeaders.lastFailure) ?? new Date(r.timestamp).toISOString(), '{}', null, 0, false,
  ]
}

async function runBaseline(ctx: BenchContext, db: SqlExecutor, topic: string, total: number): Promise<number> {
  await db.query('truncate bench_dlq_baseline, bench_dlq_baseline_states')
  const consumer = createConsumer({ brokers: ctx.brokers, groupId: `bench-indexer-raw-${suffix()}`, fromBeginning: true })
  consumer.subscribe([topic])
  await consumer.connect()
  const span: Span = { first: 0, last: 0, atFirst: 0 }
  let stored = 0
  try {
    const deadline = performance.now() + 300_000
    while (stored < total) {
      if (ctx.signal.aborted || performance.now() > deadline) throw new Error('the baseline did not store every record in time')
      const batch = await consumer.poll(BATCH, 100)
      if (batch.length === 0) continue
      const params: unknown[] = []
      const rows = batch.map((r) => `(${baselineRow(r).map((v, i) => `$${params.push(v)}${CAST[i] ?? ''}`).join(', ')})`)
      await db.query(
        `with stored as (insert into bench_dlq_baseline (${BASELINE_COLUMNS.join(', ')}) values ${rows.join(', ')} on conflict (topic, partition, "offset") do nothing returning id, topic, origin_topic)
         insert into bench_dlq_baseline_states (id, scope_topic) select id, coalesce(origin_topic, topic) from stored`,
        params,
      )
      const next = new Map<number, number>()
      for (const r of batch) next.set(r.partition, Math.max(next.get(r.partition) ?? 0, r.offset + 1))
      await consumer.commit([...next].map(([partition, offset]) => ({ topic, partition, offset })))
      stored += batch.length
      if (span.first === 0) Object.assign(span, { first: performance.now(), atFirst: stored })
      span.last = performance.now()
    }
  } finally {
    await consumer.close()
  }
  const { rows } = await db.query<{ n: number }>('select count(*)::int as n from bench_dlq_baseline')
  if (rows[0]!.n !== total) throw new Error(`the baseline stored ${rows[0]!.n} of ${total}`)
  return rate(total, span)
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const total = ctx.quick ? 20_000 : 100_000
  const rounds = ctx.quick ? 2 : 3
  const { db, server, drop } = await benchDatabase('lifeline_bench_indexer', 4)
  const id = suffix()
  const dlq = `bench-indexer-${id}.dlq`
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  try {
    // The same columns, defaults and indexes as the indexer's tables (the record and its status row; the id sequence too).
    await db.query('create table bench_dlq_baseline (like lifeline_dlq_record_bodies including all)')
    await db.query('create table bench_dlq_baseline_states (like lifeline_dlq_record_states including all)')
    await admin.createTopics([{ topic: dlq, partitions: SHAPE.partitions }])
    await produceAll(producer, deadLetters(dlq, `bench-indexer-origin-${id}`, total, SHAPE))
    ctx.logger.info({ records: total }, 'dead letters written')
    const all: Record<Variant, number[]> = { indexer: [], baseline: [] }
    for (let r = 0; r < rounds; r++) {
      for (const variant of (r % 2 === 0 ? ['indexer', 'baseline'] : ['baseline', 'indexer']) as Variant[]) {
        const rps = variant === 'indexer' ? await runIndexer(ctx, db, dlq, total) : await runBaseline(ctx, db, dlq, total)
        all[variant].push(round(rps))
        ctx.logger.info({ variant, rps: Math.round(rps) }, 'indexer bench round')
      }
    }
    const indexer = Math.max(...all.indexer)
    const baseline = Math.max(...all.baseline)
    return {
      params: {
        records: total, partitions: SHAPE.partitions, keys: SHAPE.keys, value_bytes: SHAPE.valueBytes, batch: BATCH, rounds: `${rounds}, alternating order, best each`, database: server,
        method: 'records stored after the first batch / (last batch stored − first batch stored); indexer = createDlqIndexer (stats polled every 5 ms); baseline = raw client poll(500) + one multi-row INSERT ... ON CONFLICT DO NOTHING of the same 27 columns per batch into copies of lifeline_dlq_record_bodies and lifeline_dlq_record_states (same indexes; one statement, as the indexer) + offset commit',
      },
      metrics: {
        indexer_rps: indexer,
        baseline_rps: baseline,
        indexer_ratio: round(indexer / baseline, 3),
        indexer_rps_rounds: all.indexer.join(' / '),
        baseline_rps_rounds: all.baseline.join(' / '),
      },
      baseline: { baseline_rps: baseline },
      headline: { metric: 'indexer_rps', baseline: 'baseline_rps' },
      goal: 'ratio ≥ 0.8 (records indexed / raw consume + batched insert of the same rows in the same batches)',
      target: { minRatio: 0.8 },
      summary: [`indexer ${indexer} rec/s vs raw consume + batched insert ${baseline} rec/s (ratio ${round(indexer / baseline, 2)})`],
    }
  } finally {
    await producer.close().catch(() => undefined)
    await admin.deleteTopics([dlq]).catch(() => undefined)
    await admin.close().catch(() => undefined)
    await drop()
  }
}
