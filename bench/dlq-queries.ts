/**
 * `dlq-queries`: how the DLQ processor's read queries grow with the records indexed. On a fresh PostgreSQL
 * database (`DATABASE_URL`, default the local server), `lifeline_dlq_records` (its two tables) is seeded set-based
 * (`INSERT ... SELECT generate_series`) to each size in turn (10k, 100k, 300k, 1M; quick: 10k → 200k) and
 * analysed; then each query the API serves (`listRecords`, `groupRecords`, `countRecords`, as
 * `GET /v1/records`, `/v1/groups`, `/v1/records/count` run them) is timed: the fastest of 7 runs after one
 * warm-up. No Kafka involved.
 *
 * The data: 10 DLQ topics, 10 origin topics, 20 consumer groups, 50 error codes, 200 fingerprints, 10,000
 * keys, one failure a second (ids in time order, as indexed), 90 % pending. Besides, a fixed 50 records (whatever the size) carry a rare
 * origin topic, group, error code and key: what an operator looks for ("what happened to this key").
 * Headline: the slowest list query at the largest size / the same query at 10k (goal ≤ 5: a page of a
 * listing stays flat or log-like while the table grows 100×).
 *
 * @module
 */
import { countRecords, groupRecords, listRecords, type RecordFilter } from '../src/dlq/records.js'
import type { SqlExecutor } from '../src/store/executor.js'
import type { Curve } from './lib/charts.js'
import { benchDatabase } from './lib/database.js'
import { round } from './lib/results.js'
import type { BenchContext, BenchResult } from './lib/types.js'

const RARE = 50
/** Record i failed at this time + i seconds: one failure a second, ids in time order, as an indexer stores them. */
const EPOCH_MS = Date.UTC(2026, 0, 1)
const RUNS = 7

/** Seeds rows `from`..`to` (inclusive); the first RARE rows of the table carry the rare values. */
export async function seed(db: SqlExecutor, from: number, to: number): Promise<void> {
  await db.query(
    `with stored as (insert into lifeline_dlq_record_bodies (topic, partition, "offset", key, value, headers, "timestamp", format, origin_topic, origin_partition, origin_offset, origin_timestamp,
       consumer_group, service, error_class, error_code, error_message, fingerprint, attempts, first_failure_at, last_failure_at, failed_at)
     select 'orders-' || (i % 10) || '.dlq', i % 3, i, convert_to(case when i <= ${RARE} then 'key-rare' else 'key-' || (i % 10000) end, 'UTF8'),
       convert_to('{"order":' || i || ',"pad":"' || repeat('x', 100) || '"}', 'UTF8'),
       jsonb_build_array(jsonb_build_object('key', 'trace-id', 'value', 't-' || i)), ${EPOCH_MS} + i * 1000, 'lifeline',
       case when i <= ${RARE} then 'payments' else 'orders-' || (i % 10) end, i % 3, i, ${EPOCH_MS} + i * 1000 - 60000,
       case when i <= ${RARE} then 'group-rare' else 'group-' || (i % 20) end, 'orders-svc', 'ValidationError',
       case when i <= ${RARE} then 'E_RARE' else 'E_' || (i % 50) end, 'order ' || i || ' failed: field ' || (i % 1000) || ' is invalid',
       'fp-' || (i % 200), 3, to_timestamp(${EPOCH_MS / 1000} + i - 60), to_timestamp(${EPOCH_MS / 1000} + i), to_timestamp(${EPOCH_MS / 1000} + i)
     from generate_series($1::int8, $2::int8) as i
     returning id, "offset", topic, origin_topic)
     insert into lifeline_dlq_record_states (id, scope_topic, status)
     select id, coalesce(origin_topic, topic), case when "offset" % 10 = 0 then 'resolved' else 'pending' end from stored`,
    [from, to],
  )
  await db.query('analyze lifeline_dlq_record_bodies')
  await db.query('analyze lifeline_dlq_record_states')
}

const LAST_HOUR = 'last-hour'

/** Every query timed at each size: what the API and the console run. */
export const QUERIES: Array<{ id: string; kind: 'list' | 'group' | 'count'; label: string; filter: RecordFilter }> = [
  { id: 'list', kind: 'list', label: 'list: first page, no filter', filter: {} },
  { id: 'list_pending_topic', kind: 'list', label: 'list: pending of an origin topic', filter: { status: 'pending', topic: 'orders-3' } },
  { id: 'list_fingerprint', kind: 'list', label: 'list: one fingerprint', filter: { fingerprint: 'fp-7' } },
  { id: 'list_last_hour', kind: 'list', label: 'list: failed in the last hour, newest first', filter: { from: LAST_HOUR, order: 'desc' } },
  { id: 'list_group_rare', kind: 'list', label: 'list: a rare consumer group (50 records)', filter: { group: 'group-rare' } },
  { id: 'list_code_rare', kind: 'list', label: 'list: a rare error code (50 records)', filter: { errorCode: 'E_RARE' } },
  { id: 'list_topic_rare', kind: 'list', label: 'list: a rare origin topic (50 records)', filter: { topic: 'payments' } },
  { id: 'list_key_rare', kind: 'list', label: 'list: one key (50 records)', filter: { key: 'key-rare' } },
  { id: 'list_key_topic', kind: 'list', label: 'list: one key of an origin topic', filter: { topic: 'orders-1', key: 'key-rare' } },
  { id: 'group', kind: 'group', label: 'group: top 20 errors, no filter', filter: {} },
  { id: 'group_topic', kind: 'group', label: 'group: top 20 errors of an origin topic', filter: { topic: 'orders-3' } },
  { id: 'group_code_rare', kind: 'group', label: 'group: a rare error code', filter: { errorCode: 'E_RARE' } },
  { id: 'count_pending', kind: 'count', label: 'count: pending (bulk action dry run)', filter: { status: 'pending' } },
  { id: 'count_fingerprint', kind: 'count', label: 'count: one fingerprint', filter: { fingerprint: 'fp-7' } },
]
const LIST_QUERIES = QUERIES.filter((q) => q.kind === 'list')

/** Runs query `q` once on `db` (`LAST_HOUR`: the hour before the latest failure). */
export async function runQuery(db: SqlExecutor, q: (typeof QUERIES)[number]): Promise<unknown> {
  const filter = await resolve(db, q.filter)
  return q.kind === 'list' ? listRecords(db, filter) : q.kind === 'group' ? groupRecords(db, filter) : countRecords(db, filter)
}

async function resolve(db: SqlExecutor, filter: RecordFilter): Promise<RecordFilter> {
  if (filter.from !== LAST_HOUR) return filter
  const { rows } = await db.query<{ latest: Date }>('select max(failed_at) as latest from lifeline_dlq_records')
  return { ...filter, from: rows[0]!.latest.getTime() - 3_600_000 }
}

async function timeQuery(db: SqlExecutor, q: (typeof QUERIES)[number]): Promise<number> {
  const filter = await resolve(db, q.filter)
  const once = () => (q.kind === 'list' ? listRecords(db, filter) : q.kind === 'group' ? groupRecords(db, filter) : countRecords(db, filter))
  await once()
  const times: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now()
    await once()
    times.push(performance.now() - start)
  }
  // The fastest run: on a shared machine the others measure the neighbours as much as the query.
  return Math.min(...times)
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const sizes = ctx.quick ? [10_000, 30_000, 100_000, 200_000] : [10_000, 100_000, 300_000, 1_000_000]
  const { db, server, drop } = await benchDatabase('lifeline_bench_dlq_queries', 2)
  try {
    const times = new Map<string, number[]>(QUERIES.map((q) => [q.id, []]))
    const seedMs: number[] = []
    let seeded = 0
    for (const size of sizes) {
      const start = performance.now()
      await seed(db, seeded + 1, size)
      seedMs.push(round(performance.now() - start))
      seeded = size
      for (const q of QUERIES) {
        if (ctx.signal.aborted) throw new Error('interrupted')
        times.get(q.id)!.push(round(await timeQuery(db, q), 2))
      }
      ctx.logger.info({ size, ...Object.fromEntries([...times].map(([id, t]) => [id, t[t.length - 1]])) }, 'dlq query times')
    }
    const last = sizes.length - 1
    const at = (id: string, i: number) => times.get(id)![i]!
    const worst = LIST_QUERIES.reduce((a, b) => (at(b.id, last) / at(b.id, 0) > at(a.id, last) / at(a.id, 0) ? b : a))
    const metrics: BenchResult['metrics'] = {}
    for (const q of QUERIES) for (const [i, size] of sizes.entries()) metrics[`${q.id}_${size}_ms`] = at(q.id, i)
    metrics.worst_list_query = worst.id
    metrics.worst_list_largest_ms = at(worst.id, last)
    metrics.worst_list_smallest_ms = at(worst.id, 0)
    metrics.seed_ms = seedMs.join(' / ')
    const curve = (id: string, title: string, kind: 'list' | 'group' | 'count', note: string): Curve => ({
      id, title, note,
      x: { label: 'records indexed', log: true },
      y: { label: 'query time, ms (fastest of 7)', log: true },
      series: QUERIES.filter((q) => q.kind === kind || (kind === 'group' && q.kind === 'count')).map((q) => ({ name: q.label, points: sizes.map((s, i) => [s, Math.max(0.01, at(q.id, i))] as [number, number]) })),
    })
    return {
      params: { sizes: sizes.join(', '), runs: `${RUNS}, fastest, after one warm-up`, rare_records: RARE, database: server, seeding: 'INSERT ... SELECT generate_series, then ANALYZE', method: 'listRecords / groupRecords / countRecords on a pool of 2, wall time per call' },
      metrics,
      baseline: { worst_list_smallest_ms: at(worst.id, 0) },
      headline: { metric: 'worst_list_largest_ms', baseline: 'worst_list_smallest_ms' },
      goal: `ratio ≤ 5 (the fastest-growing list query at ${sizes[last]} records / at ${sizes[0]}: a page stays flat or log-like)`,
      target: { maxRatio: 5 },
      curves: [
        curve('list', 'DLQ listing: query time vs records indexed', 'list', 'A page of 100 records (the API default) per filter; log-log, so a flat line is constant time.'),
        curve('group', 'DLQ groups and counts: query time vs records indexed', 'group', 'Aggregates over every matching record: they grow with the records they match.'),
      ],
      summary: [
        ...QUERIES.map((q) => `${q.label}: ${sizes.map((s, i) => `${s}: ${at(q.id, i)} ms`).join(', ')}`),
        `seeding: ${seedMs.join(' / ')} ms`,
      ],
    }
  } finally {
    await drop()
  }
}
