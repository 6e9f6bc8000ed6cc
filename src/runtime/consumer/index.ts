/**
 * The Lifeline consumer: a group consumer that runs a handler per record with per-key ordered
 * concurrency, retries with backoff, classifies errors, dead-letters with full failure context, parks keys
 * behind records that left the main path, and commits per partition only up to the lowest unfinished offset.
 *
 * This module builds the shared context and wires the modules of this folder (see context.ts for the
 * layers); it owns start() and close().
 *
 * @module
 * @example
 * const consumer = createConsumer({
 *   brokers: ['127.0.0.1:9092'], groupId: 'orders', service: 'billing', topics: ['orders'],
 *   handler: async ({ value, attempt, signal }) => { await charge(value, { signal }) },
 * })
 * await consumer.start()
 * // ... on shutdown:
 * await consumer.close()
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import { LifelineError } from '../../errors.js'
import { createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../../kafka/index.js'
import type { TopicPartition } from '../../kafka/types.js'
import { silentLogger } from '../../logger.js'
import { closeSteps } from '../../util/close.js'
import { ProtocolStore } from '../../ordering/protocol-store.js'
import { tracingActive } from '../../trace/tracing.js'
import { migrateLifeline } from '../../store/schema.js'
import { CircuitBreaker } from '../../retry/circuit-breaker.js'
import { KeyScheduler } from '../key-scheduler.js'
import { createRuntimeMetrics } from '../metrics.js'
import type { ConsumerEvents, ConsumerOptions } from '../options.js'
import { ensureTopics } from '../topics.js'
import { commit } from './commits.js'
import { pump } from './dispatcher.js'
import { expireGaps, pollReleases, reportPollFailure } from './parking.js'
import { sourceStates, stopPartitions, unboundedController } from './partitions.js'
import { pollLoop } from './poll-loop.js'
import { drainInFlight, onAssign, onRevoke } from './rebalance.js'
import { resolveConsumerOptions } from './resolve-options.js'
import { reportError } from './events.js'
import type { ConsumerContext } from './context.js'

export interface ConsumerStats {
  inFlight: number
  buffered: number
  assigned: TopicPartition[]
  paused: TopicPartition[]
  /** Keys with ordering state (parked, released or waiting for a sequence gap) in the assigned partitions. */
  parkedKeys: number
  /** Records stored behind keys waiting for a sequence gap (as far as this member knows). */
  reorderBuffered: number
  /** When the poll loop last returned from a poll (ms since the epoch); undefined before the first. */
  lastPollAt: number | undefined
}

export interface LifelineConsumer extends EventEmitter<ConsumerEvents> {
  /** Connects, provisions DLQ and retry-tier topics (unless disabled), subscribes and starts the poll loop. */
  start(): Promise<void>
  /** Stops fetching, cancels backoffs, drains in-flight handlers, commits, leaves the group. Idempotent. */
  close(): Promise<void>
  /** Commits what is committable now (also runs on a timer, on revoke and on close). */
  commit(): Promise<void>
  /** Counters for tests and health checks. */
  stats(): ConsumerStats
  [Symbol.asyncDispose](): Promise<void>
}

/** Creates a consumer; nothing connects until `start()`. Options are validated now (LL_OPTIONS_INVALID). */
export function createConsumer<V = unknown>(input: ConsumerOptions<V>): LifelineConsumer {
  const options = resolveConsumerOptions(input)
  const log = (options.source.logger ?? silentLogger()).child({ component: 'consumer', group: options.groupId })
  const store = options.state
    ? new ProtocolStore(options.state, { onAnalyzeError: (err) => log.warn({ err }, 'analyzing the ordering tables failed: the planner keeps their older statistics') })
    : undefined
  const emitter = new EventEmitter<ConsumerEvents>()
  let lastPollAt: number | undefined
  const ctx: ConsumerContext = {
    options,
    log,
    emitter,
    metrics: undefined as never,
    breaker: options.circuitBreaker ? new CircuitBreaker(options.circuitBreaker) : undefined,
    store,
    parking: store !== undefined && options.ordering !== 'none',
    member: `${options.service}@${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
    // The scheduler keeps key order; `running` bounds handlers actually executing, so a record sleeping in
    // backoff holds its key but not a concurrency slot.
    scheduler: new KeyScheduler({ ordering: options.ordering, concurrency: Number.MAX_SAFE_INTEGER }),
    partitions: new Map(),
    stopping: unboundedController(),
    drainWaiters: new Set(),
    slotWaiters: [],
    running: 0,
    inFlight: 0,
    bufferedBytes: 0,
    memoryPaused: false,
    kafka: undefined,
    producer: undefined,
    commitChain: Promise.resolve(),
    tracing: options.tracing !== false && tracingActive(),
    pump: () => pump(ctx),
  }
  const sources = () => sourceStates(ctx)
  ;(ctx as { metrics: ConsumerContext['metrics'] }).metrics = createRuntimeMetrics(options.source.metrics?.registry, options.groupId, {
    inFlight: () => ctx.inFlight,
    buffered: () => ctx.scheduler.queued,
    pausedPartitions: () => [...ctx.partitions.values()].filter((p) => p.pausedFor.size > 0).length,
    breakerState: () => ctx.breaker?.snapshot(Date.now()).state,
    lag: () =>
      [...ctx.partitions.values()].flatMap((p) => {
        const w = ctx.kafka?.watermarks(p.topic, p.partition)
        const position = p.offsets.committed ?? p.offsets.lowestUnfinished
        return w && position !== undefined ? [{ topic: p.topic, partition: p.partition, lag: Math.max(0, w.high - position) }] : []
      }),
    parkedKeys: () => sources().reduce((n, s) => n + [...s.keys.values()].filter((e) => e.status !== 'gap').length, 0),
    parkedRecords: () => sources().reduce((n, s) => n + [...s.keys.values()].reduce((m, e) => m + (e.status === 'gap' ? 0 : e.records), 0), 0),
    oldestParkedSeconds: () => {
      const oldest = Math.min(...sources().flatMap((s) => [...s.keys.values()].filter((e) => e.status !== 'gap').map((e) => e.parkedAt)))
      return Number.isFinite(oldest) ? (Date.now() - oldest) / 1000 : 0
    },
    reorderBuffered: () => sources().reduce((n, s) => n + [...s.keys.values()].reduce((m, e) => m + (e.status === 'gap' ? e.records : 0), 0), 0),
    tierDepth: () =>
      [...ctx.partitions.values()].flatMap((p) => {
        if (!p.tierOf) return []
        const w = ctx.kafka?.watermarks(p.topic, p.partition)
        const position = p.offsets.committed ?? p.offsets.lowestUnfinished
        return w ? [{ topic: p.topic, depth: Math.max(0, w.high - (position ?? w.low)) }] : []
      }),
  })

  let loopDone: Promise<void> = Promise.resolve()
  let commitTimer: NodeJS.Timeout | undefined
  let releaseTimer: NodeJS.Timeout | undefined
  let gapTimer: NodeJS.Timeout | undefined
  let starting: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let polling = false

  async function releasePoll(): Promise<void> {
    if (polling) return
    polling = true
    try {
      await pollReleases(ctx)
    } catch (err) {
      reportPollFailure(ctx, err)
    } finally {
      polling = false
    }
  }

  function start(): Promise<void> {
    if (starting || closing) return Promise.reject(new LifelineError('LL_CONSUMER_STATE', closing ? 'start() after close()' : 'start() called twice'))
    starting = doStart()
    return starting
  }

  async function doStart(): Promise<void> {
    const connection = { brokers: options.brokers, config: options.source.kafkaConfig }
    const admin = createAdmin(connection)
    try {
      // Without provisioning the same checks run (sources exist, DLQs exist with enough partitions).
      const s = options.source
      await ensureTopics(admin, { service: options.service, topics: [...options.topics], deadLetter: s.deadLetter, retryTopics: s.retryTopics, checkOnly: !options.provision })
    } finally {
      await admin.close()
    }
    if (store) await migrateLifeline(store.db, { logger: log })
    ctx.producer = createProducer({ ...connection, clientId: `${options.service}-dlq` })
    await ctx.producer.connect()
    const consumer = createKafkaConsumer({
      ...connection,
      groupId: options.groupId,
      sessionTimeoutMs: options.sessionTimeoutMs,
      rebalance: { onAssign: (parts) => onAssign(ctx, parts), onRevoke: (parts, lost) => onRevoke(ctx, parts, lost), onError: (err) => reportError(ctx, err, 'rebalance hook failed') },
    })
    ctx.kafka = consumer
    consumer.subscribe([...options.topics, ...options.tierTopics.keys()])
    await consumer.connect()
    loopDone = pollLoop(ctx, consumer, () => (lastPollAt = Date.now()))
    commitTimer = setInterval(() => void commit(ctx).catch((err: unknown) => reportError(ctx, err, 'periodic commit failed')), options.commitIntervalMs)
    commitTimer.unref()
    if (ctx.parking) {
      releaseTimer = setInterval(() => void releasePoll(), options.pollMs)
      releaseTimer.unref()
    }
    if (options.sequence) {
      gapTimer = setInterval(() => expireGaps(ctx), Math.max(20, Math.min(1000, Math.floor(options.sequence.timeoutMs / 4))))
      gapTimer.unref()
    }
    log.info({ topics: options.topics }, 'consumer started')
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      const steps = closeSteps(log, 'the consumer')
      const step = steps.run
      // A close() racing start() waits for it, so nothing start() creates outlives close().
      await starting?.catch(() => undefined)
      ctx.stopping.abort()
      clearInterval(commitTimer)
      clearInterval(releaseTimer)
      clearInterval(gapTimer)
      await step('stopping the poll loop', () => loopDone)
      const states = [...ctx.partitions.values()]
      await step('releasing queued records', () => stopPartitions(ctx, states))
      await step('draining in-flight handlers', () => drainInFlight(ctx, states))
      await step('committing', () => commit(ctx))
      await step('finishing the ordering tables\' ANALYZE', () => store?.statistics.settled())
      await step('leaving the group', () => ctx.kafka?.close())
      await step('closing the DLQ producer', () => ctx.producer?.close())
      ctx.metrics.detach()
      log.info('consumer closed')
      steps.finish()
    })()
    return closing
  }

  return Object.assign(emitter, {
    start,
    close,
    commit: () => commit(ctx),
    stats: (): ConsumerStats => ({
      inFlight: ctx.inFlight,
      buffered: ctx.scheduler.queued,
      assigned: [...ctx.partitions.values()].map((s) => ({ topic: s.topic, partition: s.partition })),
      paused: [...ctx.partitions.values()].filter((s) => s.pausedFor.size > 0).map((s) => ({ topic: s.topic, partition: s.partition })),
      parkedKeys: sources().reduce((n, st) => n + st.keys.size, 0),
      reorderBuffered: sources().reduce((n, st) => n + [...st.keys.values()].reduce((m, e) => m + (e.status === 'gap' ? e.records : 0), 0), 0),
      lastPollAt,
    }),
    [Symbol.asyncDispose]: close,
  }) as LifelineConsumer
}
