/**
 * `runtime`: what the Lifeline consumer costs and what it buys, in one run.
 *
 * 1. Overhead: the raw client consumer (poll loop, commit every second) vs the Lifeline consumer with a
 *    no-op handler, on the same topic (3 partitions), each with a fresh group. Throughput is measured from
 *    the first record received to the last, so group-join time is not counted for either. Rounds alternate
 *    which side runs first; each figure is the best round's. Headline: lifeline_rps / raw_rps (goal ≥ 0.95).
 * 2. Key-ordered concurrency: 1 partition, records over many keys, a 5 ms async handler. Lifeline with
 *    `ordering: 'key'` and concurrency 100 vs partition-sequential processing (a raw poll loop awaiting
 *    each handler in turn, what a bare consumer does). Goal ≥ 50x speedup; the limit is 100x
 *    (concurrency 100). Latency is max(record timestamp, run start) → handler end; peak RSS is sampled every 50 ms.
 *
 * @module
 */
import { context as otelContext, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../src/kafka/index.js'
import { createConsumer } from '../src/runtime/consumer.js'
import { memorySampler } from './lib/memory.js'
import { rawConsume } from './lib/raw-consume.js'
import { round } from './lib/results.js'
import { fill as fillTopic, suffix } from './lib/topics.js'
import { percentile, perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'

const VALUE = Buffer.alloc(256, 'x')
const HANDLER_MS = 5
const CONCURRENCY = 100

/** Lifeline with a no-op handler; ms from the first record handled to the last. */
async function lifelineConsume(brokers: string[], topic: string, count: number, tracing = true): Promise<number> {
  let seen = 0
  let first = 0
  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const consumer = createConsumer({
    brokers,
    groupId: `bench-lifeline-${suffix()}`,
    service: 'bench',
    topics: [topic],
    decoder: 'raw',
    tracing,
    handler: () => {
      if (seen === 0) first = performance.now()
      if (++seen === count) resolveDone()
    },
  })
  await consumer.start()
  try {
    await done
    return performance.now() - first
  } finally {
    await consumer.close()
  }
}

/**
 * Runs `fn` with an OpenTelemetry SDK registered as a production setup does (an AsyncLocalStorage context
 * manager, a BatchSpanProcessor) whose exporter drops every span.
 */
async function withTracingSdk<T>(fn: () => Promise<T>): Promise<T> {
  const exporter = { export: (_spans: unknown, done: (r: { code: number }) => void) => done({ code: 0 }), shutdown: async () => undefined }
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 65_536, maxExportBatchSize: 4096 })] })
  const contextManager = new AsyncLocalStorageContextManager().enable()
  otelContext.setGlobalContextManager(contextManager)
  trace.setGlobalTracerProvider(provider)
  try {
    return await fn()
  } finally {
    trace.disable()
    otelContext.disable()
    await provider.shutdown()
  }
}

/**
 * The SDK's own cost of one span as the runtime makes it (8 attributes, a context made current around a
 * call, ended), with no Lifeline and no Kafka: µs per span, median of 5 rounds of 100k. It bounds the
 * traced/untraced ratio of a no-op handler at rps_untraced⁻¹ / (rps_untraced⁻¹ + span cost).
 */
async function bareSpanMicros(): Promise<number> {
  return withTracingSdk(async () => {
    const tracer = trace.getTracer('bench')
    const noop = () => undefined
    const perRound: number[] = []
    for (let round_ = 0; round_ < 6; round_++) {
      const n = 100_000
      const started = performance.now()
      for (let i = 0; i < n; i++) {
        const span = tracer.startSpan('process bench', {
          kind: 4,
          attributes: { 'messaging.system': 'kafka', 'messaging.operation.type': 'process', 'messaging.operation.name': 'process', 'messaging.destination.name': 'bench', 'messaging.destination.partition.id': '0', 'messaging.kafka.offset': i, 'messaging.kafka.message.key': 'k1', 'messaging.consumer.group.name': 'g' },
        })
        otelContext.with(trace.setSpan(otelContext.active(), span), noop)
        span.end()
      }
      if (round_ > 0) perRound.push(((performance.now() - started) * 1000) / n) // the first round warms up
      await new Promise((r) => setImmediate(r))
    }
    return percentile(perRound, 50) ?? Number.NaN
  })
}

interface KeyedRun {
  ms: number
  latencies: number[]
  peakRss: number
  orderViolations: number
}

/** Per-key order check shared by both runs: a key's sequence numbers must arrive increasing. */
function orderChecker() {
  const last = new Map<string, number>()
  let violations = 0
  return {
    see(key: string, seq: number) {
      if ((last.get(key) ?? -1) >= seq) violations++
      last.set(key, seq)
    },
    violations: () => violations,
  }
}

async function keyedLifeline(brokers: string[], topic: string, count: number): Promise<KeyedRun> {
  const latencies: number[] = []
  const order = orderChecker()
  let seen = 0
  let first = 0
  let resolveDone!: () => void
  const done = new Promise<void>((r) => (resolveDone = r))
  const consumer = createConsumer<{ k: string; s: number }>({
    brokers,
    groupId: `bench-keyed-${suffix()}`,
    service: 'bench',
    topics: [topic],
    ordering: 'key',
    concurrency: CONCURRENCY,
    handler: async ({ value, timestamp }) => {
      if (first === 0) first = performance.now()
      await new Promise((r) => setTimeout(r, HANDLER_MS))
      order.see(value.k, value.s)
      latencies.push(Date.now() - Math.max(timestamp, runStart))
      if (++seen === count) resolveDone()
    },
  })
  const rss = memorySampler()
  const runStart = Date.now()
  await consumer.start()
  try {
    await done
    return { ms: performance.now() - first, latencies, peakRss: rss.stop().rss, orderViolations: order.violations() }
  } finally {
    rss.stop()
    await consumer.close()
  }
}

async function sequentialRaw(brokers: string[], topic: string, count: number): Promise<KeyedRun> {
  const latencies: number[] = []
  const order = orderChecker()
  const consumer = createKafkaConsumer({ brokers, groupId: `bench-seq-${suffix()}` })
  consumer.subscribe([topic])
  const rss = memorySampler()
  const runStart = Date.now()
  let seen = 0
  let first = 0
  try {
    while (seen < count) {
      const records = await consumer.poll(500, 100)
      for (const r of records) {
        if (first === 0) first = performance.now()
        const value = JSON.parse(r.value!.toString()) as { k: string; s: number }
        await new Promise((res) => setTimeout(res, HANDLER_MS))
        order.see(value.k, value.s)
        latencies.push(Date.now() - Math.max(r.timestamp, runStart))
        seen++
      }
      if (records.length > 0) await consumer.commit([{ topic, partition: 0, offset: records.at(-1)!.offset + 1 }])
    }
    return { ms: performance.now() - first, latencies, peakRss: rss.stop().rss, orderViolations: order.violations() }
  } finally {
    rss.stop()
    await consumer.close()
  }
}

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const overheadRecords = ctx.quick ? 60_000 : 200_000
  const rounds = ctx.quick ? 2 : 3
  const keyedRecords = ctx.quick ? 3_000 : 10_000
  const keys = ctx.quick ? 300 : 1_000
  const admin = createAdmin({ brokers: ctx.brokers })
  const producer = createProducer({ brokers: ctx.brokers })
  const created: string[] = []
  try {
    // Part 1: overhead.
    const overheadTopic = `bench-runtime-${suffix()}`
    await admin.createTopics([{ topic: overheadTopic, partitions: 3 }])
    created.push(overheadTopic)
    ctx.logger.info({ records: overheadRecords }, 'filling the overhead topic')
    await fillTopic(producer, overheadTopic, overheadRecords, (i) => `k${i % 10_000}`, () => VALUE)
    // Four runs per round, their order rotated each round: the raw client; Lifeline as shipped (no SDK
    // registered: it makes no span); Lifeline with `tracing: false` (the baseline of both tracing rows); and
    // Lifeline with an SDK registered (every span made, batched, dropped by the exporter).
    const raw: number[] = []
    const life: number[] = []
    const off: number[] = []
    const traced: number[] = []
    for (let round_ = 0; round_ < rounds && !ctx.signal.aborted; round_++) {
      const sides = [
        async () => raw.push(perSecond(overheadRecords, await rawConsume(ctx.brokers, overheadTopic, overheadRecords, { group: 'bench-raw', commitEveryMs: 1000 }))),
        async () => life.push(perSecond(overheadRecords, await lifelineConsume(ctx.brokers, overheadTopic, overheadRecords))),
        async () => off.push(perSecond(overheadRecords, await lifelineConsume(ctx.brokers, overheadTopic, overheadRecords, false))),
        async () => traced.push(perSecond(overheadRecords, await withTracingSdk(() => lifelineConsume(ctx.brokers, overheadTopic, overheadRecords)))),
      ]
      for (let i = 0; i < sides.length; i++) await sides[(i + round_) % sides.length]!()
      ctx.logger.info({ round: round_ + 1, raw_rps: Math.round(raw.at(-1)!), lifeline_rps: Math.round(life.at(-1)!), tracing_off_rps: Math.round(off.at(-1)!), tracing_sdk_rps: Math.round(traced.at(-1)!) }, 'overhead round')
    }
    const rawRps = Math.max(...raw)
    const lifelineRps = Math.max(...life)
    const offRps = Math.max(...off)
    const tracedRps = Math.max(...traced)
    const spanUs = await bareSpanMicros()
    const tracingBound = 1e6 / offRps / (1e6 / offRps + spanUs)

    // Part 2: key-ordered concurrency on one partition.
    const keyedTopic = `bench-keyed-${suffix()}`
    await admin.createTopics([{ topic: keyedTopic, partitions: 1 }])
    created.push(keyedTopic)
    await fillTopic(producer, keyedTopic, keyedRecords, (i) => `key-${i % keys}`, (i) => Buffer.from(JSON.stringify({ k: `key-${i % keys}`, s: Math.floor(i / keys) })))
    ctx.logger.info({ records: keyedRecords, keys }, 'key-ordered Lifeline run')
    const keyed = await keyedLifeline(ctx.brokers, keyedTopic, keyedRecords)
    ctx.logger.info('key-ordered Lifeline run with a tracing SDK')
    const keyedTraced = await withTracingSdk(() => keyedLifeline(ctx.brokers, keyedTopic, keyedRecords))
    ctx.logger.info('partition-sequential run')
    const sequential = await sequentialRaw(ctx.brokers, keyedTopic, keyedRecords)
    const speedup = sequential.ms / keyed.ms
    const mb = (n: number) => round(n / 2 ** 20, 1)

    return {
      params: {
        overhead_records: overheadRecords,
        overhead_partitions: 3,
        value_bytes: VALUE.length,
        rounds,
        keyed_records: keyedRecords,
        keyed_keys: keys,
        keyed_partitions: 1,
        handler_ms: HANDLER_MS,
        concurrency: CONCURRENCY,
        method: 'throughput from the first record to the last (group join excluded); best of rounds, alternating order; sequential baseline = raw poll loop awaiting each handler',
      },
      metrics: {
        raw_rps: round(rawRps),
        lifeline_rps: round(lifelineRps),
        raw_rps_rounds: raw.map((v) => Math.round(v)).join(' / '),
        lifeline_rps_rounds: life.map((v) => Math.round(v)).join(' / '),
        overhead_ratio: round(lifelineRps / rawRps, 3),
        tracing_off_rps: round(offRps),
        tracing_off_rps_rounds: off.map((v) => Math.round(v)).join(' / '),
        tracing_sdk_rps: round(tracedRps),
        tracing_sdk_rps_rounds: traced.map((v) => Math.round(v)).join(' / '),
        tracing_sdk_ratio: round(tracedRps / offRps, 3),
        tracing_nosdk_ratio: round(lifelineRps / offRps, 3),
        sdk_bare_span_us: round(spanUs, 2),
        tracing_sdk_ratio_bound: round(tracingBound, 3),
        keyed_traced_ms: round(keyedTraced.ms),
        keyed_tracing_ratio: round(keyed.ms / keyedTraced.ms, 3),
        keyed_ms: round(keyed.ms),
        keyed_rps: round(perSecond(keyedRecords, keyed.ms)),
        keyed_p50_latency_ms: percentile(keyed.latencies, 50),
        keyed_p99_latency_ms: percentile(keyed.latencies, 99),
        keyed_peak_rss_mb: mb(keyed.peakRss),
        keyed_order_violations: keyed.orderViolations,
        sequential_ms: round(sequential.ms),
        sequential_rps: round(perSecond(keyedRecords, sequential.ms)),
        sequential_p50_latency_ms: percentile(sequential.latencies, 50),
        sequential_p99_latency_ms: percentile(sequential.latencies, 99),
        sequential_peak_rss_mb: mb(sequential.peakRss),
        sequential_order_violations: sequential.orderViolations,
        keyed_speedup: round(speedup, 1),
      },
      baseline: { raw_rps: round(rawRps) },
      headline: { metric: 'lifeline_rps', baseline: 'raw_rps' },
      goal: 'lifeline_rps / raw_rps ≥ 0.95 (no-op handler, 3 partitions)',
      target: { minRatio: 0.95 },
      checks: [
        { goal: 'key-ordered speedup over a sequential partition loop ≥ 85x (limit 100x: concurrency 100)', metric: 'keyed_speedup', min: 85 },
        { goal: 'key-ordered run: no order violation', metric: 'keyed_order_violations', max: 0 },
        { goal: 'tracing with an SDK (no-op handler) / tracing: false ≥ 0.9', metric: 'tracing_sdk_rps', baseline: 'tracing_off_rps', min: 0.9 },
        { goal: 'tracing without an SDK / tracing: false ≥ 0.99', metric: 'lifeline_rps', baseline: 'tracing_off_rps', min: 0.99 },
        { goal: 'tracing with an SDK, key-ordered 5 ms handlers: untraced time / traced time ≥ 0.9', metric: 'keyed_tracing_ratio', min: 0.9 },
      ],
      summary: [
        `overhead: raw ${Math.round(rawRps)} rec/s, Lifeline no-op ${Math.round(lifelineRps)} rec/s → ratio ${(lifelineRps / rawRps).toFixed(3)} (goal ≥ 0.95)`,
        `tracing: with an SDK (spans made, batched, dropped) ${Math.round(tracedRps)} rec/s vs tracing: false ${Math.round(offRps)} rec/s → ratio ${(tracedRps / offRps).toFixed(3)} (goal ≥ 0.9; the SDK alone costs ${spanUs.toFixed(2)} µs per span, which bounds it at ${tracingBound.toFixed(3)}); without an SDK ${(lifelineRps / offRps).toFixed(3)} (goal ≥ 0.99); key-ordered 5 ms handlers traced ${(keyed.ms / keyedTraced.ms).toFixed(3)}`,
        `key-ordered (1 partition, ${keyedRecords} records, ${keys} keys, ${HANDLER_MS} ms handler, concurrency ${CONCURRENCY}): ${Math.round(keyed.ms)} ms vs sequential ${Math.round(sequential.ms)} ms → ${speedup.toFixed(1)}x (goal ≥ 85x)`,
        `latency p50/p99: keyed ${percentile(keyed.latencies, 50)}/${percentile(keyed.latencies, 99)} ms, sequential ${percentile(sequential.latencies, 50)}/${percentile(sequential.latencies, 99)} ms; peak RSS ${mb(keyed.peakRss)} MB; order violations ${keyed.orderViolations}/${sequential.orderViolations}`,
      ],
    }
  } finally {
    if (created.length > 0) await admin.deleteTopics(created)
    await producer.close()
    await admin.close()
  }
}
