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
import { EventEmitter, setMaxListeners } from 'node:events'
import { fileURLToPath } from 'node:url'
import { LifelineError } from '../errors.js'
import { createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../kafka/index.js'
import type { ConsumedRecord, KafkaConsumer, KafkaProducer, TopicPartition } from '../kafka/types.js'
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

export interface LifelineConsumer extends EventEmitter<ConsumerEvents> {
  /** Connects, provisions DLQ topics (unless disabled), subscribes and starts the poll loop. */
  start(): Promise<void>
  /** Stops fetching, cancels backoffs, drains in-flight handlers, commits, leaves the group. Idempotent. */
  close(): Promise<void>
  /** Commits what is committable now (also runs on a timer, on revoke and on close). */
  commit(): Promise<void>
  /** Counters for tests and health checks. */
  stats(): { inFlight: number; buffered: number; assigned: TopicPartition[]; paused: TopicPartition[] }
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
  /** Records of this partition whose DLQ write is failing right now. */
  dlqFailing: number
  revoking: boolean
}

interface Item extends SchedulableItem {
  readonly record: ConsumedRecord
  readonly state: PartitionState
}

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

  const breaker = options.circuitBreaker ? new CircuitBreaker(options.circuitBreaker) : undefined
  const emitter = new EventEmitter<ConsumerEvents>()
  const partitions = new Map<string, PartitionState>()
  // The scheduler keeps key order; `running` below bounds handlers actually executing, so a record
  // sleeping in backoff holds its key but not a concurrency slot.
  const scheduler = new KeyScheduler<Item>({ ordering: options.ordering ?? consumerDefaults.ordering, concurrency: Number.MAX_SAFE_INTEGER })
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
  })

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
    if (!state.offsets.track(record.offset)) return undefined
    const item: Item = {
      topic: record.topic,
      partition: record.partition,
      schedulingKey: schedulingKey(record.key),
      size: record.size,
      record,
      state,
    }
    return item
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
      running++ // the slot for its first attempt, reserved now so this loop never over-dispatches
      item.state.buffered--
      bufferedBytes -= item.size
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
    if (breaker) return undefined
    let value: unknown
    try {
      value = wrapDecode(decoder, item.record.value)
    } catch (decodeError) {
      return { decodeError } // dead-lettered on the async path
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
    if (outcome === 'done' && partitions.get(tpKey(state.topic, state.partition)) === state) state.offsets.complete(item.record.offset)
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
          outcome = await processRecord(item, tries === 1 ? first : undefined)
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
  function message(item: Item, value: unknown, attempt: number): LifelineMessage<V> {
    return new Message(item.record, value as V, attempt, item.state.handlers.signal)
  }

  function classify(err: unknown): Classification {
    try {
      return classifyError(err, classifyOptions)
    } catch (classifierError) {
      reportError(classifierError, 'the classifier threw; falling back to the default classification')
      return classifyError(err, { permanentCodes: options.permanentCodes })
    }
  }

  async function processRecord(item: Item, first?: FirstAttempt): Promise<Outcome> {
    const r = item.record
    const resumedAttempt = first && 'result' in first ? first : undefined
    let value: unknown = resumedAttempt?.value
    let failure: { classification: Classification; error: unknown } | undefined
    if (first && 'decodeError' in first) failure = { classification: classify(first.decodeError), error: first.decodeError }
    else if (!first) {
      try {
        value = wrapDecode(decoder, r.value)
      } catch (err) {
        failure = { classification: classify(err), error: err }
      }
    }
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
        succeeded(r, attempt, startedAt)
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
          maxAttempts,
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
    return deadLetter(item, value, failure, Math.max(attempt, 1), firstFailureAt, lastFailureAt)
  }

  async function deadLetter(item: Item, value: unknown, failure: { classification: Classification; error: unknown }, attempts: number, firstFailureAt: number, lastFailureAt: number): Promise<Outcome> {
    const r = item.record
    const dlqTopic = dlqTopicName(options.service, r.topic, options.deadLetter?.topic)
    const context = failureContext(r, options.groupId, options.service, { classification: failure.classification, attempts, firstFailureAt, lastFailureAt }, RUNTIME_FILE)
    const out = deadLetterRecord(dlqTopic, r, context, { spring: options.deadLetter?.springHeaders })
    // The source offset is committed only after the DLQ write is acknowledged; until then the partition
    // stays paused and the write is retried: nothing is skipped.
    let failing = false
    const stopFailing = () => {
      if (!failing) return
      failing = false
      if (--item.state.dlqFailing === 0) resume(item.state, 'dead-letter')
    }
    for (let tries = 1; ; tries++) {
      let ack
      try {
        ;[ack] = await dlq!.send([out])
      } catch (err) {
        if (!failing) {
          failing = true
          item.state.dlqFailing++
          pause(item.state, 'dead-letter')
        }
        reportError(new LifelineError('LL_DEAD_LETTER', `writing ${r.topic}[${r.partition}]@${r.offset} to ${dlqTopic} failed (try ${tries}); retrying`, { cause: err }), 'dead-letter write failed')
        try {
          await sleep(Math.min(30_000, 250 * 2 ** Math.min(tries, 7)), item.state.waits.signal)
        } catch {
          stopFailing()
          return 'abandoned'
        }
        continue
      }
      stopFailing()
      metrics.deadLettered(r.topic, failure.classification.code)
      emit('dead-letter', { topic: r.topic, partition: r.partition, offset: r.offset, dlqTopic, dlqOffset: ack!.offset, errorCode: failure.classification.code, attempts })
      log.info({ topic: r.topic, partition: r.partition, offset: r.offset, dlqTopic, code: failure.classification.code, attempts }, 'record dead-lettered')
      break
    }
    if (options.onDeadLetter) await runHook(item, value, failure.error)
    return 'done'
  }

  async function runHook(item: Item, value: unknown, error: unknown): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await options.onDeadLetter!(message(item, value, attempt) as LifelineMessage<unknown>, error)
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
      await kafka.commit(offsets)
      for (const b of batch) b.state.offsets.markCommitted(b.offset, b.generation)
      emit('commit', offsets)
    }
    // One commit at a time, in order: a late answer can never move a position back.
    const next = commitChain.then(run)
    commitChain = next.catch(() => undefined)
    return next
  }

  // ---- rebalances -----------------------------------------------------------------------------------
  function onAssign(parts: TopicPartition[]): void {
    for (const p of parts) {
      partitions.set(tpKey(p.topic, p.partition), { topic: p.topic, partition: p.partition, offsets: new PartitionOffsets(), pausedFor: new Set(), running: new Set(), waits: unboundedController(), handlers: unboundedController(), buffered: 0, dlqFailing: 0, revoking: false })
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
    for (const item of items) enqueue(item)
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
      await ensureTopics(admin, { service: options.service, topics: options.topics, deadLetter: options.deadLetter, checkOnly: !provision })
    } finally {
      await admin.close()
    }
    dlq = createProducer({ ...connection, clientId: `${options.service}-dlq` })
    await dlq.connect()
    const consumer = createKafkaConsumer({
      ...connection,
      groupId: options.groupId,
      sessionTimeoutMs: options.sessionTimeoutMs ?? consumerDefaults.sessionTimeoutMs,
      rebalance: { onAssign, onRevoke, onError: (err) => reportError(err, 'rebalance hook failed') },
    })
    kafka = consumer
    consumer.subscribe(options.topics)
    await consumer.connect()
    loopDone = loop(consumer)
    commitTimer = setInterval(() => void commit().catch((err) => reportError(err, 'periodic commit failed')), options.commitIntervalMs ?? consumerDefaults.commitIntervalMs)
    commitTimer.unref()
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
    }),
    [Symbol.asyncDispose]: close,
  }) as LifelineConsumer
}
