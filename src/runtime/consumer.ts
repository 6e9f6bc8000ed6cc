/**
 * The Lifeline consumer: a group consumer that runs a handler per record with per-key ordered
 * concurrency, retries with backoff, classifies errors, dead-letters with full failure context, and
 * commits per partition only up to the lowest unfinished offset.
 *
 * The poll loop never waits for handlers (it keeps polling, so handler time never causes a
 * max.poll.interval eviction); backpressure pauses single partitions.
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
import { randomUUID } from 'node:crypto'
import { EventEmitter, setMaxListeners } from 'node:events'
import { fileURLToPath } from 'node:url'
import { LifelineError } from '../errors.js'
import { createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../kafka/index.js'
import type { ConsumedRecord, KafkaConsumer, KafkaProducer, TopicPartition, TopicPartitionOffset } from '../kafka/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { validateOptions } from '../util/options.js'
import { delayFor, exponential, fixed, retryDecision, type BackoffPolicy } from './backoff.js'
import { CircuitBreaker, type Permit } from './circuit-breaker.js'
import { classifyError, type Classification } from './classify.js'
import { sleep } from '../util/sleep.js'
import { deadLetterRecord, failureContext } from './dead-letter.js'
import { resolveDecoder, withSchema, wrapDecode } from './decode.js'
import { KeyScheduler, schedulingKey, type SchedulableItem } from './key-scheduler.js'
import { Message } from './message.js'
import { createRuntimeMetrics, type RuntimeMetrics } from './metrics.js'
import { PartitionOffsets } from './offset-tracker.js'
import { ConsumerOptionsSchema, consumerDefaults, dlqTopicName, functionOptions, type ConsumerEvents, type ConsumerOptions, type LifelineMessage } from './options.js'
import { ensureTopics } from './topics.js'
import { originView, readTierRecord, retryTopicName, tierRecord, type TierInfo } from './retry-topics.js'
import { OrderingStore, type ParkedRecord } from '../ordering/state-store.js'
import { SequenceBuffer } from '../ordering/sequence-buffer.js'
import { migrateLifeline } from '../store/schema.js'
import { MASKED_HEADER, Masker } from '../dlq/masking.js'

export interface LifelineConsumer extends EventEmitter<ConsumerEvents> {
  /** Connects, provisions DLQ topics (unless disabled), subscribes and starts the poll loop. */
  start(): Promise<void>
  /** Stops fetching, cancels backoffs, drains in-flight handlers, commits, leaves the group. Idempotent. */
  close(): Promise<void>
  /** Commits what is committable now (also runs on a timer, on revoke and on close). */
  commit(): Promise<void>
  /** Counters for tests and health checks (`lastPollAt`: ms since the epoch when a poll last returned, undefined before the first). */
  stats(): { inFlight: number; buffered: number; assigned: TopicPartition[]; paused: TopicPartition[]; parkedKeys: number; reorderBuffered: number; lastPollAt: number | undefined }
  [Symbol.asyncDispose](): Promise<void>
}

interface PartitionState {
  readonly topic: string
  readonly partition: number
  readonly offsets: PartitionOffsets
  readonly pausedFor: Set<string>
  readonly running: Set<Item>
  /** Cancels this partition's backoff and DLQ-retry waits (revoke, close). */
  readonly waits: AbortController
  /** Handlers' signal: aborted only when a drain of this partition timed out. */
  readonly handlers: AbortController
  buffered: number
  /** Records of this partition whose DLQ / retry-tier / state write is failing right now, by pause reason. */
  readonly failing: Map<string, number>
  revoking: boolean
  /** Set for a retry-tier partition: its source topic and tier number. */
  readonly tierOf: { source: string; n: number } | undefined
  /** False until the partition's ordering state is loaded; records fetched meanwhile wait in `stash`. */
  ready: boolean
  stash: ConsumedRecord[]
  /** Parked keys of this (source) partition, by scheduling key. */
  readonly parked: Map<string, ParkEntry>
  /** The reorder buffer (with `sequence`). */
  readonly sequences: SequenceBuffer<Item> | undefined
  /** Last handled sequence per key, not yet saved (saved before the offsets covering it are committed). */
  readonly dirtySeq: Map<string, { key: Buffer; seq: number }>
  /** Records the reorder buffer had no room for, offered again later (the partition is paused meanwhile). */
  overflow: Item[]
  /** Retry-tier records held until due, in arrival order (the partition is paused meanwhile). */
  delayed: Item[]
  delayTimer: NodeJS.Timeout | undefined
}

interface ParkEntry {
  readonly key: Buffer
  status: 'parked' | 'released'
  headOffset: number
  /** Records stored behind the head (as far as this owner knows). */
  records: number
  parkedAt: number
  draining: boolean
}

interface Item extends SchedulableItem {
  /** What the handler sees: the consumed record, a retry-tier record at its origin, or a parked record. */
  readonly record: ConsumedRecord
  readonly state: PartitionState
  /** `drain`: replays a released key's parked records in its lane. */
  readonly kind: 'record' | 'drain'
  /** The Kafka record whose offset this item completes; undefined for a parked record or a drain. */
  readonly source: ConsumedRecord | undefined
  /** A retry-tier record's tier headers. */
  readonly tier?: TierInfo
  /** A parked record being replayed: its row id. */
  readonly parkedId?: string
  seq?: number
  /** The value decoded at intake (sequence extraction needs it). */
  decoded?: { value: unknown } | { error: unknown }
  /** An error that dead-letters the record without running the handler (bad sequence, gap timeout, bad tier headers). */
  forced?: unknown
}

/** A state read/write or a produce that close() or a revocation cancelled. */
const CANCELLED = Symbol('cancelled')

type Outcome = 'done' | 'abandoned'

/**
 * What pump() already did for a record it could not finish synchronously: the value failed to decode, or the
 * first attempt's handler ran and returned a promise (or threw, as a rejected one).
 */
type FirstAttempt = { decodeError: unknown } | { value: unknown; startedAt: number; result: Promise<void> }

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== undefined && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}

/** This file's path: stack frames from here down are the runtime's, not the handler's (see userFrames). */
const RUNTIME_FILE = fileURLToPath(import.meta.url)

/** Every record in backoff listens on its partition's signal: hundreds of listeners are normal here. */
function unboundedController(): AbortController {
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  return controller
}

/** Records per poll: large batches amortise the trip to librdkafka's thread. */
const POLL_MAX = 2000

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`

function backoffPolicy(o: ConsumerOptions<unknown>['retry']): BackoffPolicy {
  const b = o?.backoff
  const d = consumerDefaults.retry
  if (typeof b === 'function') return b
  if (b?.type === 'fixed') return fixed(b.ms)
  return exponential({ baseMs: b?.baseMs ?? d.baseMs, factor: b?.factor ?? d.factor, maxMs: b?.maxMs ?? d.maxMs, jitter: b?.jitter ?? d.jitter })
}

/** Creates a consumer; nothing connects until `start()`. Options are validated now (LL_OPTIONS_INVALID). */
export function createConsumer<V = unknown>(input: ConsumerOptions<V>): LifelineConsumer {
  const options = validateOptions(ConsumerOptionsSchema, input, 'consumer') as unknown as ConsumerOptions<V>
  for (const [path, value, required] of functionOptions(options as ConsumerOptions<unknown>)) {
    if ((required || value !== undefined) && typeof value !== 'function') {
      throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: consumer.${path}: must be a function`)
    }
  }
  const log: Logger = (options.logger ?? silentLogger()).child({ component: 'consumer', group: options.groupId })
  const decoderBase = resolveDecoder(options.decoder as never)
  const decoder = options.schema ? withSchema(decoderBase, options.schema) : decoderBase
  const concurrency = options.concurrency ?? consumerDefaults.concurrency
  const maxPerPartition = options.maxBufferedPerPartition ?? consumerDefaults.maxBufferedPerPartition
  const maxBytes = options.maxBufferedBytes ?? consumerDefaults.maxBufferedBytes
  const atMostOnce = (options.delivery ?? consumerDefaults.delivery) === 'at-most-once'
  const policy = backoffPolicy(options.retry)
  const maxAttempts = options.retry?.maxAttempts ?? consumerDefaults.retry.maxAttempts
  const drainTimeoutMs = options.drainTimeoutMs ?? consumerDefaults.drainTimeoutMs
  const classifyOptions = { permanentCodes: options.permanentCodes, classifier: options.classifier }
  const ordering = options.ordering ?? consumerDefaults.ordering
  const tiers = options.retryTopics?.delaysMs ?? []
  const tierTemplate = options.retryTopics?.topic ?? consumerDefaults.retryTopics.topic
  const store = options.state ? new OrderingStore(options.state) : undefined
  /** Keys park behind records that leave the main path (ordering key/partition with a state database). */
  const parking = store !== undefined && ordering !== 'none'
  if (tiers.length > 0 && ordering !== 'none' && !store) {
    throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: consumer.state: retryTopics with ordering '${ordering}' needs a state database, so later records of a retried key park behind it instead of overtaking it (or use ordering 'none' for independent retries)`)
  }
  if (options.sequence && !store) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: consumer.state: sequence needs a state database for the last handled sequence of each key')
  if (options.startOffsets && options.sequence) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: consumer.startOffsets: cannot be combined with sequence (records held behind a gap let later offsets finish first, so a stored position could skip them)')
  if (options.startOffsets && ordering !== 'partition') throw new LifelineError('LL_OPTIONS_INVALID', "invalid options: consumer.startOffsets: needs ordering 'partition' (a stored position is only safe when every offset below it is finished)")
  if (options.sequence && ordering === 'none') throw new LifelineError('LL_OPTIONS_INVALID', "invalid options: consumer.sequence: needs ordering 'key' or 'partition'")
  /** Retry-tier topic → its source topic and tier number. */
  const tierTopics = new Map<string, { source: string; n: number }>()
  for (const topic of options.topics) {
    tiers.forEach((_, i) => {
      const name = retryTopicName(options.service, topic, i + 1, tierTemplate)
      if (options.topics.includes(name) || tierTopics.has(name)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: consumer.retryTopics.topic: tier ${i + 1} of ${topic} is named ${name}, which is already a source or tier topic`)
      tierTopics.set(name, { source: topic, n: i + 1 })
    })
  }
  const pollMs = options.parking?.pollMs ?? consumerDefaults.parking.pollMs
  const masker = options.masking ? new Masker(options.masking.policies, options.masking.keyring) : undefined
  const seqOptions = options.sequence
  let releaseTimer: NodeJS.Timeout | undefined
  let gapTimer: NodeJS.Timeout | undefined

  const breaker = options.circuitBreaker ? new CircuitBreaker(options.circuitBreaker) : undefined
  const emitter = new EventEmitter<ConsumerEvents>()
  const partitions = new Map<string, PartitionState>()
  // The scheduler keeps key order; `running` below bounds handlers actually executing, so a record
  // sleeping in backoff holds its key but not a concurrency slot.
  const scheduler = new KeyScheduler<Item>({ ordering, concurrency: Number.MAX_SAFE_INTEGER })
  const stopping = unboundedController()
  const drainWaiters = new Set<() => void>()
  let running = 0
  /** Records back from a backoff or the breaker, waiting for a handler slot; served before new records. */
  const slotWaiters: Array<() => void> = []
  let inFlight = 0
  let bufferedBytes = 0
  let kafka: KafkaConsumer | undefined
  let dlq: KafkaProducer | undefined
  let loopDone: Promise<void> = Promise.resolve()
  let lastPollAt: number | undefined
  let commitTimer: NodeJS.Timeout | undefined
  let commitChain: Promise<void> = Promise.resolve()
  let starting: Promise<void> | undefined
  let closing: Promise<void> | undefined

  const metrics: RuntimeMetrics = createRuntimeMetrics(options.metrics?.registry, options.groupId, {
    inFlight: () => inFlight,
    buffered: () => scheduler.queued,
    pausedPartitions: () => [...partitions.values()].filter((p) => p.pausedFor.size > 0).length,
    breakerState: () => breaker?.snapshot(Date.now()).state,
    lag: () =>
      [...partitions.values()].flatMap((p) => {
        const w = kafka?.watermarks(p.topic, p.partition)
        const position = p.offsets.committed ?? p.offsets.lowestUnfinished
        return w && position !== undefined ? [{ topic: p.topic, partition: p.partition, lag: Math.max(0, w.high - position) }] : []
      }),
    parkedKeys: () => sourceStates().reduce((n, s) => n + s.parked.size, 0),
    parkedRecords: () => sourceStates().reduce((n, s) => n + [...s.parked.values()].reduce((m, e) => m + e.records, 0), 0),
    oldestParkedSeconds: () => {
      const oldest = Math.min(...sourceStates().flatMap((s) => [...s.parked.values()].map((e) => e.parkedAt)))
      return Number.isFinite(oldest) ? (Date.now() - oldest) / 1000 : 0
    },
    reorderBuffered: () => sourceStates().reduce((n, s) => n + (s.sequences?.buffered ?? 0), 0),
    tierDepth: () =>
      [...partitions.values()].flatMap((p) => {
        if (!p.tierOf) return []
        const w = kafka?.watermarks(p.topic, p.partition)
        const position = p.offsets.committed ?? p.offsets.lowestUnfinished
        return w ? [{ topic: p.topic, depth: Math.max(0, w.high - (position ?? w.low)) }] : []
      }),
  })

  /** Assigned source (non-tier) partitions. */
  function sourceStates(): PartitionState[] {
    return [...partitions.values()].filter((s) => !s.tierOf)
  }

  /** Emits to user listeners; a throwing listener is logged and never disturbs processing. */
  function emit<K extends keyof ConsumerEvents>(event: K, ...args: ConsumerEvents[K]): void {
    try {
      ;(emitter.emit as (e: K, ...a: ConsumerEvents[K]) => boolean)(event, ...args)
    } catch (err) {
      log.warn({ err, event }, 'an event listener threw; ignored')
    }
  }

  function reportError(error: unknown, context: string): void {
    log.warn({ err: error }, context)
    if (emitter.listenerCount('error') > 0) emit('error', error)
  }

  // ---- pausing -------------------------------------------------------------------------------------
  function pause(state: PartitionState, reason: string): void {
    if (state.pausedFor.has(reason)) return
    state.pausedFor.add(reason)
    if (state.pausedFor.size === 1 && !state.revoking) kafka?.pause([{ topic: state.topic, partition: state.partition }])
    emit('paused', { topic: state.topic, partition: state.partition }, reason)
  }

  function resume(state: PartitionState, reason: string): void {
    if (!state.pausedFor.delete(reason) || state.pausedFor.size > 0) return
    if (!state.revoking && partitions.get(tpKey(state.topic, state.partition)) === state) kafka?.resume([{ topic: state.topic, partition: state.partition }])
    emit('resumed', { topic: state.topic, partition: state.partition })
  }

  let memoryPaused = false
  /**
   * A partition's load: records queued plus records started and not finished (running, in backoff, at the
   * breaker, being dead-lettered). Both count, so many failing keys cannot pile up without bound.
   */
  const load = (state: PartitionState) => state.buffered + state.running.size

  /** Pauses a partition whose load is at its limit, or every partition when buffered bytes are. */
  function applyBackpressure(state: PartitionState): void {
    if (load(state) >= maxPerPartition) pause(state, 'backpressure')
    if (!memoryPaused && bufferedBytes >= maxBytes) {
      memoryPaused = true
      for (const s of partitions.values()) pause(s, 'memory')
    }
    relieve(state)
  }

  /** Resumes once a backlog drained to half its limit (hysteresis: no pause/resume flapping). */
  function relieve(state: PartitionState): void {
    if (load(state) <= maxPerPartition / 2) resume(state, 'backpressure')
    if (memoryPaused && bufferedBytes <= maxBytes / 2) {
      memoryPaused = false
      for (const s of partitions.values()) resume(s, 'memory')
    }
  }

  // ---- intake and dispatch -------------------------------------------------------------------------
  function accept(record: ConsumedRecord): Item | undefined {
    const state = partitions.get(tpKey(record.topic, record.partition))
    // Not ours (any more): its new owner reads it again from the committed offset.
    if (!state || state.revoking) return undefined
    if (!state.ready) {
      // The partition's ordering state is still loading: keep the record (untracked) until it is.
      state.stash.push(record)
      return undefined
    }
    if (!state.offsets.track(record.offset)) return undefined
    const base = { topic: record.topic, partition: record.partition, schedulingKey: schedulingKey(record.key), size: record.size, state, kind: 'record' as const, source: record }
    if (!state.tierOf) return { ...base, record }
    const tier = readTierRecord(record)
    if (tier) return { ...base, record: originView(record, tier), tier }
    // Not a record this runtime wrote (or its headers were damaged): dead-letter it as it is, under its source topic.
    const forced = new LifelineError('LL_RETRY_TIER', `${record.topic}[${record.partition}]@${record.offset} has no readable retry-tier headers (lifeline.retry.tier, lifeline.retry.due, lifeline.origin.*); dead-lettering it`, { retriable: false })
    return { ...base, record: { ...record, topic: state.tierOf.source }, forced }
  }

  /** Sends an accepted item on: a retry-tier record waits until due, a sequenced record through the reorder buffer. */
  function route(item: Item): void {
    const state = item.state
    if (state.tierOf) {
      if (item.tier && (state.delayed.length > 0 || item.tier.dueAt > Date.now())) {
        state.delayed.push(item)
        pause(state, 'retry-delay')
        armDelay(state)
      } else releaseDue(item)
      return
    }
    if (state.sequences && item.record.key !== null) offerSequenced(item)
    else enqueue(item)
  }

  // ---- retry tiers: holding records until due -------------------------------------------------------
  function releaseDue(item: Item): void {
    if (item.tier) metrics.dueLag(item.tier.tier, Math.max(0, Date.now() - item.tier.dueAt) / 1000)
    enqueue(item)
  }

  function armDelay(state: PartitionState): void {
    if (state.delayTimer || state.delayed.length === 0) return
    const head = state.delayed[0]!
    state.delayTimer = setTimeout(() => {
      state.delayTimer = undefined
      if (state.revoking) return
      const now = Date.now()
      while (state.delayed.length > 0 && state.delayed[0]!.tier!.dueAt <= now) releaseDue(state.delayed.shift()!)
      if (state.delayed.length === 0) resume(state, 'retry-delay')
      else armDelay(state)
      pump()
    }, Math.max(0, head.tier!.dueAt - Date.now()))
  }

  // ---- sequences: reorder buffer ---------------------------------------------------------------------
  /** The record's sequence (decoding it at intake); undefined when it has none or is already marked to fail. */
  function sequenceOf(item: Item): number | undefined {
    if (item.seq !== undefined) return item.seq
    if (item.forced !== undefined) return undefined
    let value: unknown
    try {
      value = wrapDecode(decoder, item.record.value)
      item.decoded = { value }
    } catch (error) {
      item.decoded = { error }
      return undefined
    }
    let raw: unknown
    try {
      raw = seqOptions!.extract(new Message(item.record, value, 0, item.state.handlers.signal) as LifelineMessage<unknown>)
    } catch (err) {
      item.forced = new LifelineError('LL_SEQUENCE_INVALID', `sequence.extract threw for ${item.record.topic}[${item.record.partition}]@${item.record.offset}: ${(err as Error)?.message ?? String(err)}`, { cause: err, retriable: false })
      return undefined
    }
    if (raw === undefined || raw === null) return undefined
    const seq = typeof raw === 'bigint' && raw >= 0n && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : raw
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
      item.forced = new LifelineError('LL_SEQUENCE_INVALID', `sequence.extract returned ${typeof raw === 'bigint' ? `${raw}n` : JSON.stringify(raw)} for ${item.record.topic}[${item.record.partition}]@${item.record.offset}; expected a non-negative safe integer`, { retriable: false })
      return undefined
    }
    item.seq = seq
    return seq
  }

  /** Offers a record to its partition's reorder buffer; false when the buffer had no room (kept in `overflow`). */
  function offerSequenced(item: Item): boolean {
    const state = item.state
    const seq = sequenceOf(item)
    if (seq === undefined) {
      enqueue(item)
      return true
    }
    const verdict = state.sequences!.offer(item.schedulingKey!, seq, item, Date.now())
    switch (verdict.kind) {
      case 'apply':
        for (const it of verdict.items) enqueue(it)
        return true
      case 'duplicate':
        skipDuplicate(item)
        return true
      case 'buffered':
        return true
      case 'overflow':
        state.overflow.push(item)
        pause(state, 'reorder')
        return false
    }
  }

  function skipDuplicate(item: Item): void {
    const r = item.record
    metrics.duplicateSkipped(r.topic)
    log.debug({ topic: r.topic, partition: r.partition, offset: r.offset, seq: item.seq }, 'duplicate sequence skipped')
    if (emitter.listenerCount('duplicate') > 0) emit('duplicate', { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key!, seq: item.seq! })
    if (item.source) item.state.offsets.complete(item.source.offset)
  }

  /** Offers the records the reorder buffer had no room for again, oldest first; resumes when all fit. */
  function retryOverflow(state: PartitionState): void {
    if (state.overflow.length === 0) return
    const waiting = state.overflow
    state.overflow = []
    for (const item of waiting) {
      if (state.overflow.length > 0) state.overflow.push(item)
      else offerSequenced(item)
    }
    if (state.overflow.length === 0) resume(state, 'reorder')
  }

  /** Applies timed-out gaps: `skip` runs the held records, `dead-letter` dead-letters them, `hold` alerts. */
  function expireGaps(): void {
    const now = Date.now()
    for (const state of partitions.values()) {
      const buffer = state.sequences
      if (!buffer || state.revoking) continue
      const deadline = buffer.nextDeadline()
      if (deadline !== undefined && deadline <= now) {
        for (const expiry of buffer.expire(now)) {
          const key = Buffer.from(expiry.key, 'latin1')
          metrics.gap(state.topic, expiry.kind)
          const records = expiry.kind === 'hold' ? 0 : expiry.items.length
          log.warn({ topic: state.topic, partition: state.partition, key: key.toString('utf8'), missing: expiry.missing, policy: expiry.kind, records }, 'sequence gap timed out')
          emit('sequence-gap', { topic: state.topic, partition: state.partition, key, missing: expiry.missing, policy: expiry.kind, records, ...(expiry.kind === 'hold' ? { waitingMs: expiry.waitingMs } : {}) })
          if (expiry.kind === 'hold') continue
          store!.recordEvent(options.groupId, state.topic, key, expiry.kind === 'skip' ? 'gap-skipped' : 'gap-dead-lettered', { missing: expiry.missing, records }).catch((err: unknown) => reportError(err, 'recording a sequence gap failed'))
          for (const it of expiry.items) {
            if (expiry.kind === 'dead-letter') it.forced = new LifelineError('LL_SEQUENCE_GAP', `sequence ${expiry.missing[0]}..${expiry.missing[1]} of this key never arrived within ${buffer.timeoutMs} ms; record seq ${it.seq} dead-lettered (policy dead-letter)`, { retriable: false })
            enqueue(it)
          }
        }
      }
      retryOverflow(state)
    }
    pump()
  }

  function noteSequence(item: Item): void {
    if (item.seq === undefined || !item.state.sequences) return
    const sk = item.schedulingKey!
    const known = item.state.dirtySeq.get(sk)
    if (!known || known.seq < item.seq) item.state.dirtySeq.set(sk, { key: item.record.key!, seq: item.seq })
  }

  function enqueue(item: Item): void {
    scheduler.enqueue(item)
    item.state.buffered++
    bufferedBytes += item.size
  }

  function pump(): void {
    while (running < concurrency && slotWaiters.length === 0 && !stopping.signal.aborted) {
      const item = scheduler.next()
      if (!item) return
      item.state.buffered--
      bufferedBytes -= item.size
      if (item.kind === 'drain') {
        void execute(item, undefined) // holds the key's lane; takes a slot per replayed record
        continue
      }
      running++ // the slot for its first attempt, reserved now so this loop never over-dispatches
      // Draining only ever resumes here; pausing is judged by the poll loop (see loop()).
      if (item.state.pausedFor.size > 0 || memoryPaused) relieve(item.state)
      const first = runSynchronously(item)
      if (first !== 'done') void execute(item, first)
    }
  }

  /**
   * The first attempt, run in place: a record whose value decodes and whose handler returns without a promise
   * finishes here with no promise at all (the common case for cheap handlers). Anything else — a decode
   * failure, a thrown error, a returned promise, a breaker to consult — continues on the async path with
   * what happened so far, so the handler never runs twice for one attempt.
   */
  function runSynchronously(item: Item): FirstAttempt | 'done' | undefined {
    // Anything but a plain record of a key that is not parked takes the async path.
    if (breaker || item.kind !== 'record' || item.tier || item.parkedId !== undefined || item.forced !== undefined) return undefined
    if (item.state.parked.size > 0 && item.schedulingKey !== null && item.state.parked.has(item.schedulingKey)) return undefined
    let value: unknown
    const decoded = item.decoded
    if (decoded && 'error' in decoded) return { decodeError: decoded.error }
    if (decoded) value = decoded.value
    else {
      try {
        value = wrapDecode(decoder, item.record.value)
      } catch (decodeError) {
        return { decodeError } // dead-lettered on the async path
      }
    }
    const startedAt = performance.now()
    let result: unknown
    try {
      result = options.handler(message(item, value, 1))
    } catch (error) {
      return { value, startedAt, result: Promise.reject(error) }
    }
    if (isThenable(result)) return { value, startedAt, result: result as Promise<void> }
    succeeded(item.record, 1, startedAt)
    running--
    finish(item, 'done')
    return 'done'
  }

  /** Metrics and the `processed` event for a successful attempt (shared by both paths). */
  function succeeded(r: ConsumedRecord, attempts: number, startedAt: number): void {
    const seconds = (performance.now() - startedAt) / 1000
    metrics.handlerDuration(r.topic, 'success', seconds)
    metrics.processed(r.topic)
    if (emitter.listenerCount('processed') > 0) emit('processed', { topic: r.topic, partition: r.partition, offset: r.offset, attempts, durationMs: seconds * 1000 })
  }

  /** Bookkeeping once a record is finished or abandoned (shared by both paths). */
  function finish(item: Item, outcome: Outcome): void {
    const state = item.state
    if (state.pausedFor.has('backpressure')) relieve(state)
    if (outcome === 'done' && item.source && partitions.get(tpKey(state.topic, state.partition)) === state) {
      noteSequence(item)
      state.offsets.complete(item.source.offset)
    }
    scheduler.done(item)
    for (const wake of drainWaiters) wake()
  }

  async function execute(item: Item, first: FirstAttempt | undefined): Promise<void> {
    const state = item.state
    state.running.add(item)
    inFlight++
    let outcome: Outcome = 'abandoned'
    try {
      for (let tries = 1; ; tries++) {
        try {
          outcome = item.kind === 'drain' ? await drainKey(item) : await processRecord(item, tries === 1 ? first : undefined)
          break
        } catch (err) {
          // processRecord handles handler and DLQ failures itself; this is a failing user function (a backoff
          // or DLQ-topic function) or a bug. The record keeps its key and its offset until it succeeds.
          reportError(err, 'record processing failed unexpectedly; retrying it')
          try {
            await sleep(Math.min(30_000, 500 * 2 ** Math.min(tries, 6)), state.waits.signal)
          } catch {
            break // revoked or closing: left uncommitted, redelivered to the next owner
          }
        }
      }
    } finally {
      state.running.delete(item)
      inFlight--
      finish(item, outcome)
      pump()
    }
  }

  // ---- circuit breaker -----------------------------------------------------------------------------
  /** Applies the breaker's state changes: events, logs, and pausing every partition while not closed. */
  function breakerTransitions(): void {
    if (!breaker) return
    for (const t of breaker.takeTransitions()) {
      log.warn({ from: t.from, to: t.to, failureRate: t.failureRate }, `circuit breaker ${t.to}`)
      metrics.breakerTransition(t.to)
      emit('breaker', t)
      for (const s of partitions.values()) {
        if (t.to === 'closed') resume(s, 'breaker')
        else pause(s, 'breaker')
      }
    }
  }

  /** Frees a handler slot: to a waiting retry first, else to a new record. */
  function releaseSlot(): void {
    running--
    const waiter = slotWaiters.shift()
    if (waiter) {
      running++
      waiter()
    } else queueMicrotask(pump)
  }

  /** Takes a handler slot, waiting for one when all are busy; false when cancelled meanwhile. */
  async function takeSlot(signal: AbortSignal): Promise<boolean> {
    if (running < concurrency && slotWaiters.length === 0) {
      running++
      return true
    }
    if (signal.aborted) return false
    return new Promise<boolean>((resolve) => {
      const granted = () => {
        signal.removeEventListener('abort', cancel)
        resolve(true)
      }
      const cancel = () => {
        const i = slotWaiters.indexOf(granted)
        if (i >= 0) slotWaiters.splice(i, 1)
        resolve(false)
      }
      slotWaiters.push(granted)
      signal.addEventListener('abort', cancel, { once: true })
    })
  }

  /** Waits (holding no slot) until the breaker lets one more attempt start; 'cancelled' on revoke/close. */
  async function admit(item: Item): Promise<Permit | 'cancelled'> {
    const b = breaker!
    for (;;) {
      const now = Date.now()
      if (b.canRun(now)) {
        const permit = b.started(now)
        breakerTransitions()
        return permit
      }
      breakerTransitions()
      const wait = Math.max(10, Math.min(1000, (b.nextProbeAt() ?? now + 100) - now))
      try {
        await sleep(wait, item.state.waits.signal)
      } catch {
        return 'cancelled'
      }
    }
  }

  // ---- one record: attempts, retries, dead-lettering -----------------------------------------------
  /** The handler's message; a retry-tier record's attempt counts the attempts made before its tier. */
  function message(item: Item, value: unknown, attempt: number): LifelineMessage<V> {
    return new Message(item.record, value as V, attempt + (item.tier?.attempts ?? 0), item.state.handlers.signal)
  }

  function classify(err: unknown): Classification {
    try {
      return classifyError(err, classifyOptions)
    } catch (classifierError) {
      reportError(classifierError, 'the classifier threw; falling back to the default classification')
      return classifyError(err, { permanentCodes: options.permanentCodes })
    }
  }

  /**
   * What happens to a record before its handler: a record of a parked key is stored behind the head; a
   * retry-tier copy whose key moved on is skipped. Undefined = run it.
   */
  async function preflight(item: Item): Promise<'parked' | 'skipped' | typeof CANCELLED | undefined> {
    const r = item.record
    if (!parking || r.key === null) return undefined
    const state = item.state
    if (item.tier) {
      if (item.tier.token === undefined) return undefined
      const current = await withState(state, 'checking a retry record against its parked key', () => store!.isHead(options.groupId, r.topic, r.key!, item.tier!.token!))
      if (current === CANCELLED) return CANCELLED
      if (current) return undefined
      metrics.staleRetry(r.topic)
      log.info({ topic: item.source?.topic, partition: r.partition, offset: r.offset, tier: item.tier.tier }, 'stale retry-tier record skipped: its key is no longer parked behind it')
      return 'skipped'
    }
    if (item.parkedId !== undefined || state.parked.size === 0) return undefined
    const entry = state.parked.get(item.schedulingKey!)
    if (!entry) return undefined
    if (r.offset === entry.headOffset) {
      // The head itself, delivered again (a crash before its offset was committed): run it again while its
      // key is parked; a released key's head already succeeded.
      return entry.status === 'parked' ? undefined : 'skipped'
    }
    // Without sequences a key's earlier offsets ran before its head failed: a redelivery, not new work.
    if (!seqOptions && r.offset < entry.headOffset) return 'skipped'
    const stored = await withState(state, 'storing a record behind its parked key', () =>
      store!.addFollower({ group: options.groupId, topic: r.topic, partition: r.partition, key: r.key!, offset: r.offset, seq: item.seq, value: r.value, headers: r.headers, timestamp: r.timestamp }),
    )
    if (stored === CANCELLED) return CANCELLED
    if (stored) {
      entry.records++
      metrics.recordParked(r.topic)
      if (emitter.listenerCount('record-parked') > 0) emit('record-parked', { topic: r.topic, partition: r.partition, key: r.key, offset: r.offset })
    }
    return 'parked'
  }

  /** After a success: a replayed parked record leaves the table; a retry-tier head releases its key. */
  async function afterSuccess(item: Item): Promise<boolean> {
    const r = item.record
    if (item.parkedId !== undefined) {
      if ((await withState(item.state, 'removing a replayed parked record', () => store!.deleteRecord(item.parkedId!))) === CANCELLED) return false
    }
    if (parking && item.tier?.token !== undefined && r.key !== null) {
      const partition = await withState(item.state, 'releasing a key whose head succeeded', () => store!.headSucceeded(options.groupId, r.topic, r.key!, item.tier!.token!))
      if (partition === CANCELLED) return false
      const owner = partition === undefined ? undefined : partitions.get(tpKey(r.topic, partition))
      if (owner && owner.ready && !owner.revoking) markReleased(owner, r.key)
    }
    return true
  }

  async function processRecord(item: Item, first?: FirstAttempt): Promise<Outcome> {
    const r = item.record
    const resumedAttempt = first && 'result' in first ? first : undefined
    let value: unknown = resumedAttempt?.value
    let failure: { classification: Classification; error: unknown } | undefined
    if (!first) {
      const pre = await preflight(item)
      if (pre !== undefined) {
        releaseSlot()
        return pre === CANCELLED ? 'abandoned' : 'done'
      }
    }
    if (item.forced !== undefined) failure = { classification: classify(item.forced), error: item.forced }
    else if (first && 'decodeError' in first) failure = { classification: classify(first.decodeError), error: first.decodeError }
    else if (!first && item.decoded) {
      if ('error' in item.decoded) failure = { classification: classify(item.decoded.error), error: item.decoded.error }
      else value = item.decoded.value
    } else if (!first) {
      try {
        value = wrapDecode(decoder, r.value)
      } catch (err) {
        failure = { classification: classify(err), error: err }
      }
    }
    // A retry-tier record gets one attempt per tier; a record in the main path retries in place first.
    const attemptsHere = item.tier ? 1 : maxAttempts
    const now = Date.now()
    let firstFailureAt = now
    let lastFailureAt = now
    let attempt = 0
    let delayMs = 0
    // The first attempt runs in the slot pump() reserved; every later one takes a slot again.
    let hasSlot = true
    const giveUpSlot = () => {
      if (hasSlot) {
        hasSlot = false
        releaseSlot()
      }
    }
    while (!failure) {
      let permit: Permit | undefined
      if (breaker) {
        if (!breaker.canRun(Date.now())) giveUpSlot() // wait for the breaker without holding a slot
        const admitted = await admit(item)
        if (admitted === 'cancelled') {
          giveUpSlot()
          return 'abandoned' // close() or revocation while the breaker held it back
        }
        permit = admitted
      }
      if (!hasSlot) {
        if (!(await takeSlot(item.state.waits.signal))) {
          if (permit) breaker!.release(permit)
          return 'abandoned'
        }
        hasSlot = true
      }
      attempt++
      const resumed = attempt === 1 ? resumedAttempt : undefined
      const startedAt = resumed?.startedAt ?? performance.now()
      try {
        const pending = resumed ? resumed.result : options.handler(message(item, value, attempt))
        // A synchronous handler costs no extra turn of the microtask queue.
        if (isThenable(pending)) await pending
        if (permit) {
          breaker!.record('success', Date.now(), permit)
          breakerTransitions()
        }
        succeeded(r, attempt + (item.tier?.attempts ?? 0), startedAt)
        if ((item.parkedId !== undefined || item.tier) && !(await afterSuccess(item))) return 'abandoned'
        return 'done'
      } catch (err) {
        metrics.handlerDuration(r.topic, 'failure', (performance.now() - startedAt) / 1000)
        // A handler stopped by a drain timeout is abandoned, never dead-lettered: it will be redelivered.
        if (item.state.handlers.signal.aborted) return 'abandoned'
        const classification = classify(err)
        metrics.failed(r.topic, classification.code)
        if (permit) {
          // Only transient failures say something about the downstream; a bad payload does not.
          if (classification.kind === 'retriable') breaker!.record('failure', Date.now(), permit)
          else breaker!.release(permit)
          breakerTransitions()
          if (classification.kind === 'retriable' && breaker!.state !== 'closed') {
            // An outage: this attempt does not count toward maxAttempts or the deadline; the record waits
            // at the breaker instead of walking towards the DLQ.
            attempt--
            metrics.retried(r.topic, classification.code)
            continue
          }
        }
        lastFailureAt = Date.now()
        if (attempt === 1) firstFailureAt = lastFailureAt
        const decision = retryDecision({
          attempt,
          maxAttempts: attemptsHere,
          firstFailureAt,
          now: lastFailureAt,
          deadlineMs: options.retry?.deadlineMs,
          delayMs: classification.kind === 'permanent' ? 0 : delayFor(policy, attempt, err),
          permanent: classification.kind === 'permanent',
        })
        if (!decision.retry) {
          failure = { classification, error: err }
          break
        }
        delayMs = decision.delayMs
        metrics.retried(r.topic, classification.code)
        emit('retry', { topic: r.topic, partition: r.partition, offset: r.offset, attempt, delayMs: decision.delayMs, error: err })
        log.debug({ topic: r.topic, partition: r.partition, offset: r.offset, attempt, delayMs: decision.delayMs, code: classification.code }, 'retrying record')
      } finally {
        giveUpSlot()
      }
      // The record now waits out its backoff without a handler slot (released above, pumped deferred).
      try {
        await sleep(delayMs, item.state.waits.signal)
      } catch {
        return 'abandoned' // close() or revocation cancelled the backoff: the record stays uncommitted
      }
    }
    giveUpSlot() // the DLQ write needs no handler slot (an undecodable record never used its slot)
    return leaveMainPath(item, value, failure, Math.max(attempt, 1), firstFailureAt, lastFailureAt)
  }

  /** Runs a state-store step, pausing the partition and retrying while it fails; CANCELLED on revoke/close. */
  async function withState<T>(state: PartitionState, what: string, step: () => Promise<T>): Promise<T | typeof CANCELLED> {
    return retrying(state, 'state', step, (err, tries) => new LifelineError('LL_STATE', `${what} failed (try ${tries}); retrying`, { cause: err }))
  }

  /**
   * Runs `step` until it succeeds. While it fails the partition is paused under `reason` (nothing after it
   * is fetched) and the step is retried with backoff: a record is never skipped because a write failed.
   */
  async function retrying<T>(state: PartitionState, reason: string, step: () => Promise<T>, describe: (err: unknown, tries: number) => LifelineError): Promise<T | typeof CANCELLED> {
    let failing = false
    try {
      for (let tries = 1; ; tries++) {
        try {
          return await step()
        } catch (err) {
          if (!failing) {
            failing = true
            state.failing.set(reason, (state.failing.get(reason) ?? 0) + 1)
            pause(state, reason)
          }
          reportError(describe(err, tries), `${reason} write failed`)
          try {
            await sleep(Math.min(30_000, 250 * 2 ** Math.min(tries, 7)), state.waits.signal)
          } catch {
            return CANCELLED
          }
        }
      }
    } finally {
      if (failing) {
        const left = (state.failing.get(reason) ?? 1) - 1
        state.failing.set(reason, left)
        if (left === 0) resume(state, reason)
      }
    }
  }

  /**
   * A record whose attempts here failed leaves the main path: to the next retry tier when the failure is
   * retriable and a tier is left, else to the DLQ. With parking its key is parked (or its head moved) first,
   * so a crash between the two can only leave a stale copy, never an unparked key. The source offset is
   * committable once the write is acknowledged.
   */
  async function leaveMainPath(item: Item, value: unknown, failure: { classification: Classification; error: unknown }, attemptsHere: number, firstFailureAt: number, lastFailureAt: number): Promise<Outcome> {
    const origin = item.record
    const attempts = (item.tier?.attempts ?? 0) + attemptsHere
    const nextTier = (item.tier?.tier ?? 0) + 1
    const toTier = tiers.length > 0 && failure.classification.kind === 'retriable' && nextTier <= tiers.length
    const target = toTier ? retryTopicName(options.service, origin.topic, nextTier, tierTemplate) : dlqTopicName(options.service, origin.topic, options.deadLetter?.topic)
    const location = toTier ? `retry:${nextTier}` : 'dlq'
    const context = failureContext(origin, options.groupId, options.service, { classification: failure.classification, attempts, firstFailureAt: item.tier?.firstFailureAt ?? firstFailureAt, lastFailureAt }, RUNTIME_FILE)
    const parks = parking && origin.key !== null
    // Hops between tiers keep the token (a copy redelivered after a crash stays valid); a new head gets a new one.
    const token = parks ? (item.tier?.token ?? randomUUID()) : undefined
    if (parks) {
      const moved = await withState(item.state, 'parking a key', () =>
        store!.moveHead({ group: options.groupId, topic: origin.topic, partition: origin.partition, key: origin.key!, headOffset: origin.offset, token: token!, location, headTopic: target, errorCode: failure.classification.code, errorMessage: failure.classification.message, fromParkedRecord: item.parkedId }),
      )
      if (moved === CANCELLED) return 'abandoned'
      const owner = partitions.get(tpKey(origin.topic, origin.partition))
      if (owner && !owner.tierOf) {
        const sk = schedulingKey(origin.key)!
        const entry = owner.parked.get(sk)
        if (entry) {
          entry.status = 'parked'
          entry.headOffset = origin.offset
          if (item.parkedId !== undefined) entry.records = Math.max(0, entry.records - 1)
        } else {
          owner.parked.set(sk, { key: origin.key!, status: 'parked', headOffset: origin.offset, records: 0, parkedAt: Date.now(), draining: false })
          metrics.keyParked(origin.topic)
        }
      }
      log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, location }, item.tier || item.parkedId !== undefined ? 'parked key: head moved' : 'key parked')
      emit('parked', { topic: origin.topic, partition: origin.partition, key: origin.key!, offset: origin.offset, location })
    }
    const dueAt = Date.now() + (toTier ? (tiers[nextTier - 1] as number) : 0)
    const out = toTier ? tierRecord(target, origin, context, nextTier, dueAt, token) : maskedDeadLetter(target, origin, context)
    const where = `${origin.topic}[${origin.partition}]@${origin.offset}`
    const acks = await retrying(item.state, toTier ? 'retry-tier' : 'dead-letter', () => dlq!.send([out]), (err, tries) =>
      toTier ? new LifelineError('LL_RETRY_TIER', `writing ${where} to ${target} failed (try ${tries}); retrying`, { cause: err }) : new LifelineError('LL_DEAD_LETTER', `writing ${where} to ${target} failed (try ${tries}); retrying`, { cause: err }),
    )
    if (acks === CANCELLED) return 'abandoned'
    if (toTier) {
      metrics.tierForwarded(origin.topic, nextTier)
      emit('retry-tier', { topic: origin.topic, partition: origin.partition, offset: origin.offset, tier: nextTier, retryTopic: target, dueAt, attempts, errorCode: failure.classification.code })
      log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, retryTopic: target, dueAt: new Date(dueAt).toISOString(), code: failure.classification.code, attempts }, 'record moved to a retry tier')
      return 'done'
    }
    metrics.deadLettered(origin.topic, failure.classification.code)
    emit('dead-letter', { topic: origin.topic, partition: origin.partition, offset: origin.offset, dlqTopic: target, dlqOffset: acks[0]!.offset, errorCode: failure.classification.code, attempts })
    log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, dlqTopic: target, code: failure.classification.code, attempts }, 'record dead-lettered')
    if (options.onDeadLetter) await runHook(item, value, failure.error)
    return 'done'
  }

  /** The DLQ record, with the masking policy applied to its value, error message, stack and headers. */
  function maskedDeadLetter(target: string, origin: ConsumedRecord, context: ReturnType<typeof failureContext>): ReturnType<typeof deadLetterRecord> {
    const spring = options.deadLetter?.springHeaders
    if (!masker?.covers(origin.topic)) return deadLetterRecord(target, origin, context, { spring })
    const m = masker.mask(origin.topic, { value: origin.value, errorMessage: context.errorMessage, errorStack: context.errorStack, headers: origin.headers })
    const out = deadLetterRecord(target, { ...origin, value: m.value, headers: m.headers }, { ...context, errorMessage: m.errorMessage, errorStack: m.errorStack }, { spring })
    if (m.masked) out.headers = [...(out.headers ?? []), { key: MASKED_HEADER, value: Buffer.from('v1') }]
    return out
  }

  // ---- parked keys: release and replay -------------------------------------------------------------
  /** The key was released (its head succeeded, was redriven or discarded): replay its parked records in its lane. */
  function markReleased(state: PartitionState, key: Buffer): void {
    const sk = schedulingKey(key)!
    let entry = state.parked.get(sk)
    if (!entry) {
      entry = { key, status: 'released', headOffset: -1, records: 0, parkedAt: Date.now(), draining: false }
      state.parked.set(sk, entry)
    }
    entry.status = 'released'
    if (entry.draining) return
    entry.draining = true
    enqueue({ kind: 'drain', topic: state.topic, partition: state.partition, schedulingKey: sk, size: 0, record: { topic: state.topic, partition: state.partition, offset: -1, key, value: null, headers: [], timestamp: 0, size: 0 }, state, source: undefined })
    pump()
  }

  function parkedRecordItem(state: PartitionState, row: ParkedRecord): Item {
    const record: ConsumedRecord = { topic: row.topic, partition: row.partition, offset: row.offset, key: row.key, value: row.value, headers: row.headers, timestamp: row.timestamp, size: row.key.length + (row.value?.length ?? 0) }
    return { kind: 'record', topic: state.topic, partition: state.partition, schedulingKey: schedulingKey(row.key), size: record.size, record, state, source: undefined, parkedId: row.id, ...(row.seq === null ? {} : { seq: row.seq }) }
  }

  /**
   * Replays a released key's parked records in order, each through the full attempt path. One that fails
   * becomes the key's new head (parked again); when none is left the key is forgotten and flows again.
   * Runs in the key's lane, so live records of the key wait behind it (and park, until it finishes).
   */
  async function drainKey(item: Item): Promise<Outcome> {
    const state = item.state
    const sk = item.schedulingKey!
    const entry = state.parked.get(sk)
    if (!entry || !store) return 'done'
    const key = entry.key
    let replayed = 0
    try {
      for (;;) {
        const rows = await withState(state, 'reading parked records', () => store.records(options.groupId, state.topic, key, 100))
        if (rows === CANCELLED) return 'abandoned'
        if (rows.length === 0) {
          const finished = await withState(state, 'finishing a release', () => store.finishRelease(options.groupId, state.topic, key))
          if (finished === CANCELLED) return 'abandoned'
          if (!finished) continue
          state.parked.delete(sk)
          metrics.keyReleased(state.topic)
          log.info({ topic: state.topic, partition: state.partition, replayed }, 'parked key released')
          emit('released', { topic: state.topic, partition: state.partition, key, replayed })
          return 'done'
        }
        for (const row of rows) {
          if (!(await takeSlot(state.waits.signal))) return 'abandoned'
          const outcome = await processRecord(parkedRecordItem(state, row))
          if (outcome === 'abandoned') return 'abandoned'
          replayed++
          if (entry.status === 'parked') return 'done' // it failed again and is the key's new head
          entry.records = Math.max(0, entry.records - 1)
        }
      }
    } finally {
      entry.draining = false
    }
  }

  /** Looks for keys released elsewhere (a retry tier on another member, an operator) in the assigned partitions. */
  let pollingReleases = false
  async function pollReleases(): Promise<void> {
    if (pollingReleases || !store) return
    pollingReleases = true
    try {
      const byTopic = new Map<string, number[]>()
      for (const s of sourceStates()) if (s.ready && !s.revoking) byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s.partition])
      for (const [topic, parts] of byTopic) {
        for (const { partition, key } of await store.releasedKeys(options.groupId, topic, parts)) {
          const s = partitions.get(tpKey(topic, partition))
          if (s && s.ready && !s.revoking && !s.parked.get(schedulingKey(key)!)?.draining) markReleased(s, key)
        }
      }
    } catch (err) {
      reportError(new LifelineError('LL_STATE', 'looking for released keys failed; retrying at the next poll', { cause: err }), 'release poll failed')
    } finally {
      pollingReleases = false
    }
  }

  async function runHook(item: Item, value: unknown, error: unknown): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await options.onDeadLetter!(message(item, value, attempt), error)
        return
      } catch (err) {
        if (attempt >= maxAttempts) {
          // The record is safe in the DLQ; an operator redrives from there. Do not block the key forever.
          reportError(new LifelineError('LL_DEAD_LETTER', `onDeadLetter failed ${attempt} times for ${item.record.topic}[${item.record.partition}]@${item.record.offset}; giving up on the hook (the record is in the DLQ)`, { cause: err }), 'onDeadLetter hook failed')
          return
        }
        try {
          await sleep(delayFor(policy, attempt, err), item.state.waits.signal)
        } catch {
          return
        }
      }
    }
  }

  // ---- commits --------------------------------------------------------------------------------------
  function commit(filter?: (s: PartitionState) => boolean): Promise<void> {
    const run = async () => {
      if (!kafka) return
      const batch = [...partitions.values()]
        .filter((s) => !filter || filter(s))
        .flatMap((s) => {
          const offset = s.offsets.committable()
          return offset === undefined ? [] : [{ state: s, offset, generation: s.offsets.generation }]
        })
      if (batch.length === 0) return
      const offsets = batch.map((b) => ({ topic: b.state.topic, partition: b.state.partition, offset: b.offset }))
      // Sequences first: everything the offsets below cover was noted before they were computed.
      await saveSequences(batch.map((b) => b.state))
      await kafka.commit(offsets)
      for (const b of batch) b.state.offsets.markCommitted(b.offset, b.generation)
      emit('commit', offsets)
    }
    // One commit at a time, in order: a late answer can never move a position back.
    const next = commitChain.then(run)
    commitChain = next.catch(() => undefined)
    return next
  }

  /** Saves the last handled sequences noted so far (a failed save keeps them noted and fails the commit). */
  async function saveSequences(states: PartitionState[]): Promise<void> {
    for (const s of states) {
      if (s.dirtySeq.size === 0) continue
      const entries = [...s.dirtySeq.values()]
      s.dirtySeq.clear()
      try {
        await store!.saveSequences(options.groupId, s.topic, s.partition, entries.map((e) => [e.key, e.seq] as const))
      } catch (err) {
        for (const e of entries) {
          const sk = schedulingKey(e.key)!
          const now = s.dirtySeq.get(sk)
          if (!now || now.seq < e.seq) s.dirtySeq.set(sk, e)
        }
        throw new LifelineError('LL_STATE', `saving last sequences of ${s.topic}[${s.partition}] failed; offsets not committed`, { cause: err })
      }
    }
  }

  // ---- rebalances -----------------------------------------------------------------------------------
  function newPartitionState(p: TopicPartition): PartitionState {
    const tierOf = tierTopics.get(p.topic)
    const sequences =
      seqOptions && !tierOf
        ? new SequenceBuffer<Item>({
            maxPerKey: seqOptions.maxPerKey ?? consumerDefaults.sequence.maxPerKey,
            maxTotal: seqOptions.maxTotal ?? consumerDefaults.sequence.maxTotal,
            timeoutMs: seqOptions.timeoutMs ?? consumerDefaults.sequence.timeoutMs,
            policy: seqOptions.policy ?? consumerDefaults.sequence.policy,
            ...(seqOptions.firstSequence === undefined ? {} : { firstSequence: seqOptions.firstSequence }),
          })
        : undefined
    return {
      topic: p.topic, partition: p.partition, offsets: new PartitionOffsets(), pausedFor: new Set(), running: new Set(), waits: unboundedController(), handlers: unboundedController(),
      buffered: 0, failing: new Map(), revoking: false, tierOf, ready: store === undefined || tierOf !== undefined, stash: [], parked: new Map(), sequences, dirtySeq: new Map(), overflow: [], delayed: [], delayTimer: undefined,
    }
  }

  /** Loads a source partition's parked keys and last sequences; until then its records wait (the partition paused). */
  async function loadState(state: PartitionState): Promise<void> {
    for (let tries = 1; ; tries++) {
      if (state.revoking || stopping.signal.aborted) return
      try {
        const loaded = await store!.loadPartition(options.groupId, state.topic, state.partition)
        if (state.revoking) return
        for (const p of loaded.parked) state.parked.set(schedulingKey(p.key)!, { key: p.key, status: p.status, headOffset: p.headOffset, records: p.records, parkedAt: p.parkedAt.getTime(), draining: false })
        if (state.sequences) for (const q of loaded.sequences) state.sequences.restore(schedulingKey(q.key)!, q.lastSeq)
        break
      } catch (err) {
        reportError(new LifelineError('LL_STATE', `loading the ordering state of ${state.topic}[${state.partition}] failed (try ${tries}); its records wait`, { cause: err }), 'state load failed')
        // Paused once the assignment is applied (right after onAssign returns); records fetched before wait in the stash.
        setImmediate(() => {
          if (!state.ready && !state.revoking) pause(state, 'state')
        })
        try {
          await sleep(Math.min(30_000, 250 * 2 ** Math.min(tries, 7)), state.waits.signal)
        } catch {
          return
        }
      }
    }
    state.ready = true
    resume(state, 'state')
    if (state.stash.length > 0) {
      const stashed = state.stash
      state.stash = []
      void dispatch(stashed).catch((err: unknown) => reportError(err, 'dispatching records held during the state load failed'))
    }
    for (const entry of state.parked.values()) if (entry.status === 'released') markReleased(state, entry.key)
  }

  async function onAssign(parts: TopicPartition[]): Promise<TopicPartitionOffset[] | undefined> {
    const states = parts.map((p) => {
      const state = newPartitionState(p)
      partitions.set(tpKey(p.topic, p.partition), state)
      return state
    })
    // The assignment takes effect when this returns: wait (bounded) for the state, so nothing is fetched before it.
    const loading = states.filter((s) => !s.ready).map((s) => loadState(s))
    if (loading.length > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([Promise.all(loading), new Promise<void>((resolve) => (timer = setTimeout(resolve, 10_000)))])
      clearTimeout(timer)
    }
    // Partitions assigned during an outage start paused like the others (once the assignment is applied,
    // which happens right after this hook returns).
    if (breaker && breaker.state !== 'closed') {
      setImmediate(() => {
        if (breaker.state === 'closed') return
        for (const p of parts) {
          const state = partitions.get(tpKey(p.topic, p.partition))
          if (state) pause(state, 'breaker')
        }
      })
    }
    log.info({ partitions: parts }, 'partitions assigned')
    emit('partitions-assigned', parts)
    return options.startOffsets ? storedStarts(parts) : undefined
  }

  /** Stored positions ahead of the group's committed offsets (a failure to read them falls back to the committed ones). */
  async function storedStarts(parts: TopicPartition[]): Promise<TopicPartitionOffset[] | undefined> {
    const sources = parts.filter((p) => !tierTopics.has(p.topic))
    if (sources.length === 0 || !kafka) return undefined
    try {
      const [stored, committed] = await Promise.all([options.startOffsets!(sources), kafka.committed(sources, 10_000)])
      const at = new Map(committed.map((c) => [tpKey(c.topic, c.partition), c.offset]))
      const starts = stored.filter((s) => s.offset > (at.get(tpKey(s.topic, s.partition)) ?? -1))
      if (starts.length > 0) log.info({ starts }, 'starting partitions at positions stored with the effects')
      return starts
    } catch (err) {
      reportError(err, 'reading stored start offsets failed; starting at the committed offsets (the inbox still skips applied events)')
      return undefined
    }
  }

  async function drain(states: PartitionState[]): Promise<void> {
    const busy = () => states.some((s) => s.running.size > 0)
    if (!busy()) return
    const deadline = Date.now() + drainTimeoutMs
    while (busy()) {
      const left = deadline - Date.now()
      if (left <= 0) {
        for (const s of states) s.handlers.abort(new LifelineError('LL_ABORTED', 'drain timeout: the partition is being released'))
        log.warn({ drainTimeoutMs }, 'in-flight handlers overran the drain timeout; their records stay uncommitted')
        return
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          drainWaiters.delete(wake)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(wake, Math.min(left, 100))
        drainWaiters.add(wake)
      })
    }
  }

  function release(states: PartitionState[]): void {
    for (const s of states) {
      s.revoking = true
      const dropped = scheduler.removePartition(s.topic, s.partition)
      s.buffered -= dropped.length
      for (const d of dropped) bufferedBytes -= d.size
      // Held, delayed and stashed records stay uncommitted: the next owner reads them again.
      clearTimeout(s.delayTimer)
      s.delayed = []
      s.overflow = []
      s.stash = []
      s.waits.abort()
    }
  }

  async function onRevoke(parts: TopicPartition[], lost: boolean): Promise<void> {
    const states = parts.flatMap((p) => partitions.get(tpKey(p.topic, p.partition)) ?? [])
    release(states)
    await drain(states)
    if (!lost) await commit((s) => states.includes(s)).catch((err) => reportError(err, 'commit on revocation failed'))
    for (const s of states) partitions.delete(tpKey(s.topic, s.partition))
    log.info({ partitions: parts, lost }, 'partitions revoked')
    emit('partitions-revoked', parts, lost)
  }

  // ---- the poll loop --------------------------------------------------------------------------------
  async function loop(consumer: KafkaConsumer): Promise<void> {
    // The next batch is fetched (on librdkafka's thread) while this one is dispatched: one poll in flight.
    let next: Promise<ConsumedRecord[]> = consumer.poll(POLL_MAX, 100)
    try {
      while (!stopping.signal.aborted) {
        let records: ConsumedRecord[]
        try {
          records = await next
          lastPollAt = Date.now()
        } catch (err) {
          if (stopping.signal.aborted) return
          reportError(err, 'poll failed; retrying')
          await sleep(500, stopping.signal).catch(() => undefined)
          next = consumer.poll(POLL_MAX, 100)
          continue
        }
        if (stopping.signal.aborted) return
        next = consumer.poll(POLL_MAX, 100)
        await dispatch(records)
      }
    } finally {
      // A batch fetched during close() is dropped: never committed, it is read again by the next owner.
      await next.then(
        () => undefined,
        () => undefined,
      )
    }
  }

  async function dispatch(records: ConsumedRecord[]): Promise<void> {
    const items: Item[] = []
    for (const r of records) {
      const item = accept(r)
      if (item) items.push(item)
    }
    if (atMostOnce && items.length > 0) {
      // At-most-once: the offsets are committed before any handler runs.
      for (const item of items) item.state.offsets.complete(item.record.offset)
      // Never run a record before its offset is committed; keep trying (polling goes on meanwhile only
      // through librdkafka's own background threads, which is all the group membership needs).
      let committed = false
      for (let tries = 1; !committed && !stopping.signal.aborted; tries++) {
        try {
          await commit()
          committed = true
        } catch (err) {
          reportError(err, 'at-most-once pre-commit failed; retrying before any handler runs')
          await sleep(Math.min(5_000, 100 * 2 ** tries), stopping.signal).catch(() => undefined)
        }
      }
      if (!committed) {
        // close() interrupted the pre-commit: keep the batch uncommitted (close() commits what is complete),
        // so the next owner reads it again.
        const lowest = new Map<PartitionState, number>()
        for (const item of items) lowest.set(item.state, Math.min(lowest.get(item.state) ?? Number.POSITIVE_INFINITY, item.record.offset))
        for (const [state, offset] of lowest) state.offsets.reset(offset)
        return
      }
    }
    for (const item of items) route(item)
    pump()
    if (items.length === 0) return
    // Backpressure is judged once the batch had its chance to run (fast handlers finish within this
    // turn), so only records that really wait pause their partition. A pause makes librdkafka drop its
    // prefetched records, so pausing for a backlog that drains in microseconds would cost throughput.
    await new Promise<void>((resolve) => setImmediate(resolve))
    for (const state of new Set(items.map((i) => i.state))) applyBackpressure(state)
  }

  function start(): Promise<void> {
    if (starting || closing) return Promise.reject(new LifelineError('LL_CONSUMER_STATE', closing ? 'start() after close()' : 'start() called twice'))
    starting = doStart()
    return starting
  }

  async function doStart(): Promise<void> {
    const connection = { brokers: options.brokers, config: options.kafkaConfig }
    const admin = createAdmin(connection)
    try {
      const provision = options.deadLetter?.provision ?? consumerDefaults.deadLetter.provision
      // Without provisioning the same checks run (sources exist, DLQs exist with enough partitions).
      await ensureTopics(admin, { service: options.service, topics: options.topics, deadLetter: options.deadLetter, retryTopics: options.retryTopics, checkOnly: !provision })
    } finally {
      await admin.close()
    }
    if (store) await migrateLifeline(store.db, { logger: log })
    dlq = createProducer({ ...connection, clientId: `${options.service}-dlq` })
    await dlq.connect()
    const consumer = createKafkaConsumer({
      ...connection,
      groupId: options.groupId,
      sessionTimeoutMs: options.sessionTimeoutMs ?? consumerDefaults.sessionTimeoutMs,
      rebalance: { onAssign, onRevoke, onError: (err) => reportError(err, 'rebalance hook failed') },
    })
    kafka = consumer
    consumer.subscribe([...options.topics, ...tierTopics.keys()])
    await consumer.connect()
    loopDone = loop(consumer)
    commitTimer = setInterval(() => void commit().catch((err) => reportError(err, 'periodic commit failed')), options.commitIntervalMs ?? consumerDefaults.commitIntervalMs)
    commitTimer.unref()
    if (parking) {
      releaseTimer = setInterval(() => void pollReleases(), pollMs)
      releaseTimer.unref()
    }
    if (seqOptions) {
      gapTimer = setInterval(expireGaps, Math.max(20, Math.min(1000, Math.floor((seqOptions.timeoutMs ?? consumerDefaults.sequence.timeoutMs) / 4))))
      gapTimer.unref()
    }
    log.info({ topics: options.topics }, 'consumer started')
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      const errors: unknown[] = []
      const step = async (what: string, fn: () => Promise<void> | void) => {
        try {
          await fn()
        } catch (err) {
          errors.push(err)
          log.warn({ err }, `close: ${what} failed`)
        }
      }
      // A close() racing start() waits for it, so nothing start() creates outlives close().
      await starting?.catch(() => undefined)
      stopping.abort()
      clearInterval(commitTimer)
      clearInterval(releaseTimer)
      clearInterval(gapTimer)
      await step('stopping the poll loop', () => loopDone)
      const states = [...partitions.values()]
      await step('releasing queued records', () => release(states))
      await step('draining in-flight handlers', () => drain(states))
      await step('committing', () => commit())
      await step('leaving the group', () => kafka?.close())
      await step('closing the DLQ producer', () => dlq?.close())
      metrics.detach()
      log.info('consumer closed')
      if (errors.length > 0) throw new LifelineError('LL_CONSUMER_CLOSE', `close() finished with ${errors.length} error(s): ${errors.map((e) => (e as Error).message).join('; ')}`, { cause: errors[0], details: { errors } })
    })()
    return closing
  }

  return Object.assign(emitter, {
    start,
    close,
    commit: () => commit(),
    stats: () => ({
      inFlight,
      buffered: scheduler.queued,
      assigned: [...partitions.values()].map((s) => ({ topic: s.topic, partition: s.partition })),
      paused: [...partitions.values()].filter((s) => s.pausedFor.size > 0).map((s) => ({ topic: s.topic, partition: s.partition })),
      parkedKeys: sourceStates().reduce((n, st) => n + st.parked.size, 0),
      reorderBuffered: sourceStates().reduce((n, st) => n + (st.sequences?.buffered ?? 0), 0),
      lastPollAt,
    }),
    [Symbol.asyncDispose]: close,
  }) as LifelineConsumer
}
