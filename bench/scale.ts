/**
 * How the runtime's cost grows with the work (issue 14's scale curves), each point measured in this run:
 *
 * 1. **Distinct keys** (1k → 1M) under `ordering: 'key'`: one backlog per point spread over that many keys
 *    (every point the same number of records: as many as the largest point has keys),
 *    an async handler (one turn of the event loop), concurrency 256; throughput and peak heap while
 *    consuming. The scheduler holds a lane per key with records buffered, so memory should follow the
 *    buffer limits, not the number of keys.
 * 2. **Records parked behind one key** (1k → 100k; 1M would take most of an hour at one fenced statement
 *    per record stored and per record replayed): the key's head fails permanently (DLQ, key parked), N
 *    records of the key are stored behind it in the state database, then the key is released; release time
 *    (release call → last stored record applied) and peak RSS during the release (records are streamed
 *    page by page, never all in memory).
 * 3. **Partitions assigned** (3 → 300): the same backlog over P partitions; Lifeline no-op vs the raw client
 *    (two rounds each, alternating which runs first; the best of each).
 *
 * The state database is the PostgreSQL server in `DATABASE_URL` when set, else an embedded PGlite.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAdmin, createProducer } from '../src/kafka/index.js'
import { createParkedKeys } from '../src/ordering/state-store.js'
import { NonRetriableError } from '../src/retry/classify.js'
import { createConsumer } from '../src/runtime/consumer.js'
import { openDatabase } from '../src/store/index.js'
import type { Curve } from './lib/charts.js'
import { memorySampler } from './lib/memory.js'
import { rawConsume } from './lib/raw-consume.js'
import { round } from './lib/results.js'
import { perSecond } from './lib/stats.js'
import { fill, suffix } from './lib/topics.js'
import type { BenchContext, BenchResult, MetricValue } from './lib/types.js'

const VALUE = Buffer.alloc(100, 'x')
const MB = 2 ** 20

async function settle(): Promise<void> {
  ;(globalThis as { gc?: () => void }).gc?.()
  await sleep(200)
}

/** Consumes `count` records with Lifeline; ms from the first record to the last and peak memory. */
async function lifelineRun(brokers: string[], topic: string, count: number, opts: { ordering: 'key'; concurrency: number; async: boolean }): Promise<{ ms: number; heap: number; rss: number }> {
  let seen = 0
  let first = 0
  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const tick = () => new Promise<void>((r) => setImmediate(r))
  const consumer = createConsumer({
    brokers,
    groupId: `bench-scale-${suffix()}`,
    service: 'bench',
    topics: [topic],
    decoder: 'raw',
    ordering: opts.ordering,
    concurrency: opts.concurrency,
    handler: opts.async
      ? async () => {
          if (seen === 0) first = performance.now()
          await tick()
          if (++seen === count) resolveDone()
        }
      : () => {
          if (seen === 0) first = performance.now()
          if (++seen === count) resolveDone()
        },
  })
  await settle()
  const mem = memorySampler()
  await consumer.start()
  try {
    await done
    const ms = performance.now() - first
    return { ms, ...mem.stop() }
  } finally {
    mem.stop()
    await consumer.close()
  }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const keyPoints = ctx.quick ? [1_000, 10_000, 100_000] : [1_000, 10_000, 100_000, 1_000_000]
  // Every key point consumes the same number of records (as many as the largest point has keys): the
  // throughput of a backlog falls with its length on this machine (1k keys: ~37k rec/s over 300k records,
  // ~29k over 1M), so points of different lengths would measure the length, not the key count.
  const keyRecordCount = keyPoints[keyPoints.length - 1]!

  // 1M is out of reach of a bench run: storing and replaying cost one fenced statement per record (~1-3k/s)
  const parkedPoints = ctx.quick ? [1_000, 3_000, 10_000] : [1_000, 10_000, 30_000, 100_000]
  const partitionPoints = ctx.quick ? [3, 30, 100] : [3, 30, 100, 300]
  const partitionRecords = ctx.quick ? 60_000 : 200_000
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  const created: string[] = []
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-bench-scale-'))
  const db = await openDatabase(process.env.DATABASE_URL ? { url: process.env.DATABASE_URL } : { dataDir: join(dir, 'db') })
  const metrics: Record<string, MetricValue> = {}
  const summary: string[] = []
  try {
    await producer.connect()

    // 1. Distinct keys.
    const keysRps: Array<[number, number | null]> = []
    const keysHeap: Array<[number, number | null]> = []
    for (const k of keyPoints) {
      if (ctx.signal.aborted) break
      const topic = `bench-scale-keys-${suffix()}`
      await admin.createTopics([{ topic, partitions: 3 }])
      created.push(topic)
      const n = keyRecordCount
      await fill(producer, topic, n, (i) => `key-${i % k}`, () => VALUE)
      const r = await lifelineRun(ctx.brokers, topic, n, { ordering: 'key', concurrency: 256, async: true })
      const rps = perSecond(n, r.ms)
      keysRps.push([k, round(rps)])
      keysHeap.push([k, round(r.heap / MB, 1)])
      metrics[`keys_${k}_rps`] = round(rps)
      metrics[`keys_${k}_peak_heap_mb`] = round(r.heap / MB, 1)
      metrics[`keys_${k}_peak_rss_mb`] = round(r.rss / MB, 1)
      ctx.logger.info({ keys: k, records: n, rps: Math.round(rps), heapMb: Math.round(r.heap / MB) }, 'keys point')
      summary.push(`keys ${k}: ${Math.round(rps)} rec/s, peak heap ${Math.round(r.heap / MB)} MB (${n} records)`)
    }

    // 2. Records parked behind one key, then released.
    const releaseMs: Array<[number, number | null]> = []
    const releaseRss: Array<[number, number | null]> = []
    const parkedKeys = createParkedKeys(db)
    for (const n of parkedPoints) {
      if (ctx.signal.aborted) break
      const topic = `bench-scale-parked-${suffix()}`
      await admin.createTopics([{ topic, partitions: 1 }])
      created.push(topic)
      const groupId = `bench-scale-parked-${suffix()}`
      let healthy = false
      let applied = 0
      let stored = 0
      let lastApplied = 0
      const consumer = createConsumer({
        brokers: ctx.brokers,
        groupId,
        service: `scale${suffix().replaceAll('-', '')}`,
        topics: [topic],
        decoder: 'raw',
        state: db,
        parking: { pollMs: 100 },
        retry: { maxAttempts: 1 },
        handler: ({ value }) => {
          if (!healthy && (value as Buffer)[0] === 0x68 /* 'h' */) throw new NonRetriableError('head: the downstream rejects it')
          applied++
          lastApplied = performance.now()
        },
      })
      consumer.on('record-parked', () => stored++)
      await consumer.start()
      try {
        await fill(producer, topic, n + 1, () => 'P', (i) => (i === 0 ? Buffer.from('head') : VALUE))
        const storeStarted = performance.now()
        while (stored < n && !ctx.signal.aborted) await sleep(100)
        const storeMs = performance.now() - storeStarted
        healthy = true
        await settle()
        const mem = memorySampler()
        const started = performance.now()
        await parkedKeys.release({ group: groupId, topic, key: 'P', actor: 'bench', reason: 'scale benchmark' })
        while (applied < n && !ctx.signal.aborted) await sleep(20)
        const ms = lastApplied - started
        const peak = mem.stop()
        releaseMs.push([n, round(ms)])
        releaseRss.push([n, round(peak.rss / MB, 1)])
        metrics[`parked_${n}_store_rps`] = round(perSecond(n, storeMs))
        metrics[`parked_${n}_release_ms`] = round(ms)
        metrics[`parked_${n}_release_rps`] = round(perSecond(n, ms))
        metrics[`parked_${n}_release_peak_rss_mb`] = round(peak.rss / MB, 1)
        metrics[`parked_${n}_release_peak_heap_mb`] = round(peak.heap / MB, 1)
        ctx.logger.info({ parked: n, storeMs: Math.round(storeMs), releaseMs: Math.round(ms), rssMb: Math.round(peak.rss / MB) }, 'parked point')
        summary.push(`parked ${n}: stored at ${Math.round(perSecond(n, storeMs))} rec/s; released in ${Math.round(ms)} ms (${Math.round(perSecond(n, ms))} rec/s), peak RSS ${Math.round(peak.rss / MB)} MB`)
      } finally {
        await consumer.close()
      }
    }

    // 3. Partitions assigned.
    const partLife: Array<[number, number | null]> = []
    const partRaw: Array<[number, number | null]> = []
    for (const p of partitionPoints) {
      if (ctx.signal.aborted) break
      const topic = `bench-scale-parts-${suffix()}`
      await admin.createTopics([{ topic, partitions: p }])
      created.push(topic)
      await fill(producer, topic, partitionRecords, (i) => `k${i % 10_000}`, () => VALUE)
      // Two rounds in alternating order, the best (shortest) of each: one run per point moved by ±20 % here.
      let rawMs = Number.POSITIVE_INFINITY
      let life = { ms: Number.POSITIVE_INFINITY }
      for (const variant of ['raw', 'lifeline', 'lifeline', 'raw'] as const) {
        if (variant === 'raw') rawMs = Math.min(rawMs, await rawConsume(ctx.brokers, topic, partitionRecords, { group: 'bench-scale-raw' }))
        else {
          const r = await lifelineRun(ctx.brokers, topic, partitionRecords, { ordering: 'key', concurrency: 32, async: false })
          if (r.ms < life.ms) life = r
        }
      }
      partRaw.push([p, round(perSecond(partitionRecords, rawMs))])
      partLife.push([p, round(perSecond(partitionRecords, life.ms))])
      metrics[`partitions_${p}_raw_rps`] = round(perSecond(partitionRecords, rawMs))
      metrics[`partitions_${p}_lifeline_rps`] = round(perSecond(partitionRecords, life.ms))
      metrics[`partitions_${p}_ratio`] = round(rawMs / life.ms, 3)
      summary.push(`partitions ${p}: raw ${Math.round(perSecond(partitionRecords, rawMs))} rec/s, Lifeline ${Math.round(perSecond(partitionRecords, life.ms))} rec/s (ratio ${(rawMs / life.ms).toFixed(3)})`)
    }

    const curves: Curve[] = [
      {
        id: 'keys-throughput',
        title: 'Throughput vs distinct keys (ordering: key)',
        x: { label: 'distinct keys', log: true },
        y: { label: 'records/s' },
        series: [{ name: 'Lifeline, async handler, concurrency 256', points: keysRps }],
        note: 'One backlog per point (3 partitions, the same number of records at every point), consumed from the first record to the last.',
      },
      {
        id: 'keys-heap',
        title: 'Peak heap vs distinct keys (ordering: key)',
        x: { label: 'distinct keys', log: true },
        y: { label: 'peak heap used (MB)' },
        series: [{ name: 'Lifeline', points: keysHeap }],
        note: 'Sampled every 50 ms while consuming; buffers are bounded per partition, so keys beyond them cost no memory.',
      },
      {
        id: 'parked-release',
        title: 'Release time vs records parked behind one key',
        x: { label: 'records parked behind the key', log: true },
        y: { label: 'release time (ms)', log: true },
        series: [{ name: 'release → last record applied', points: releaseMs }],
        note: 'The key is released through the state store; its stored records are replayed in order, page by page.',
      },
      {
        id: 'parked-rss',
        title: 'Peak RSS during a release vs records parked behind one key',
        x: { label: 'records parked behind the key', log: true },
        y: { label: 'peak RSS (MB)' },
        series: [{ name: 'Lifeline process', points: releaseRss }],
        note: 'Streamed from the database: memory must not grow with the number of records.',
      },
      {
        id: 'partitions-throughput',
        title: 'Throughput vs partitions assigned (no-op handler)',
        x: { label: 'partitions', log: true },
        y: { label: 'records/s' },
        series: [
          { name: 'raw client', points: partRaw },
          { name: 'Lifeline', points: partLife },
        ],
        note: `${partitionRecords} records per point, one member owning every partition.`,
      },
    ]
    const lastKeys = keyPoints.at(-1)!
    const firstKeys = keyPoints[0]!
    return {
      params: {
        key_points: keyPoints.join(' / '),
        key_point_records: keyRecordCount,
        parked_points: parkedPoints.join(' / '),
        partition_points: partitionPoints.join(' / '),
        partition_records: partitionRecords,
        value_bytes: VALUE.length,
        state_database: process.env.DATABASE_URL ? 'PostgreSQL server' : 'PGlite',
        method: 'keys and parked: one run per point; partitions: two rounds alternating, best of each; throughput from the first record to the last; memory sampled every 50 ms (after a GC when --expose-gc)',
      },
      metrics,
      baseline: { [`keys_${firstKeys}_rps`]: metrics[`keys_${firstKeys}_rps`] as number },
      headline: { metric: `keys_${lastKeys}_rps`, baseline: `keys_${firstKeys}_rps` },
      goal: `throughput at ${lastKeys} distinct keys / at ${firstKeys} keys ≥ 0.8 (cost per record independent of the key count)`,
      target: { minRatio: 0.8 },
      checks: [
        { goal: `peak heap at ${lastKeys} keys ≤ 1.5 × at ${firstKeys} keys`, metric: `keys_${lastKeys}_peak_heap_mb`, baseline: `keys_${firstKeys}_peak_heap_mb`, max: 1.5 },
        { goal: `peak RSS releasing ${parkedPoints.at(-1)} parked records ≤ 1.5 × releasing ${parkedPoints[0]}`, metric: `parked_${parkedPoints.at(-1)}_release_peak_rss_mb`, baseline: `parked_${parkedPoints[0]}_release_peak_rss_mb`, max: 1.5 },
        { goal: `Lifeline / raw at ${partitionPoints.at(-1)} partitions ≥ 0.8`, metric: `partitions_${partitionPoints.at(-1)}_ratio`, min: 0.8 },
      ],
      curves,
      summary,
    }
  } finally {
    if (created.length > 0) await admin.deleteTopics(created).catch(() => undefined)
    await producer.close()
    await admin.close()
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
