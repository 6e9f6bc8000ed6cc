/**
 * `client`: the raw Node client (Lifeline's `src/kafka`, librdkafka underneath) against Kafka's own Java
 * perf tools on the same broker, same record size and count. Informational: it tells how much of the
 * Java client's throughput the Node client reaches on this machine, before any Lifeline runtime cost.
 *
 * Steps run one after the other, never concurrently (the broker and the clients share two cores):
 * 1. Node produce, pipelined: `send()` batches of {@link SEND_BATCH} records with at most {@link SEND_WINDOW}
 *    batches unacknowledged, after a warm-up of 10 % of the count (connection, metadata, producer id, JIT).
 * 2. Node produce, serial: the same batches, each awaited before the next (what a naive loop gets).
 * 3. Java `ProducerPerformance`, same settings, `--warmup-records` = the same 10 %: its steady-state line;
 *    then once more with `batch.size` raised to librdkafka's default, so the batching differs no more.
 * 4. Node consume of the Java topic with a fresh group, `poll()` loop until the count is read.
 * 5. Java `ConsumerPerformance` of the same topic with another fresh group.
 *
 * @module
 */
import { randomBytes, randomInt } from 'node:crypto'
import { LifelineError } from '../src/errors.js'
import { clientVersion, createAdmin, createConsumer, createProducer } from '../src/kafka/index.js'
import type { KafkaAdmin, KafkaProducer, ProduceRecord } from '../src/kafka/index.js'
import { CONSUMER_PERFORMANCE, parseConsumerPerformance, parseProducerPerformance, PRODUCER_PERFORMANCE, runJavaTool, type ProducerSummary } from './lib/java-perf.js'
import { fmt, round } from './lib/results.js'
import { MB, percentile, perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'

const RECORD_SIZE = 512
const PARTITIONS = 3
const FULL_RECORDS = 200_000
const QUICK_RECORDS = 50_000
/** Records per `send()` call. */
const SEND_BATCH = 1_000
/**
 * Unacknowledged `send()` calls allowed at once: 16 × 1,000 × 512 B = 8 MiB in flight, below the Java
 * producer's 32 MiB `buffer.memory`. Batches of 1,000/5,000/10,000 with windows of 16/4/2 measured within
 * noise of each other here; all beat awaiting each batch.
 */
const SEND_WINDOW = 16
const POLL_MAX = 10_000
const POLL_TIMEOUT_MS = 100
const JAVA_HEAP_MB = 512
const CONSUME_TIMEOUT_MS = 120_000
const PRODUCER_PROPS = ['acks=all', 'linger.ms=5', 'enable.idempotence=true']
/** librdkafka's default batch.size, for a second Java run that batches like the Node client does. */
const MATCHED_BATCH_PROP = 'batch.size=1000000'

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const records = ctx.quick ? QUICK_RECORDS : FULL_RECORDS
  const warmup = records / 10
  const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`
  const nodeTopic = `bench-client-node-${suffix}`
  const javaTopic = `bench-client-java-${suffix}`
  const javaBatchTopic = `bench-client-java-batch-${suffix}`
  const topics = [nodeTopic, javaTopic, javaBatchTopic]
  const bootstrap = ctx.brokers.join(',')
  // Random A–Z bytes, as ProducerPerformance's --record-size payload; one buffer reused, as the tool does.
  const value = Buffer.from(Array.from({ length: RECORD_SIZE }, () => 65 + randomInt(26)))

  const admin = createAdmin({ brokers: ctx.brokers })
  try {
    await admin.createTopics(topics.map((topic) => ({ topic, partitions: PARTITIONS })))

    ctx.logger.info({ topic: nodeTopic, records, warmup }, 'node produce')
    const producer = createProducer({ brokers: ctx.brokers, idempotent: true, lingerMs: 5 })
    let pipelined: ProduceRun
    let serial: ProduceRun
    try {
      await produce(producer, nodeTopic, value, warmup, SEND_WINDOW, ctx.signal)
      pipelined = await produce(producer, nodeTopic, value, records, SEND_WINDOW, ctx.signal)
      serial = await produce(producer, nodeTopic, value, records, 1, ctx.signal)
    } finally {
      await producer.close()
    }
    await expectRecords(admin, nodeTopic, warmup + 2 * records)

    ctx.logger.info({ topic: javaTopic, records, warmup }, 'java produce (ProducerPerformance)')
    const javaProduce = await javaProducePerf(ctx, javaTopic, records, warmup, PRODUCER_PROPS)
    await expectRecords(admin, javaTopic, records + warmup)
    ctx.logger.info({ topic: javaBatchTopic, records, warmup }, `java produce (ProducerPerformance, ${MATCHED_BATCH_PROP})`)
    const javaMatched = await javaProducePerf(ctx, javaBatchTopic, records, warmup, [...PRODUCER_PROPS, MATCHED_BATCH_PROP])

    ctx.logger.info({ topic: javaTopic, records }, 'node consume')
    const nodeConsume = await consume(ctx, javaTopic, records)

    ctx.logger.info({ topic: javaTopic, records }, 'java consume (ConsumerPerformance)')
    const javaConsumeRun = await runJavaTool(
      CONSUMER_PERFORMANCE,
      ['--bootstrap-server', bootstrap, '--topic', javaTopic, '--num-records', String(records), '--timeout', '60000',
        '--group', `${javaTopic}-java`, '--command-property', 'isolation.level=read_committed'],
      { heapMb: JAVA_HEAP_MB, signal: ctx.signal },
    )
    const javaConsume = parseConsumerPerformance(javaConsumeRun.stdout)

    const bytes = records * RECORD_SIZE
    const nodeProduceRps = perSecond(records, pipelined.ms)
    const nodeConsumeRps = perSecond(nodeConsume.records, nodeConsume.fetchMs)
    const metrics = {
      node_produce_rps: round(nodeProduceRps),
      node_produce_mb_s: round(perSecond(bytes, pipelined.ms) / MB, 2),
      node_produce_ms: round(pipelined.ms),
      node_produce_batch_ack_p50_ms: round(percentile(pipelined.batchMs, 50) ?? 0, 1),
      node_produce_batch_ack_p99_ms: round(percentile(pipelined.batchMs, 99) ?? 0, 1),
      node_produce_batch_ack_max_ms: round(percentile(pipelined.batchMs, 100) ?? 0, 1),
      node_produce_serial_rps: round(perSecond(records, serial.ms)),
      node_produce_serial_batch_ack_p50_ms: round(percentile(serial.batchMs, 50) ?? 0, 1),
      java_produce_rps: round(javaProduce.steady.recordsPerSec),
      java_produce_mb_s: round(javaProduce.steady.mbPerSec, 2),
      java_produce_avg_latency_ms: javaProduce.steady.avgLatencyMs,
      java_produce_p50_ms: javaProduce.steady.p50Ms,
      java_produce_p95_ms: javaProduce.steady.p95Ms,
      java_produce_p99_ms: javaProduce.steady.p99Ms,
      java_produce_p999_ms: javaProduce.steady.p999Ms,
      java_produce_max_latency_ms: javaProduce.steady.maxLatencyMs,
      java_produce_with_warmup_rps: round(javaProduce.total.recordsPerSec),
      java_produce_wall_ms: round(javaProduce.wallMs),
      java_produce_batch1m_rps: round(javaMatched.steady.recordsPerSec),
      java_produce_batch1m_mb_s: round(javaMatched.steady.mbPerSec, 2),
      java_produce_batch1m_p50_ms: javaMatched.steady.p50Ms,
      java_produce_batch1m_p99_ms: javaMatched.steady.p99Ms,
      node_consume_rps: round(nodeConsumeRps),
      node_consume_mb_s: round(perSecond(nodeConsume.bytes, nodeConsume.fetchMs) / MB, 2),
      node_consume_with_join_rps: round(perSecond(nodeConsume.records, nodeConsume.totalMs)),
      node_consume_join_ms: round(nodeConsume.totalMs - nodeConsume.fetchMs),
      java_consume_rps: round(javaConsume.fetchRecordsPerSec),
      java_consume_mb_s: round(javaConsume.fetchMbPerSec, 2),
      java_consume_with_join_rps: round(javaConsume.recordsPerSec),
      java_consume_join_ms: javaConsume.rebalanceMs,
      java_consume_wall_ms: round(javaConsumeRun.wallMs),
      produce_ratio: round(nodeProduceRps / javaProduce.steady.recordsPerSec, 3),
      produce_ratio_batch1m: round(nodeProduceRps / javaMatched.steady.recordsPerSec, 3),
      consume_ratio: round(nodeConsumeRps / javaConsume.fetchRecordsPerSec, 3),
    }

    return {
      params: {
        records,
        warmup_records: warmup,
        record_size_bytes: RECORD_SIZE,
        partitions: PARTITIONS,
        payload: 'random A-Z bytes, null key, no compression (as ProducerPerformance --record-size)',
        order: 'sequential: node produce, node produce serial, java produce, java produce batch1m, node consume, java consume',
        producer_settings: `${PRODUCER_PROPS.join(' ')}; other settings at each client's defaults`,
        java_batch1m: `java_produce_batch1m_*: a second ProducerPerformance run with ${MATCHED_BATCH_PROP} too, librdkafka's default batch.size (Java's is 16384, which caps it at ~32 records of 512 B per batch)`,
        node_client: clientVersion(),
        node_send: `send() of ${SEND_BATCH} records, up to ${SEND_WINDOW} unacknowledged at once, timed from the first send to the last ack`,
        node_send_serial: `send() of ${SEND_BATCH} records, each awaited before the next`,
        node_poll: `poll(${POLL_MAX}, ${POLL_TIMEOUT_MS}) until ${records} records`,
        consume_topic: 'both consumers read the first ProducerPerformance topic (default batch.size: record batches of at most 16 KiB)',
        isolation_level: 'read_committed (both clients)',
        java_heap_mb: JAVA_HEAP_MB,
        java_timing: 'the Java tools time themselves: JVM start-up is excluded (java_*_wall_ms include it)',
        produce_timing: `both sides after ${warmup} warm-up records (Java: --warmup-records, steady-state line)`,
        consume_timing: 'headline consume rates start at partition assignment (group join excluded), as ConsumerPerformance fetch.* columns do',
        mb: '2^20 bytes of keys + values, as the Java tools count',
      },
      metrics,
      baseline: { java_produce_rps: metrics.java_produce_rps, java_consume_rps: metrics.java_consume_rps },
      headline: { metric: 'node_consume_rps', baseline: 'java_consume_rps' },
      goal: 'informational: Node client as a fraction of the Java client on this machine',
      summary: [
        `client${ctx.quick ? ' (quick)' : ''}: ${fmt(records)} records × ${RECORD_SIZE} B, ${PARTITIONS} partitions`,
        `  produce  node ${fmt(metrics.node_produce_rps)} rec/s (${fmt(metrics.node_produce_mb_s)} MB/s)  java ${fmt(metrics.java_produce_rps)} rec/s (${fmt(metrics.java_produce_mb_s)} MB/s)  node/java ${fmt(metrics.produce_ratio)}`,
        `  consume  node ${fmt(metrics.node_consume_rps)} rec/s (${fmt(metrics.node_consume_mb_s)} MB/s)  java ${fmt(metrics.java_consume_rps)} rec/s (${fmt(metrics.java_consume_mb_s)} MB/s)  node/java ${fmt(metrics.consume_ratio)}`,
        `  produce  java with ${MATCHED_BATCH_PROP} (librdkafka's default): ${fmt(metrics.java_produce_batch1m_rps)} rec/s  node/java ${fmt(metrics.produce_ratio_batch1m)}`,
        `  node produce awaiting each batch: ${fmt(metrics.node_produce_serial_rps)} rec/s; java produce p99 latency ${fmt(metrics.java_produce_p99_ms)} ms (${fmt(metrics.java_produce_batch1m_p99_ms)} ms with ${MATCHED_BATCH_PROP})`,
      ],
    }
  } finally {
    try {
      await admin.deleteTopics(topics)
    } catch (err) {
      ctx.logger.warn({ err, topics }, 'could not delete benchmark topics')
    }
    await admin.close()
  }
}

/** One ProducerPerformance run of `warmup` + `records` records; `steady` excludes the warm-up. */
async function javaProducePerf(ctx: BenchContext, topic: string, records: number, warmup: number, props: readonly string[]): Promise<{ steady: ProducerSummary; total: ProducerSummary; wallMs: number }> {
  const run = await runJavaTool(
    PRODUCER_PERFORMANCE,
    ['--bootstrap-server', ctx.brokers.join(','), '--topic', topic, '--num-records', String(records + warmup), '--warmup-records', String(warmup),
      '--record-size', String(RECORD_SIZE), '--throughput', '-1', '--command-property', ...props],
    { heapMb: JAVA_HEAP_MB, signal: ctx.signal },
  )
  const { total, steady } = parseProducerPerformance(run.stdout)
  return { steady: steady ?? total, total, wallMs: run.wallMs }
}

interface ProduceRun {
  /** First send to last ack. */
  ms: number
  /** Per `send()` call: call to its last ack. */
  batchMs: number[]
}

/** Sends `count` records in `send()` batches, at most `window` unacknowledged at once. */
async function produce(producer: KafkaProducer, topic: string, value: Buffer, count: number, window: number, signal: AbortSignal): Promise<ProduceRun> {
  const inflight = new Set<Promise<void>>()
  const batchMs: number[] = []
  let failure: unknown
  let acked = 0
  const started = performance.now()
  for (let sent = 0; sent < count && failure === undefined; sent += SEND_BATCH) {
    if (signal.aborted) throw new LifelineError('LL_ABORTED', 'benchmark aborted')
    const batch: ProduceRecord[] = []
    for (let i = 0; i < Math.min(SEND_BATCH, count - sent); i++) batch.push({ topic, value })
    const at = performance.now()
    // Failures are kept, not thrown here: a rejection with no race attached yet would be unhandled.
    const done: Promise<void> = producer.send(batch).then(
      (acks) => {
        acked += acks.length
        batchMs.push(performance.now() - at)
        inflight.delete(done)
      },
      (err: unknown) => {
        failure ??= err
        inflight.delete(done)
      },
    )
    inflight.add(done)
    if (inflight.size >= window) await Promise.race(inflight)
  }
  await Promise.all(inflight)
  const ms = performance.now() - started
  if (failure !== undefined) throw new LifelineError('LL_BENCH_FAILED', `producing to ${topic} failed: ${(failure as Error).message}`, { cause: failure })
  if (acked !== count) throw new LifelineError('LL_BENCH_FAILED', `producing to ${topic}: ${acked} of ${count} records acknowledged`)
  return { ms, batchMs }
}

interface ConsumeRun {
  records: number
  bytes: number
  /** Subscribe to the last record. */
  totalMs: number
  /** First partition assignment to the last record. */
  fetchMs: number
}

async function consume(ctx: BenchContext, topic: string, count: number): Promise<ConsumeRun> {
  let assignedAt: number | undefined
  const consumer = createConsumer({
    brokers: ctx.brokers,
    groupId: `${topic}-node`,
    rebalance: { onAssign: () => void (assignedAt ??= performance.now()) },
  })
  try {
    consumer.subscribe([topic])
    const started = performance.now()
    const deadline = started + CONSUME_TIMEOUT_MS
    let records = 0
    let bytes = 0
    while (records < count) {
      if (ctx.signal.aborted) throw new LifelineError('LL_ABORTED', 'benchmark aborted')
      if (performance.now() > deadline) {
        throw new LifelineError('LL_BENCH_FAILED', `node consumer read ${records} of ${count} records from ${topic} in ${CONSUME_TIMEOUT_MS} ms`)
      }
      const batch = await consumer.poll(POLL_MAX, POLL_TIMEOUT_MS)
      records += batch.length
      for (const r of batch) bytes += r.size
    }
    const ended = performance.now()
    return { records, bytes, totalMs: ended - started, fetchMs: ended - (assignedAt ?? started) }
  } finally {
    await consumer.close()
  }
}

/** Checks the topic holds exactly `expected` records: every acknowledged record really landed once. */
async function expectRecords(admin: KafkaAdmin, topic: string, expected: number): Promise<void> {
  const total = (await admin.topicOffsets(topic)).reduce((sum, p) => sum + p.high - p.low, 0)
  if (total !== expected) throw new LifelineError('LL_BENCH_FAILED', `${topic} holds ${total} records, expected ${expected}`)
}
