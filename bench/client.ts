/**
 * `client`: the raw Node client (Lifeline's `src/kafka`, librdkafka underneath) against Kafka's own Java
 * perf tools on the same broker, same record size and count. Informational: it tells how much of the
 * Java client's throughput the Node client reaches on this machine, before any Lifeline runtime cost.
 *
 * First the broker is warmed up (a fresh broker JVM is several times slower until its JIT has compiled the
 * produce and fetch paths; whoever ran first would pay for it). Then {@link QUICK_ROUNDS} or
 * {@link FULL_ROUNDS} rounds, each on new topics, each step one after the other, never concurrently (the
 * broker and the clients share two cores), Node first in even rounds and Java first in odd ones:
 * - Node produce, pipelined: `send()` batches of {@link SEND_BATCH} records with at most {@link SEND_WINDOW}
 *   batches unacknowledged, after a warm-up of 10 % of the count (connection, metadata, producer id, JIT);
 *   then serial: the same batches, each awaited before the next (what a naive loop gets).
 * - Java `ProducerPerformance`, same settings, `--warmup-records` = the same 10 %: its steady-state line;
 *   then once more with `batch.size` raised to librdkafka's default, so the batching differs no more.
 * - Node consume of the Java topic with a fresh group, `poll()` loop until the count is read.
 * - Java `ConsumerPerformance` of the same topic with another fresh group.
 * Each figure is the best round's: on a shared 2-core machine, noise only ever slows a run down.
 *
 * @module
 */
import { randomInt } from 'node:crypto'
import { LifelineError } from '../src/errors.js'
import { BenchError } from './lib/errors.js'
import { clientVersion, createAdmin, createConsumer, createProducer } from '../src/kafka/index.js'
import type { KafkaAdmin, KafkaProducer, ProduceRecord } from '../src/kafka/index.js'
import { CONSUMER_PERFORMANCE, parseConsumerPerformance, parseProducerPerformance, PRODUCER_PERFORMANCE, runJavaTool, type ConsumerSummary, type ProducerSummary } from './lib/java-perf.js'
import { fmt, round } from './lib/results.js'
import { MB, percentile, perSecond } from './lib/stats.js'
import type { BenchContext, BenchResult } from './lib/types.js'
import { suffix } from './lib/topics.js'

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
const QUICK_ROUNDS = 2
const FULL_ROUNDS = 3
const PRODUCER_PROPS = ['acks=all', 'linger.ms=5', 'enable.idempotence=true']
/** librdkafka's default batch.size, for a second Java run that batches like the Node client does. */
const MATCHED_BATCH_PROP = 'batch.size=1000000'
/**
 * librdkafka settings tried for the Node consumer (issue 14): a deeper prefetch queue and larger fetches
 * per partition. A second Node consume of the same topic in each round runs with them (`node_consume_tuned_*`).
 */
const TUNED_CONSUMER: Record<string, number> = { 'queued.min.messages': 500_000, 'queued.max.messages.kbytes': 262_144, 'fetch.message.max.bytes': 4_194_304 }

export async function run(ctx: BenchContext): Promise<BenchResult> {
  const records = ctx.quick ? QUICK_RECORDS : FULL_RECORDS
  const rounds = ctx.quick ? QUICK_ROUNDS : FULL_ROUNDS
  const warmup = records / 10
  // Random A–Z bytes, as ProducerPerformance's --record-size payload; one buffer reused, as the tool does.
  const value = Buffer.from(Array.from({ length: RECORD_SIZE }, () => 65 + randomInt(26)))
  const plan: RoundPlan = { records, warmup, value, suffix: suffix() }

  const admin = createAdmin({ brokers: ctx.brokers })
  const results: RoundResult[] = []
  try {
    await warmBroker(ctx, admin, plan)
    for (let i = 0; i < rounds; i++) results.push(await runRound(ctx, admin, plan, i))
  } finally {
    await admin.close()
  }

  const nodeProduce = best(results, (r) => perSecond(records, r.nodeProduce.ms))
  const nodeSerial = best(results, (r) => perSecond(records, r.nodeSerial.ms))
  const javaProduce = best(results, (r) => r.javaProduce.steady.recordsPerSec)
  const javaBatch = best(results, (r) => r.javaBatch.steady.recordsPerSec)
  const nodeConsume = best(results, (r) => perSecond(r.nodeConsume.records, r.nodeConsume.fetchMs))
  const nodeTuned = best(results, (r) => perSecond(r.nodeTuned.records, r.nodeTuned.fetchMs))
  const javaConsume = best(results, (r) => r.javaConsume.fetchRecordsPerSec)

  const bytes = records * RECORD_SIZE
  const np = nodeProduce.round.nodeProduce
  const ns = nodeSerial.round.nodeSerial
  const jp = javaProduce.round.javaProduce
  const jb = javaBatch.round.javaBatch
  const nc = nodeConsume.round.nodeConsume
  const jc = javaConsume.round.javaConsume
  const metrics = {
    node_produce_rps: round(nodeProduce.value),
    node_produce_mb_s: round(perSecond(bytes, np.ms) / MB, 2),
    node_produce_ms: round(np.ms),
    node_produce_batch_ack_p50_ms: round(percentile(np.batchMs, 50) ?? 0, 1),
    node_produce_batch_ack_p99_ms: round(percentile(np.batchMs, 99) ?? 0, 1),
    node_produce_batch_ack_max_ms: round(percentile(np.batchMs, 100) ?? 0, 1),
    node_produce_rps_rounds: nodeProduce.all,
    node_produce_serial_rps: round(nodeSerial.value),
    node_produce_serial_batch_ack_p50_ms: round(percentile(ns.batchMs, 50) ?? 0, 1),
    java_produce_rps: round(javaProduce.value),
    java_produce_mb_s: round(jp.steady.mbPerSec, 2),
    java_produce_avg_latency_ms: jp.steady.avgLatencyMs,
    java_produce_p50_ms: jp.steady.p50Ms,
    java_produce_p95_ms: jp.steady.p95Ms,
    java_produce_p99_ms: jp.steady.p99Ms,
    java_produce_p999_ms: jp.steady.p999Ms,
    java_produce_max_latency_ms: jp.steady.maxLatencyMs,
    java_produce_with_warmup_rps: round(jp.total.recordsPerSec),
    java_produce_wall_ms: round(jp.wallMs),
    java_produce_rps_rounds: javaProduce.all,
    java_produce_batch1m_rps: round(javaBatch.value),
    java_produce_batch1m_mb_s: round(jb.steady.mbPerSec, 2),
    java_produce_batch1m_p50_ms: jb.steady.p50Ms,
    java_produce_batch1m_p99_ms: jb.steady.p99Ms,
    java_produce_batch1m_rps_rounds: javaBatch.all,
    node_consume_rps: round(nodeConsume.value),
    node_consume_mb_s: round(perSecond(nc.bytes, nc.fetchMs) / MB, 2),
    node_consume_with_join_rps: round(perSecond(nc.records, nc.totalMs)),
    node_consume_join_ms: round(nc.totalMs - nc.fetchMs),
    node_consume_rps_rounds: nodeConsume.all,
    node_consume_tuned_rps: round(nodeTuned.value),
    node_consume_tuned_rps_rounds: nodeTuned.all,
    java_consume_rps: round(javaConsume.value),
    java_consume_mb_s: round(jc.fetchMbPerSec, 2),
    java_consume_with_join_rps: round(jc.recordsPerSec),
    java_consume_join_ms: jc.rebalanceMs,
    java_consume_wall_ms: round(jc.wallMs),
    java_consume_rps_rounds: javaConsume.all,
    produce_ratio: round(nodeProduce.value / javaProduce.value, 3),
    produce_ratio_batch1m: round(nodeProduce.value / javaBatch.value, 3),
    consume_ratio: round(nodeConsume.value / javaConsume.value, 3),
    consume_ratio_tuned: round(nodeTuned.value / javaConsume.value, 3),
  }

  return {
    params: {
      records,
      warmup_records: warmup,
      record_size_bytes: RECORD_SIZE,
      partitions: PARTITIONS,
      rounds,
      aggregation: 'each figure from the best round of its step (highest records/s); *_rounds list every round',
      broker_warmup: `${records} records produced and consumed through the broker by the Node client before round 1, unmeasured`,
      payload: 'random A-Z bytes, null key, no compression (as ProducerPerformance --record-size)',
      order: 'sequential, never concurrent; produce steps then consume steps; Node first in even rounds, Java first in odd rounds',
      producer_settings: `${PRODUCER_PROPS.join(' ')}; other settings at each client's defaults`,
      java_batch1m: `java_produce_batch1m_*: a second ProducerPerformance run with ${MATCHED_BATCH_PROP} too, librdkafka's default batch.size (Java's is 16384: at most ~32 records of 512 B per batch)`,
      node_client: clientVersion(),
      node_send: `send() of ${SEND_BATCH} records, up to ${SEND_WINDOW} unacknowledged at once, timed from the first send to the last ack`,
      node_send_serial: `send() of ${SEND_BATCH} records, each awaited before the next`,
      node_batch_ack: 'node_produce_*batch_ack_*: per send() call, call to its last ack (not per-record latency like the java_produce_p* figures)',
      node_poll: `poll(${POLL_MAX}, ${POLL_TIMEOUT_MS}) until ${records} records`,
      node_consume_tuned: `the same consume with ${Object.entries(TUNED_CONSUMER).map(([k, v]) => `${k}=${v}`).join(' ')}, right after the default one in each round`,
      consume_topic: 'both consumers read the round\'s first ProducerPerformance topic (default batch.size: record batches of at most 16 KiB)',
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
      `client${ctx.quick ? ' (quick)' : ''}: ${fmt(records)} records × ${RECORD_SIZE} B, ${PARTITIONS} partitions, best of ${rounds} rounds`,
      `  produce  node ${fmt(metrics.node_produce_rps)} rec/s (${fmt(metrics.node_produce_mb_s)} MB/s)  java ${fmt(metrics.java_produce_rps)} rec/s (${fmt(metrics.java_produce_mb_s)} MB/s)  node/java ${fmt(metrics.produce_ratio)}`,
      `  produce  java with ${MATCHED_BATCH_PROP} (librdkafka's default) ${fmt(metrics.java_produce_batch1m_rps)} rec/s  node/java ${fmt(metrics.produce_ratio_batch1m)}`,
      `  consume  node ${fmt(metrics.node_consume_rps)} rec/s (${fmt(metrics.node_consume_mb_s)} MB/s)  java ${fmt(metrics.java_consume_rps)} rec/s (${fmt(metrics.java_consume_mb_s)} MB/s)  node/java ${fmt(metrics.consume_ratio)}`,
      `  consume  node with ${Object.entries(TUNED_CONSUMER).map(([k, v]) => `${k}=${v}`).join(' ')}: ${fmt(metrics.node_consume_tuned_rps)} rec/s  node/java ${fmt(metrics.consume_ratio_tuned)}`,
      `  node produce awaiting each batch: ${fmt(metrics.node_produce_serial_rps)} rec/s; java produce p99 latency ${fmt(metrics.java_produce_p99_ms)} ms (${fmt(metrics.java_produce_batch1m_p99_ms)} ms with ${MATCHED_BATCH_PROP})`,
    ],
  }
}

interface RoundPlan {
  records: number
  warmup: number
  value: Buffer
  suffix: string
}

interface JavaProduce {
  steady: ProducerSummary
  total: ProducerSummary
  wallMs: number
}

interface RoundResult {
  nodeProduce: ProduceRun
  nodeSerial: ProduceRun
  javaProduce: JavaProduce
  javaBatch: JavaProduce
  nodeConsume: ConsumeRun
  nodeTuned: ConsumeRun
  javaConsume: ConsumerSummary & { wallMs: number }
}

/** The round with the highest `rate`, and every round's rate ("a / b / c", rounded). */
function best(results: readonly RoundResult[], rate: (r: RoundResult) => number): { round: RoundResult; value: number; all: string } {
  const rates = results.map(rate)
  const at = rates.indexOf(Math.max(...rates))
  return { round: results[at]!, value: rates[at]!, all: rates.map((r) => String(round(r))).join(' / ') }
}

/** Pushes `records` records through a fresh broker (produce, then consume) so its JIT is warm before round 1. */
async function warmBroker(ctx: BenchContext, admin: KafkaAdmin, plan: RoundPlan): Promise<void> {
  const topic = `bench-client-warmup-${plan.suffix}`
  ctx.logger.info({ topic, records: plan.records }, 'broker warm-up')
  await admin.createTopics([{ topic, partitions: PARTITIONS }])
  try {
    const producer = createProducer({ brokers: ctx.brokers, idempotent: true, lingerMs: 5 })
    try {
      await produce(producer, topic, plan.value, plan.records, SEND_WINDOW, ctx.signal)
    } finally {
      await producer.close()
    }
    await consume(ctx, topic, plan.records)
  } finally {
    await deleteTopics(ctx, admin, [topic])
  }
}

async function runRound(ctx: BenchContext, admin: KafkaAdmin, plan: RoundPlan, index: number): Promise<RoundResult> {
  const { records, warmup, value } = plan
  const nodeTopic = `bench-client-node-${plan.suffix}-r${index}`
  const javaTopic = `bench-client-java-${plan.suffix}-r${index}`
  const javaBatchTopic = `bench-client-java-batch-${plan.suffix}-r${index}`
  const topics = [nodeTopic, javaTopic, javaBatchTopic]
  const log = ctx.logger.child({ round: index + 1 })
  await admin.createTopics(topics.map((topic) => ({ topic, partitions: PARTITIONS })))
  try {
    const nodeProduceSteps = async (): Promise<[ProduceRun, ProduceRun]> => {
      log.info({ topic: nodeTopic, records, warmup }, 'node produce (pipelined, then serial)')
      const producer = createProducer({ brokers: ctx.brokers, idempotent: true, lingerMs: 5 })
      try {
        await produce(producer, nodeTopic, value, warmup, SEND_WINDOW, ctx.signal)
        const pipelined = await produce(producer, nodeTopic, value, records, SEND_WINDOW, ctx.signal)
        const serial = await produce(producer, nodeTopic, value, records, 1, ctx.signal)
        return [pipelined, serial]
      } finally {
        await producer.close()
      }
    }
    const javaProduceSteps = async (): Promise<[JavaProduce, JavaProduce]> => {
      log.info({ topic: javaTopic, records, warmup }, 'java produce (ProducerPerformance)')
      const defaults = await javaProducePerf(ctx, javaTopic, records, warmup, PRODUCER_PROPS)
      log.info({ topic: javaBatchTopic, records, warmup }, `java produce (ProducerPerformance, ${MATCHED_BATCH_PROP})`)
      const batched = await javaProducePerf(ctx, javaBatchTopic, records, warmup, [...PRODUCER_PROPS, MATCHED_BATCH_PROP])
      return [defaults, batched]
    }
    const nodeFirst = index % 2 === 0
    let nodeRuns: [ProduceRun, ProduceRun]
    let javaRuns: [JavaProduce, JavaProduce]
    if (nodeFirst) {
      nodeRuns = await nodeProduceSteps()
      javaRuns = await javaProduceSteps()
    } else {
      javaRuns = await javaProduceSteps()
      nodeRuns = await nodeProduceSteps()
    }
    await expectRecords(admin, nodeTopic, warmup + 2 * records)
    await expectRecords(admin, javaTopic, records + warmup)
    await expectRecords(admin, javaBatchTopic, records + warmup)

    const nodeConsumeStep = async (): Promise<[ConsumeRun, ConsumeRun]> => {
      log.info({ topic: javaTopic, records }, 'node consume (defaults, then tuned)')
      return [await consume(ctx, javaTopic, records), await consume(ctx, javaTopic, records, TUNED_CONSUMER, 'tuned')]
    }
    const javaConsumeStep = (): Promise<ConsumerSummary & { wallMs: number }> => {
      log.info({ topic: javaTopic, records }, 'java consume (ConsumerPerformance)')
      return javaConsumePerf(ctx, javaTopic, records)
    }
    let nodeConsume: [ConsumeRun, ConsumeRun]
    let javaConsume: ConsumerSummary & { wallMs: number }
    if (nodeFirst) {
      nodeConsume = await nodeConsumeStep()
      javaConsume = await javaConsumeStep()
    } else {
      javaConsume = await javaConsumeStep()
      nodeConsume = await nodeConsumeStep()
    }
    return { nodeProduce: nodeRuns[0], nodeSerial: nodeRuns[1], javaProduce: javaRuns[0], javaBatch: javaRuns[1], nodeConsume: nodeConsume[0], nodeTuned: nodeConsume[1], javaConsume }
  } finally {
    // Frees the disk between rounds (a full round writes ~430 MB).
    await deleteTopics(ctx, admin, topics)
  }
}

async function deleteTopics(ctx: BenchContext, admin: KafkaAdmin, topics: string[]): Promise<void> {
  try {
    await admin.deleteTopics(topics)
  } catch (err) {
    ctx.logger.warn({ err, topics }, 'could not delete benchmark topics')
  }
}

async function javaConsumePerf(ctx: BenchContext, topic: string, records: number): Promise<ConsumerSummary & { wallMs: number }> {
  const run = await runJavaTool(
    CONSUMER_PERFORMANCE,
    ['--bootstrap-server', ctx.brokers.join(','), '--topic', topic, '--num-records', String(records), '--timeout', '60000',
      '--group', `${topic}-java`, '--command-property', 'isolation.level=read_committed'],
    { heapMb: JAVA_HEAP_MB, signal: ctx.signal },
  )
  return { ...parseConsumerPerformance(run.stdout), wallMs: run.wallMs }
}

/** One ProducerPerformance run of `warmup` + `records` records; `steady` excludes the warm-up. */
async function javaProducePerf(ctx: BenchContext, topic: string, records: number, warmup: number, props: readonly string[]): Promise<JavaProduce> {
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
  if (failure !== undefined) throw new BenchError('BENCH_FAILED', `producing to ${topic} failed: ${(failure as Error).message}`, { cause: failure })
  if (acked !== count) throw new BenchError('BENCH_FAILED', `producing to ${topic}: ${acked} of ${count} records acknowledged`)
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

async function consume(ctx: BenchContext, topic: string, count: number, config: Record<string, number> = {}, group = 'node'): Promise<ConsumeRun> {
  let assignedAt: number | undefined
  const consumer = createConsumer({
    brokers: ctx.brokers,
    groupId: `${topic}-${group}`,
    config,
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
        throw new BenchError('BENCH_FAILED', `node consumer read ${records} of ${count} records from ${topic} in ${CONSUME_TIMEOUT_MS} ms`)
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
  if (total !== expected) throw new BenchError('BENCH_FAILED', `${topic} holds ${total} records, expected ${expected}`)
}
