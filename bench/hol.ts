/**
 * `hol`: head-of-line blocking under poison records, in one run, on the same broker.
 *
 * The same backlog (3 partitions, 1,000 healthy keys, a 1 ms async handler, concurrency 32) is consumed
 * four times, each by a fresh group:
 * 1. baseline: no record fails;
 * 1b. ceiling: no record fails, and a poison record's handler takes the time of its three attempts (source,
 *    tier 1, tier 2): the healthy throughput a failure path costing nothing would leave;
 * 2. tiers: 1% of the records (each on a key of its own) always fail with a retriable error; Lifeline moves
 *    them to retry tiers (1 s, 2 s) and then the DLQ, parking their keys in the state database, while the
 *    partitions flow on;
 * 3. blocking: the same poison with in-place retries of 1 s, 2 s, 4 s holding the partition
 *    (`ordering: 'partition'`), the behaviour many frameworks default to. It is capped at `capMs`: it
 *    cannot finish in reasonable time, and its throughput is what it achieved until the cap.
 *
 * Baseline, ceiling and tiers run `rounds` times in alternating order (best round each: the machine is shared and noisy).
 * Healthy throughput = healthy records handled / (last healthy handled − first record handled). Healthy
 * latency = handler end − the moment the consumer handled its first record (the backlog was produced
 * before, so this is how long a healthy record waited in this run). Headline: tiers healthy throughput /
 * baseline healthy throughput (goal ≥ 0.97).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAdmin, createProducer } from '../src/kafka/index.js'
import type { KafkaProducer, ProduceRecord } from '../src/kafka/index.js'
import { createConsumer } from '../src/runtime/consumer.js'
import type { ConsumerOptions } from '../src/runtime/options.js'
import { openDatabase } from '../src/store/index.js'
import { postgresDefaults } from '../src/store/postgres-defaults.js'
import { benchDatabase } from './lib/database.js'
import type { SqlExecutor } from '../src/store/index.js'
import { round } from './lib/results.js'
import { percentile, perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'
import { suffix } from './lib/topics.js'

export const PARTITIONS = 3
const HEALTHY_KEYS = 1000
export const POISON_EVERY = 100 // 1%
export const CONCURRENCY = 32

/**
 * The ceiling variant's poison record: after the 1 ms every record's handler takes, the time of its two
 * further attempts (tier 1, tier 2) as handler time, without a failure.
 */
export async function ceilingAttempts(): Promise<void> {
  await sleep(1)
  await sleep(1)
}

/** A poison record's key: `p-<n>`, a key of its own. */
export const isPoison = (key: Buffer | null): boolean => key !== null && key[0] === 0x70 /* 'p' */

/** The backlog: `total` records of 256 bytes, every POISON_EVERY-th on a poison key of its own, the rest over HEALTHY_KEYS keys. */
export async function produceBacklog(producer: KafkaProducer, topic: string, total: number): Promise<void> {
  const value = Buffer.alloc(256, 'x')
  for (let i = 0; i < total; i += 2000) {
    const records: ProduceRecord[] = []
    for (let j = i; j < Math.min(total, i + 2000); j++) records.push({ topic, key: j % POISON_EVERY === 50 ? `p-${j}` : `k-${j % HEALTHY_KEYS}`, value })
    await producer.send(records)
  }
}


interface Run {
  healthy: number
  healthyDone: number
  rps: number
  p50: number | null
  p99: number | null
  wallMs: number
  finished: boolean
  movedToTier: number
  deadLettered: number
}

async function consume(ctx: BenchContext, topic: string, total: number, variant: 'baseline' | 'ceiling' | 'tiers' | 'blocking', db: SqlExecutor | undefined, capMs: number): Promise<Run> {
  const healthy = total - Math.floor(total / POISON_EVERY)
  const latencies: number[] = []
  let first = 0
  let last = 0
  let movedToTier = 0
  let deadLettered = 0
  const poisonOn = variant === 'tiers' || variant === 'blocking'
  const options: ConsumerOptions<Buffer> = {
    brokers: ctx.brokers,
    groupId: `bench-hol-${variant}-${suffix()}`,
    service: `hol${variant}`,
    topics: [topic],
    decoder: 'raw',
    concurrency: CONCURRENCY,
    handler: async ({ key }) => {
      if (first === 0) first = performance.now()
      await sleep(1)
      if (variant === 'ceiling' && isPoison(key)) return ceilingAttempts()
      if (poisonOn && isPoison(key)) throw new Error('poison: the downstream rejects this record')
      const now = performance.now()
      latencies.push(now - first)
      last = now
    },
  }
  if (variant === 'tiers') Object.assign(options, { retry: { maxAttempts: 1 }, retryTopics: { delaysMs: [1000, 2000] }, state: db, ordering: 'key' })
  if (variant === 'blocking') {
    const delays = [1000, 2000, 4000]
    Object.assign(options, { ordering: 'partition', retry: { maxAttempts: 4, backoff: (attempt: number) => delays[attempt - 1] ?? 4000 } })
  }
  if (variant === 'baseline' || variant === 'ceiling') Object.assign(options, { ordering: 'key' })
  const consumer = createConsumer(options)
  consumer.on('retry-tier', () => movedToTier++)
  consumer.on('dead-letter', () => deadLettered++)
  const started = performance.now()
  await consumer.start()
  try {
    while (latencies.length < healthy && performance.now() - started < capMs && !ctx.signal.aborted) await sleep(20)
  } finally {
    await consumer.close()
  }
  const finished = latencies.length >= healthy
  const elapsed = (finished ? last : performance.now()) - first
  ctx.logger.info({ variant, healthyDone: latencies.length, healthy, finished, elapsedMs: Math.round(elapsed) }, 'hol variant done')
  return {
    healthy,
    healthyDone: latencies.length,
    rps: perSecond(latencies.length, elapsed),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    wallMs: performance.now() - started,
    finished,
    movedToTier,
    deadLettered,
  }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const total = ctx.quick ? 9_000 : 300_000
  const capMs = ctx.quick ? 20_000 : 45_000
  const rounds = ctx.quick ? 2 : 3
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  const topic = `bench-hol-${suffix()}`
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-bench-hol-'))
  // As a user's compiled build runs (Node maps error stacks only with --enable-source-maps): tsx, which runs
  // the benches, turns the maps on, and a mapped stack costs a failure path ~60 µs of main-thread time.
  const sourceMaps = process.sourceMapsEnabled
  process.setSourceMapsEnabled(false)
  const server = process.env.DATABASE_URL ? await benchDatabase('lifeline_bench_hol', postgresDefaults.poolSize) : undefined
  const db = server?.db ?? (await openDatabase({ dataDir: join(dir, 'db') }))
  try {
    await admin.createTopics([{ topic, partitions: PARTITIONS }])
    await producer.connect()
    await produceBacklog(producer, topic, total)
    ctx.logger.info({ topic, total }, 'backlog produced')
    // Baseline, ceiling and tiers run in an order that reverses every round; each keeps its best round.
    const best = (a: Run | undefined, b: Run) => (a === undefined || b.rps > a.rps ? b : a)
    let baseline: Run | undefined
    let ceiling: Run | undefined
    let tiers: Run | undefined
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['baseline', 'ceiling', 'tiers'] as const) : (['tiers', 'ceiling', 'baseline'] as const)
      for (const variant of order) {
        if (variant === 'baseline') baseline = best(baseline, await consume(ctx, topic, total, 'baseline', undefined, capMs * 4))
        else if (variant === 'ceiling') ceiling = best(ceiling, await consume(ctx, topic, total, 'ceiling', undefined, capMs * 4))
        else tiers = best(tiers, await consume(ctx, topic, total, 'tiers', db, capMs * 4))
      }
    }
    if (!baseline || !ceiling || !tiers) throw new Error('no round ran')
    const blocking = await consume(ctx, topic, total, 'blocking', undefined, capMs)
    const ms = (v: number | null) => (v === null ? null : round(v, 1))
    return {
      params: {
        records: total,
        partitions: PARTITIONS,
        healthy_keys: HEALTHY_KEYS,
        poison_fraction: 1 / POISON_EVERY,
        handler: '1 ms async sleep',
        concurrency: CONCURRENCY,
        tiers: '1 s, 2 s then DLQ (in-place attempts 1)',
        blocking: 'in-place retries 1 s, 2 s, 4 s, ordering partition',
        blocking_cap_ms: capMs,
        ceiling: 'no failure; a poison record takes its three attempts\' handler time (3 x 1 ms) in one',
        rounds: `${rounds} (baseline, ceiling and tiers; the order reverses every round; best round each)`,
        error_stacks: 'unmapped (source maps off, as in a compiled build)',
        state_database: db.kind,
      },
      metrics: {
        baseline_healthy_rps: round(baseline.rps),
        tiers_healthy_rps: round(tiers.rps),
        ceiling_healthy_rps: round(ceiling.rps),
        ceiling_vs_baseline_ratio: round(ceiling.rps / baseline.rps, 3),
        tiers_vs_ceiling_ratio: round(tiers.rps / ceiling.rps, 3),
        blocking_healthy_rps: round(blocking.rps),
        blocking_vs_baseline_ratio: round(blocking.rps / baseline.rps, 3),
        baseline_healthy_p50_ms: ms(baseline.p50),
        baseline_healthy_p99_ms: ms(baseline.p99),
        tiers_healthy_p50_ms: ms(tiers.p50),
        tiers_healthy_p99_ms: ms(tiers.p99),
        blocking_healthy_p50_ms: ms(blocking.p50),
        blocking_healthy_p99_ms: ms(blocking.p99),
        tiers_moved_to_tier: tiers.movedToTier,
        tiers_dead_lettered: tiers.deadLettered,
        blocking_healthy_done: blocking.healthyDone,
        blocking_finished: blocking.finished ? 'yes' : `no (${blocking.healthyDone}/${blocking.healthy} healthy records within the cap)`,
      },
      baseline: { baseline_healthy_rps: round(baseline.rps) },
      headline: { metric: 'tiers_healthy_rps', baseline: 'baseline_healthy_rps' },
      goal: 'ratio ≥ 0.97 (healthy throughput with 1% poison and retry tiers / no failures)',
      target: { minRatio: 0.97 },
      summary: [
        `healthy records/s: baseline ${round(baseline.rps)}, 1% poison with retry tiers ${round(tiers.rps)} (ratio ${round(tiers.rps / baseline.rps, 3)}), blocking in-place retries ${round(blocking.rps)} (ratio ${round(blocking.rps / baseline.rps, 3)}${blocking.finished ? '' : `, capped at ${capMs / 1000} s`})`,
        `ceiling (the poison records' handler time without failures) ${round(ceiling.rps)} healthy records/s: tiers / ceiling ${round(tiers.rps / ceiling.rps, 3)}`,
        `healthy p99 wait: baseline ${ms(baseline.p99)} ms, tiers ${ms(tiers.p99)} ms, blocking ${ms(blocking.p99)} ms`,
        `tiers: ${tiers.movedToTier} moves to a retry tier, ${tiers.deadLettered} dead-lettered; blocking dead-lettered ${blocking.deadLettered}`,
      ],
    }
  } finally {
    await producer.close()
    await admin.deleteTopics([topic]).catch(() => undefined)
    await admin.close()
    // A fresh database per run, dropped after it: state left on a shared one makes every later run pay
    // for larger tables (twenty runs had left ~400 MB of parked keys, most of them dead versions).
    await (server ? server.drop() : db.close())
    process.setSourceMapsEnabled(sourceMaps)
    rmSync(dir, { recursive: true, force: true })
  }
}
