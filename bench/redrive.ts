/**
 * `redrive`: what the DLQ processor costs. In one run, on a fresh PostgreSQL database (`DATABASE_URL`,
 * default the local server) and one producer (the same client settings throughout):
 * - indexer: N Lifeline dead letters in a DLQ topic are stored by `createDlqIndexer` (records/s from the first
 *   to the last record indexed);
 * - raw copy: a plain consumer reads the DLQ topic and the producer copies every record (key, value,
 *   headers) to another topic, acknowledged (records/s from the first poll to the last ack);
 * - durable copy: the raw copy plus one journal row per record written before its batch is sent and its
 *   offset after the ack (set-based): the floor of any redrive that records each replay in PostgreSQL;
 * - status copy: the durable copy plus each record's status row changed as a redrive changes it (`replaying`
 *   before the send, `replayed` after the ack; set-based, on a copy of the status table with its indexes): the
 *   floor of a redrive that keeps each record's status;
 * - redrive: an unthrottled bulk redrive job of the same N records to a third topic (`runRedriveJob`
 *   duration: reads the records from the database, lifecycle writes before and after every batch, sends);
 * - limiter: a job at 2,000 records/s; achieved rate = (records − one window's burst) / (last − first send
 *   time), and the most sends in any 1-second window.
 * Headline: redrive / raw copy throughput (goal ≥ 0.8).
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { createDlqIndexer } from '../src/dlq/indexer.js'
import { countRecords } from '../src/dlq/records.js'
import { createRedriveJob } from '../src/dlq/redrive/jobs.js'
import { runRedriveJob } from '../src/dlq/redrive/runner.js'
import { createAdmin, createConsumer, createProducer } from '../src/kafka/index.js'
import type { ConsumedRecord, KafkaProducer, ProduceAck, ProduceRecord } from '../src/kafka/index.js'
import { encodeFailureHeaders } from '../src/failure/headers.js'
import type { SqlExecutor } from '../src/store/executor.js'
import { openPostgres } from '../src/store/postgres.js'
import { migrateLifeline } from '../src/store/schema.js'
import { replicaRounds } from './lib/dlq-replicas.js'
import { round } from './lib/results.js'
import { perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'
import { suffix } from './lib/topics.js'

const PARTITIONS = 3
const KEYS = 100
const VALUE_BYTES = 200
const LIMIT_RATE = 2000

function deadLetters(dlq: string, origin: string, count: number): ProduceRecord[] {
  const now = Date.now()
  return Array.from({ length: count }, (_, i) => ({
    topic: dlq,
    partition: i % PARTITIONS,
    key: `key-${i % KEYS}`,
    value: JSON.stringify({ i, pad: 'x'.repeat(VALUE_BYTES) }),
    headers: encodeFailureHeaders([{ key: 'trace-id', value: Buffer.from(`t-${i}`) }], {
      originTopic: origin, originPartition: i % PARTITIONS, originOffset: i, originTimestamp: now, group: 'bench', service: 'bench', errorClass: 'Error',
      errorCode: 'E_BENCH', errorMessage: 'bench failure', errorFingerprint: 'bench', attempts: 3, firstFailureAt: now, lastFailureAt: now,
    }),
  }))
}

async function produceAll(producer: KafkaProducer, records: ProduceRecord[]): Promise<void> {
  for (let i = 0; i < records.length; i += 10_000) await producer.send(records.slice(i, i + 10_000))
}

async function waitUntil(ctx: BenchContext, check: () => boolean | Promise<boolean>, what: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (ctx.signal.aborted) throw new Error('interrupted')
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** What a copy writes around each polled batch: before it is sent, and once its acknowledgements are in. */
interface CopyJournal {
  before(batch: readonly ConsumedRecord[]): Promise<unknown>
  after(batch: readonly ConsumedRecord[], acks: readonly ProduceAck[]): Promise<unknown>
}

/**
 * Consume `source` and copy every record to `target` through `producer`, pipelined (a batch's
 * acknowledgement, and the journal's `after`, are not awaited before the next poll); records/s from the
 * first poll to the last acknowledgement (and `after`).
 */
async function copy(ctx: BenchContext, producer: KafkaProducer, source: string, target: string, total: number, name: string, journal?: CopyJournal): Promise<number> {
  const consumer = createConsumer({ brokers: ctx.brokers, groupId: `bench-redrive-${name}-${suffix()}`, fromBeginning: true })
  consumer.subscribe([source])
  await consumer.connect()
  let first = 0
  let copied = 0
  const settled: Array<Promise<unknown>> = []
  try {
    while (copied < total && !ctx.signal.aborted) {
      const batch: ConsumedRecord[] = await consumer.poll(500, 100)
      if (batch.length === 0) continue
      if (first === 0) first = performance.now()
      await journal?.before(batch)
      const sent = producer.send(batch.map((r) => ({ topic: target, partition: r.partition, key: r.key, value: r.value, headers: r.headers })))
      settled.push(journal ? sent.then((acks) => journal.after(batch, acks)) : sent)
      copied += batch.length
    }
    await Promise.all(settled)
    return perSecond(copied, performance.now() - first)
  } finally {
    await consumer.close()
  }
}

/**
 * The durable copy's journal: the least durable state a resumable, exactly-once copy keeps per record —
 * before a batch is sent, one multi-row insert of its records' replay ids (a write-ahead journal a restart
 * reads); after the acknowledgements, one update of their offsets. Set-based, one statement each per polled
 * batch. Not a headline: the floor any redrive that records each replay in PostgreSQL meets on this machine.
 * `table` and `recordIds` (default: the DLQ offset) let the status copy keep a journal of its own, naming the
 * records' ids.
 */
async function replayJournal(db: SqlExecutor, table = 'bench_redrive_journal', recordIds: (batch: readonly ConsumedRecord[]) => Array<number | string | null> = (batch) => batch.map((r) => r.offset)): Promise<CopyJournal> {
  await db.query(`create table ${table} (replay_id text primary key, record_id bigint not null, target_partition int, target_offset bigint)`)
  const ids = (batch: readonly ConsumedRecord[]) => batch.map((r) => `${r.partition}-${r.offset}`)
  return {
    before: (batch) => db.query(`insert into ${table} (replay_id, record_id) select * from unnest($1::text[], $2::int8[])`, [ids(batch), recordIds(batch)]),
    after: (batch, acks) => db.query(
      `update ${table} j set target_partition = x.p, target_offset = x.o from unnest($1::text[], $2::int[], $3::int8[]) as x(id, p, o) where j.replay_id = x.id`,
      [ids(batch), acks.map((a) => a.partition), acks.map((a) => a.offset)],
    ),
  }
}

/**
 * The status copy's journal: the durable copy's, plus each record's DLQ status changed as a redrive changes
 * it — `replaying` before its batch is sent, `replayed` (and its replay count) after the acknowledgements, one
 * set-based statement each per polled batch, on a copy of `lifeline_dlq_record_states` (same columns, same
 * indexes: the status is indexed, so neither change is heap-only). Not a headline: the floor of a redrive
 * that keeps each record's status (without its history events, without reading the record from PostgreSQL).
 */
async function statusJournal(db: SqlExecutor, dlq: string): Promise<CopyJournal> {
  await db.query('create table bench_redrive_states (like lifeline_dlq_record_states including all)')
  await db.query(`insert into bench_redrive_states select s.* from lifeline_dlq_record_states s join lifeline_dlq_record_bodies b on b.id = s.id where b.topic = $1`, [dlq])
  await db.query('analyze bench_redrive_states')
  const { rows } = await db.query<{ id: string; partition: number; offset: string }>(`select id::text, partition, "offset"::text from lifeline_dlq_record_bodies where topic = $1`, [dlq])
  const byOffset = new Map(rows.map((r) => [`${r.partition}-${r.offset}`, r.id]))
  const records = (batch: readonly ConsumedRecord[]) => batch.map((r) => byOffset.get(`${r.partition}-${r.offset}`) ?? null)
  const journal = await replayJournal(db, 'bench_redrive_status_journal', records)
  return {
    before: async (batch) => {
      await journal.before(batch)
      await db.query(`update bench_redrive_states set status = 'replaying', status_reason = 'redrive', status_actor = 'bench', status_at = now() where id = any($1::int8[]) and status = 'pending'`, [records(batch)])
    },
    after: async (batch, acks) => {
      await journal.after(batch, acks)
      await db.query(
        `update bench_redrive_states set status = 'replayed', status_reason = 'replayed', status_actor = 'bench', status_at = now(), replay_count = replay_count + 1 where id = any($1::int8[]) and status = 'replaying'`,
        [records(batch)],
      )
    },
  }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const n = ctx.quick ? 20_000 : 100_000
  const limited = ctx.quick ? 8000 : 20_000
  const replicaRecords = ctx.quick ? 10_000 : 40_000
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const dbName = `lifeline_bench_redrive_${randomBytes(4).toString('hex')}`
  const adminDb = await openPostgres({ url, poolSize: 1 })
  await adminDb.query(`create database ${dbName}`)
  const dbUrl = new URL(url)
  dbUrl.pathname = `/${dbName}`
  const db = await openPostgres({ url: dbUrl.href, poolSize: 8 })
  const id = suffix()
  const origin = `bench-redrive-origin-${id}`
  const dlq = `bench-redrive-${id}.dlq`
  const limitDlq = `bench-redrive-limit-${id}.dlq`
  const copyTarget = `bench-redrive-copy-${id}`
  const durableTarget = `bench-redrive-durable-${id}`
  const statusTarget = `bench-redrive-status-${id}`
  const redriveTarget = `bench-redrive-target-${id}`
  const limitTarget = `bench-redrive-limited-${id}`
  const topics = [origin, dlq, limitDlq, copyTarget, durableTarget, statusTarget, redriveTarget, limitTarget]
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  try {
    await migrateLifeline(db)
    await admin.createTopics(topics.map((topic) => ({ topic, partitions: PARTITIONS })))
    await produceAll(producer, deadLetters(dlq, origin, n))
    // Each DLQ topic's dead letters have an origin of their own: the processor stores one dead letter per
    // failure, so the same origin coordinates in two topics would be recorded as copies of one record.
    await produceAll(producer, deadLetters(limitDlq, `${origin}-limited`, limited))
    ctx.logger.info({ records: n }, 'dead letters written')

    // The indexer: first to last record indexed.
    const indexer = createDlqIndexer({ brokers: ctx.brokers, db, topics: [dlq, limitDlq], groupId: `bench-redrive-indexer-${id}`, migrate: false, pollTimeoutMs: 100 })
    await indexer.start()
    await waitUntil(ctx, () => indexer.stats().indexed > 0, 'the first indexed record')
    const indexStart = performance.now()
    const indexedAtStart = indexer.stats().indexed
    await waitUntil(ctx, () => indexer.stats().indexed >= n + limited, 'every record indexed')
    const indexMs = performance.now() - indexStart
    await indexer.close()
    const indexerRps = perSecond(n + limited - indexedAtStart, indexMs)
    if ((await countRecords(db)) !== n + limited) throw new Error('the indexer stored a wrong count')
    ctx.logger.info({ indexerRps: round(indexerRps) }, 'indexed')

    const copyRps = await copy(ctx, producer, dlq, copyTarget, n, 'copy')
    ctx.logger.info({ copyRps: round(copyRps) }, 'raw copy done')
    const durableRps = await copy(ctx, producer, dlq, durableTarget, n, 'durable', await replayJournal(db))
    ctx.logger.info({ durableRps: round(durableRps) }, 'durable copy done')
    const statusJ = await statusJournal(db, dlq)
    const statusRps = await copy(ctx, producer, dlq, statusTarget, n, 'status', statusJ)
    ctx.logger.info({ statusRps: round(statusRps) }, 'status copy done')

    const createStart = performance.now()
    const job = await createRedriveJob({ db }, { filter: { dlqTopic: dlq }, target: { kind: 'topic', topic: redriveTarget }, actor: 'bench', batchSize: 2000 })
    const createMs = performance.now() - createStart
    const runStart = performance.now()
    const done = await runRedriveJob({ db, producer }, job.id)
    const redriveMs = performance.now() - runStart
    if (done.succeeded !== n) throw new Error(`the redrive sent ${done.succeeded} of ${n}`)
    const redriveRps = perSecond(n, redriveMs)
    ctx.logger.info({ redriveRps: round(redriveRps) }, 'redrive done')

    // The limiter at 2,000/s: send times are the records' timestamps (the limiter's admission times).
    const limitedJob = await createRedriveJob({ db }, { filter: { dlqTopic: limitDlq }, target: { kind: 'topic', topic: limitTarget }, actor: 'bench', ratePerSec: LIMIT_RATE })
    const limitedStart = performance.now()
    await runRedriveJob({ db, producer }, limitedJob.id)
    const limitedMs = performance.now() - limitedStart
    const reader = createConsumer({ brokers: ctx.brokers, groupId: `bench-redrive-read-${id}`, fromBeginning: true })
    reader.subscribe([limitTarget])
    await reader.connect()
    const times: number[] = []
    try {
      const deadline = Date.now() + 60_000
      while (times.length < limited && Date.now() < deadline) for (const r of await reader.poll(1000, 200)) times.push(r.timestamp)
    } finally {
      await reader.close()
    }
    times.sort((a, b) => a - b)
    let maxWindow = 0
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i]! - times[j]! >= 1000) j++
      maxWindow = Math.max(maxWindow, i - j + 1)
    }
    const achieved = perSecond(times.length - LIMIT_RATE, times[times.length - 1]! - times[0]!)

    // Scaled out: the same indexing and two jobs on 1, then 2 `lifeline dlq serve` replicas.
    const scaled = await replicaRounds(ctx, { adminDb, url, admin, producer, total: replicaRecords, deadLetters: (topic, count) => deadLetters(topic, `${origin}-${topic}`, count) })
    const [one, two] = scaled as [(typeof scaled)[0], (typeof scaled)[0]]
    return {
      params: {
        records: n, limiter_records: limited, replica_records: replicaRecords, partitions: PARTITIONS, keys: KEYS, value_bytes: VALUE_BYTES, redrive_batch: 2000, limiter_rate_per_s: LIMIT_RATE,
        database: url.replace(/\/\/[^@]*@/, '//***@'), producer: 'createProducer defaults (idempotent, acks=all, linger 5 ms)',
        method: 'redrive = runRedriveJob duration (records read from the database, lifecycle written per batch); raw copy = first poll to last ack; durable copy = raw copy + per polled batch one multi-row insert of a journal row per record before the send and one update of their offsets after the acks (first poll to last update); status copy = durable copy + per polled batch one update of the status rows of its records to replaying before the send and one to replayed after the acks, on a copy of lifeline_dlq_record_states with its indexes; indexer = first to last record stored; replicas = lifeline dlq serve child processes on one PostgreSQL database: indexing first to last record stored, two unthrottled jobs (one per DLQ topic) creation to both completed',
      },
      metrics: {
        redrive_rps: round(redriveRps), raw_copy_rps: round(copyRps), durable_copy_rps: round(durableRps), durable_copy_ratio: round(durableRps / copyRps, 3), redrive_vs_durable_copy: round(redriveRps / durableRps, 3),
        status_copy_rps: round(statusRps), status_copy_ratio: round(statusRps / copyRps, 3), redrive_vs_status_copy: round(redriveRps / statusRps, 3),
        redrive_create_job_ms: round(createMs), indexer_rps: round(indexerRps),
        limiter_achieved_rps: round(achieved), limiter_accuracy: round(achieved / LIMIT_RATE, 3), limiter_max_per_window: maxWindow, limiter_job_ms: round(limitedMs),
        replicas_1_index_rps: round(one.indexRps), replicas_2_index_rps: round(two.indexRps), replicas_index_ratio: round(two.indexRps / one.indexRps, 2),
        replicas_1_redrive_rps: round(one.redriveRps), replicas_2_redrive_rps: round(two.redriveRps), replicas_redrive_ratio: round(two.redriveRps / one.redriveRps, 2),
      },
      baseline: { raw_copy_rps: round(copyRps) },
      headline: { metric: 'redrive_rps', baseline: 'raw_copy_rps' },
      goal: 'ratio ≥ 0.8 (unthrottled bulk redrive / raw consume-and-produce copy)',
      target: { minRatio: 0.8 },
      checks: [{ goal: `creating a ${n}-record job takes at most 1 s`, metric: 'redrive_create_job_ms', max: 1000 }],
      summary: [
        `redrive ${round(redriveRps)} rec/s vs raw copy ${round(copyRps)} rec/s (ratio ${round(redriveRps / copyRps, 2)}), job creation ${round(createMs)} ms for ${n} records`,
        `durable copy (raw copy + a write-ahead row per record and its offset, set-based per batch) ${round(durableRps)} rec/s: ${round(durableRps / copyRps, 2)} of the raw copy; the redrive is ${round(redriveRps / durableRps, 2)} of it`,
        `status copy (the durable copy + each record's status row to replaying before the send and to replayed after the ack, set-based per batch) ${round(statusRps)} rec/s: ${round(statusRps / copyRps, 2)} of the raw copy; the redrive is ${round(redriveRps / statusRps, 2)} of it`,
        `indexer ${round(indexerRps)} rec/s`,
        `limiter at ${LIMIT_RATE}/s: achieved ${round(achieved)}/s (accuracy ${round(achieved / LIMIT_RATE, 3)}), at most ${maxWindow} in any 1-s window`,
        `replicas (${replicaRecords} records, two jobs): indexing ${round(one.indexRps)} → ${round(two.indexRps)} rec/s, redrive ${round(one.redriveRps)} → ${round(two.redriveRps)} rec/s (1 → 2 replicas)`,
      ],
    }
  } finally {
    await producer.close().catch(() => undefined)
    await admin.deleteTopics(topics).catch(() => undefined)
    await admin.close().catch(() => undefined)
    await db.close().catch(() => undefined)
    await adminDb.query(`drop database if exists ${dbName} with (force)`).catch(() => undefined)
    await adminDb.close().catch(() => undefined)
  }
}
