/**
 * Consume-transform-produce with Kafka transactions: each polled batch runs in one transaction (begin →
 * transform every record → produce the outputs → add the batch's next offsets → commit), so the outputs
 * and the consumed offsets commit atomically. Downstream readers with `isolation.level=read_committed`
 * see every input's outputs exactly once, whatever crashes, aborts or rebalances happen.
 *
 * ## Inbox or transactions?
 * - **The effect is a database write** (rows you own, state machines): the inbox (`createInbox`,
 *   `src/effects/inbox.ts`). It claims the event id and writes the effect in one *database* transaction; a Kafka
 *   transaction cannot include a database write.
 * - **The effect is other Kafka records** (enrich, route, split, aggregate into topics): this pipeline.
 *   No table and no dedupe key are needed; the group offsets move only with the outputs.
 * - **Both**: the inbox, writing the records to an outbox table in the same database transaction; no
 *   transaction spans a database and Kafka.
 *
 * ## Failure behaviour (details in docs/transactions.md)
 * - Transform error: classified as the consumer runtime does. A permanent one, or the `retry.maxAttempts`-th
 *   retriable one of a record, dead-letters the record (`{service}.{topic}.dlq`, `lifeline.*` failure
 *   headers) in the running transaction: the rest of the batch commits with it. Any other aborts the
 *   transaction (its outputs stay invisible to read_committed readers), seeks the batch's partitions back to
 *   the batch's first offsets and runs the batch again after a backoff. **Transforms must be deterministic
 *   or idempotent, with no side effects besides the records they return**: a batch may be transformed
 *   several times, one run's outputs commit.
 * - Produce, sendOffsets or commit error, and a transaction the broker aborted for outliving
 *   `transactionTimeoutMs` (the producer is re-initialised, see src/kafka/transactional.ts): the same abort
 *   and retry, counted against no record.
 * - Crash, even SIGKILL: the open transaction is aborted when a producer with the same `transactionalId`
 *   initialises (a restart: at once), else after `transactionTimeoutMs`.
 * - Fenced by a newer instance with the same `transactionalId` (KIP-98): the pipeline stops by itself,
 *   logs, emits `fenced`, leaves the group, and `done()` rejects with `LL_FENCED` (a fatal producer error:
 *   the same with `LL_TRANSACTION`). `start()` has resolved long before, so it cannot carry this.
 * - Revocation: an open transaction holding records of a revoked partition is aborted before the
 *   partition goes. `close()` aborts the open transaction. Offsets never move outside a transaction.
 *
 * Why this file is over ~400 lines: some 60 of them are the guide above; the rest is one closure whose
 * functions share the pipeline's mutable state (the owned partitions, the open transaction, the life-cycle
 * state), because revocation and `close()` must abort the very transaction the poll loop opened. Options
 * and defaults are already apart (transactional-pipeline-options.ts), so are the public types
 * (transactional-pipeline-types.ts) and per-record failures (pipeline-failures.ts). Not done yet: the split
 * src/runtime/consumer/ went through, a context object handed to small modules (batch loop, transaction,
 * rewind, life cycle).
 *
 * @module
 * @example
 * const pipeline = createTransactionalPipeline({
 *   brokers: ['127.0.0.1:9092'], groupId: 'enricher', transactionalId: `enricher-${podOrdinal}`,
 *   topics: ['orders'],
 *   transform: async (r) => [{ topic: 'orders.enriched', key: r.key, value: enrich(r.value) }],
 * })
 * await pipeline.start()
 * pipeline.done().catch((err) => { log.fatal(err); process.exit(1) }) // LL_FENCED: a newer instance runs
 */
import { closeSteps } from '../util/close.js'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { isLifelineError, LifelineError } from '../errors.js'
import { createAdmin, createConsumer, createTransactionalProducer } from '../kafka/index.js'
import type { ConsumedRecord, KafkaConsumer, ProduceAck, ProduceRecord, TopicPartition, TopicPartitionOffset, TransactionalProducer } from '../kafka/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { delayFor, exponential } from '../retry/backoff.js'
import { deadLetterRecord, failureContext } from '../failure/dead-letter.js'
import { dlqTopicName } from '../runtime/options.js'
import { ensureTopics } from '../runtime/topics.js'
import { crashPoint } from '../util/crash-points.js'
import { sleep } from '../util/sleep.js'
import { RecordFailures } from './pipeline-failures.js'
import { transactionalPipelineDefaults, validatePipelineOptions, type TransactionalPipelineOptions } from './transactional-pipeline-options.js'
import type { PipelineState, TransactionalPipeline, TransactionalPipelineEvents, TransactionalPipelineStats } from './transactional-pipeline-types.js'

export { transactionalPipelineDefaults } from './transactional-pipeline-options.js'
export type { TransactionalPipelineOptions, Transform, TransformContext } from './transactional-pipeline-options.js'
export type { PipelineState, TransactionalPipeline, TransactionalPipelineEvents, TransactionalPipelineStats } from './transactional-pipeline-types.js'

/** A partition this member owns, and the next offset it expects there (earlier ones are stale copies). */
interface Owned {
  readonly topic: string
  readonly partition: number
  next?: number
}

/** A polled record and the ownership of its partition it was accepted under. */
interface Accepted {
  readonly record: ConsumedRecord
  readonly owner: Owned
}

/** The batch whose transaction is open. */
interface InFlight {
  readonly partitions: ReadonlySet<string>
  readonly controller: AbortController
  readonly finished: Promise<void>
}

const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`
/** How long an empty poll waits before the loop looks at its stop signal again, ms. */
const IDLE_POLL_MS = 100
const SEEK_ATTEMPTS = 3

/** Thrown into a batch to abort it for a reason that is not an error of the batch. */
class Interrupted extends Error {
  constructor(readonly reason: 'revoked' | 'closing') {
    super(`transaction interrupted: ${reason}`)
  }
}

/** Stack frames from this file down are how the pipeline called the transform: cut from fingerprints. */
const PIPELINE_FILE = fileURLToPath(import.meta.url)

/** A dead letter sent in the open transaction, reported once it committed. */
interface SentDeadLetter {
  readonly record: ConsumedRecord
  readonly dlqTopic: string
  readonly ack: Promise<ProduceAck[]>
  readonly errorCode: string
  readonly attempts: number
}

export function createTransactionalPipeline(input: TransactionalPipelineOptions): TransactionalPipeline {
  const options = validatePipelineOptions(input)
  const d = transactionalPipelineDefaults
  const batchSize = options.batchSize ?? d.batchSize
  const batchMs = options.batchMs ?? d.batchMs
  const service = options.service ?? options.groupId
  const backoff = exponential({ baseMs: options.retry?.baseMs ?? d.retry.baseMs, maxMs: options.retry?.maxMs ?? d.retry.maxMs, jitter: 'full' })
  const failures = new RecordFailures(options.retry?.maxAttempts ?? d.retry.maxAttempts, { permanentCodes: options.permanentCodes, classifier: options.classifier })
  const log: Logger = (options.logger ?? silentLogger()).child({ component: 'transactional-pipeline', group: options.groupId, transactionalId: options.transactionalId })

  const emitter = new EventEmitter<TransactionalPipelineEvents>()
  const stopping = new AbortController()
  const owned = new Map<string, Owned>()
  const counters = { committedTransactions: 0, abortedTransactions: 0, records: 0, outputs: 0, deadLettered: 0 }
  let state: PipelineState = 'idle'
  let consumer: KafkaConsumer | undefined
  let producer: TransactionalProducer | undefined
  let inFlight: InFlight | undefined
  let loopDone: Promise<void> = Promise.resolve()
  let starting: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let settle!: { resolve(): void; reject(err: unknown): void }
  const stopped = new Promise<void>((resolve, reject) => (settle = { resolve, reject }))
  // done() may never be called: a stop error must not become an unhandled rejection.
  stopped.catch(() => undefined)

  /** Emits to user listeners; a throwing listener is logged and never disturbs the pipeline. */
  function emit<K extends keyof TransactionalPipelineEvents>(event: K, ...args: TransactionalPipelineEvents[K]): void {
    try {
      ;(emitter.emit as (e: K, ...a: TransactionalPipelineEvents[K]) => boolean)(event, ...args)
    } catch (err) {
      log.warn({ err, event }, 'an event listener threw; ignored')
    }
  }

  function reportError(error: unknown, context: string): void {
    log.warn({ err: error }, context)
    if (emitter.listenerCount('error') > 0) emit('error', error)
  }

  // ---- rebalances -------------------------------------------------------------------------------
  function onAssign(parts: TopicPartition[]): void {
    for (const p of parts) owned.set(key(p.topic, p.partition), { topic: p.topic, partition: p.partition })
    log.info({ partitions: parts }, 'partitions assigned')
    emit('partitions-assigned', parts)
  }

  async function onRevoke(parts: TopicPartition[], lost: boolean): Promise<void> {
    const keys = parts.map((p) => key(p.topic, p.partition))
    // From here on, records of these partitions still in hand are dropped and never seeked.
    for (const k of keys) owned.delete(k)
    // The next owner counts attempts afresh.
    failures.forget(parts)
    const batch = inFlight
    if (batch && keys.some((k) => batch.partitions.has(k))) {
      // Abort before the partitions go: the next owner then starts from the committed offset with no
      // transaction of ours pending on them (its offset fetch would wait for it, KIP-447).
      batch.controller.abort(new Interrupted('revoked'))
      await batch.finished
    }
    log.info({ partitions: parts, lost }, 'partitions revoked')
    emit('partitions-revoked', parts, lost)
  }

  // ---- the loop -----------------------------------------------------------------------------------
  /**
   * Keeps records of owned partitions that come after what this member already has of them, each with the
   * ownership it was accepted under.
   */
  function accept(records: ConsumedRecord[], into: Accepted[]): void {
    for (const r of records) {
      const owner = owned.get(key(r.topic, r.partition))
      // Not owned: polled before a revocation. Below `next`: a copy of a record already in hand or
      // committed (delivered again after a seek).
      if (!owner || (owner.next !== undefined && r.offset < owner.next)) continue
      owner.next = r.offset + 1
      into.push({ record: r, owner })
    }
  }

  /** Up to batchSize records: waits for the first, then lets the batch fill for up to batchMs. */
  async function collect(c: KafkaConsumer): Promise<Accepted[]> {
    const batch: Accepted[] = []
    accept(await c.poll(batchSize, IDLE_POLL_MS), batch)
    if (batch.length === 0) return batch
    const deadline = Date.now() + batchMs
    for (let left = batchMs; batch.length < batchSize && left > 0 && !stopping.signal.aborted; left = deadline - Date.now()) {
      let more: ConsumedRecord[]
      try {
        more = await c.poll(batchSize - batch.length, left)
      } catch (err) {
        // Keep what was accepted: dropping it would leave `next` (and the consumer) past it.
        reportError(err, 'poll failed while a batch filled; processing what arrived')
        break
      }
      if (more.length === 0) break
      accept(more, batch)
    }
    return batch
  }

  async function run(c: KafkaConsumer, p: TransactionalProducer): Promise<void> {
    let aborts = 0
    while (!stopping.signal.aborted) {
      let accepted: Accepted[]
      try {
        accepted = await collect(c)
      } catch (err) {
        if (stopping.signal.aborted) return
        reportError(err, 'poll failed; retrying')
        await sleep(500, stopping.signal).catch(() => undefined)
        continue
      }
      // Records polled during close() are dropped: never committed, the next owner reads them again.
      if (stopping.signal.aborted) return
      // A revocation (and maybe a new assignment of the same partition) may have come while the batch
      // filled: records accepted under an ownership that ended are dropped; the next owner reads them.
      const batch = accepted.filter((a) => owned.get(key(a.record.topic, a.record.partition)) === a.owner)
      if (batch.length === 0) continue
      const outcome = await transact(c, p, batch)
      if (outcome === 'failed') {
        aborts++
        await sleep(delayFor(backoff, aborts, undefined), stopping.signal).catch(() => undefined)
      } else if (outcome === 'committed') aborts = 0
    }
  }

  /** One batch in one transaction. Throws only what must stop the pipeline (fenced, fatal). */
  async function transact(c: KafkaConsumer, p: TransactionalProducer, accepted: Accepted[]): Promise<'committed' | 'failed' | 'interrupted'> {
    const started = Date.now()
    const batch = accepted.map((a) => a.record)
    const firsts = new Map<string, Accepted>()
    const nexts = new Map<string, TopicPartitionOffset>()
    for (const a of accepted) {
      const k = key(a.record.topic, a.record.partition)
      if (!firsts.has(k)) firsts.set(k, a)
      nexts.set(k, { topic: a.record.topic, partition: a.record.partition, offset: a.record.offset + 1 })
    }
    const controller = new AbortController()
    let finish!: () => void
    const current: InFlight = { partitions: new Set(firsts.keys()), controller, finished: new Promise<void>((resolve) => (finish = resolve)) }
    inFlight = current
    const onStop = () => controller.abort(new Interrupted('closing'))
    stopping.signal.addEventListener('abort', onStop, { once: true })
    const { signal } = controller
    const check = () => {
      if (signal.aborted) throw signal.reason
    }
    try {
      let outputs = 0
      const deadLetters: SentDeadLetter[] = []
      try {
        check()
        await p.begin()
        const acks: Array<Promise<unknown>> = []
        for (const r of batch) {
          check()
          let records: readonly ProduceRecord[]
          try {
            records = await transformOne(r, signal)
          } catch (err) {
            if (signal.aborted) throw signal.reason
            const verdict = failures.fail(r, err)
            const where = `${r.topic}[${r.partition}]@${r.offset}`
            if (!verdict.deadLetter) {
              throw new LifelineError('LL_TRANSACTION', `transform failed for ${where} (attempt ${verdict.summary.attempts}): ${verdict.summary.classification.message}`, {
                cause: err,
                details: { topic: r.topic, partition: r.partition, offset: r.offset, attempts: verdict.summary.attempts },
              })
            }
            // Dead-lettered in this transaction: it commits with the batch's other outputs and offsets, or not at all.
            const dlqTopic = dlqTopicName(service, r.topic, options.deadLetter?.topic)
            const context = failureContext(r, options.groupId, service, verdict.summary, PIPELINE_FILE)
            const ack = p.send([deadLetterRecord(dlqTopic, r, context, { spring: options.deadLetter?.springHeaders ?? d.deadLetter.springHeaders })])
            ack.catch(() => undefined)
            acks.push(ack)
            deadLetters.push({ record: r, dlqTopic, ack, errorCode: verdict.summary.classification.code, attempts: verdict.summary.attempts })
            log.warn({ topic: r.topic, partition: r.partition, offset: r.offset, dlqTopic, code: context.errorCode, attempts: context.attempts, kind: verdict.summary.classification.kind }, 'transform failed for good; dead-lettering the record in the transaction')
            continue
          }
          if (records.length === 0) continue
          outputs += records.length
          const ack = p.send(records)
          // Awaited below; observed now so a failure while later records transform is not unhandled.
          ack.catch(() => undefined)
          acks.push(ack)
        }
        await Promise.all(acks)
        crashPoint('tx.after-send')
        check()
        await p.sendOffsets([...nexts.values()], c)
        check()
        await p.commit()
        crashPoint('tx.after-commit')
      } catch (err) {
        if (isLifelineError(err, 'LL_FENCED') || (isLifelineError(err) && err.details.kind === 'fatal')) throw err
        const reason = err instanceof Interrupted ? err.reason : 'error'
        if (reason === 'error') log.warn({ err, records: batch.length }, 'transaction failed; aborting it and processing the batch again')
        else log.info({ reason, records: batch.length }, 'transaction interrupted; aborting it')
        await abortAndRewind(c, p, firsts)
        counters.abortedTransactions++
        emit('aborted', { records: batch.length, reason, ...(reason === 'error' ? { error: err } : {}) })
        return reason === 'error' ? 'failed' : 'interrupted'
      }
      counters.committedTransactions++
      counters.records += batch.length
      counters.outputs += outputs
      counters.deadLettered += deadLetters.length
      const offsets = [...nexts.values()]
      failures.committed(offsets)
      log.debug({ records: batch.length, outputs, deadLettered: deadLetters.length, offsets }, 'transaction committed')
      for (const dl of deadLetters) {
        const [ack] = await dl.ack
        const r = dl.record
        emit('dead-letter', { topic: r.topic, partition: r.partition, offset: r.offset, dlqTopic: dl.dlqTopic, dlqOffset: ack!.offset, errorCode: dl.errorCode, attempts: dl.attempts })
      }
      emit('committed', { records: batch.length, outputs, offsets, durationMs: Date.now() - started })
      return 'committed'
    } finally {
      stopping.signal.removeEventListener('abort', onStop)
      inFlight = undefined
      finish()
    }
  }

  /** The transform's outputs for `r`; throws what it threw, or LL_TRANSACTION (permanent) for a result that is not an array. */
  async function transformOne(r: ConsumedRecord, signal: AbortSignal): Promise<readonly ProduceRecord[]> {
    const records = await options.transform(r, { signal, attempt: failures.attempt(r) })
    if (!Array.isArray(records)) {
      throw new LifelineError('LL_TRANSACTION', `transform returned ${typeof records} for ${r.topic}[${r.partition}]@${r.offset}: expected an array of records`, {
        retriable: false,
        details: { topic: r.topic, partition: r.partition, offset: r.offset },
      })
    }
    return records
  }

  /** Aborts the open transaction and puts the consumer back at the batch's first offsets. */
  async function abortAndRewind(c: KafkaConsumer, p: TransactionalProducer, firsts: Map<string, Accepted>): Promise<void> {
    // begin() itself may have failed: then there is nothing to abort.
    if (p.inTransaction()) {
      for (let attempt = 1; ; attempt++) {
        try {
          await p.abort()
          break
        } catch (err) {
          // Fenced, fatal, or a call librdkafka refuses: nothing this pipeline can do goes on from here.
          if (!isLifelineError(err, 'LL_TRANSACTION') || !err.retriable) throw err
          if (stopping.signal.aborted) {
            // Closing: the producer's close() tries once more; else the broker aborts it after the timeout.
            reportError(err, 'abort failed during close')
            return
          }
          reportError(err, 'abort failed; retrying')
          await sleep(delayFor(backoff, attempt, err), stopping.signal).catch(() => undefined)
        }
      }
    }
    // Closing: the consumer leaves the group; the next owner starts from the committed offsets.
    if (stopping.signal.aborted) return
    for (const [k, { record, owner }] of firsts) {
      const position = { topic: record.topic, partition: record.partition, offset: record.offset }
      for (let attempt = 1; ; attempt++) {
        // Revoked meanwhile: the next owner starts over from the committed offset.
        if (owned.get(k) !== owner || stopping.signal.aborted) break
        try {
          await c.seek(position)
          owner.next = position.offset
          break
        } catch (err) {
          // Without the seek the consumer would go on after the batch and a later commit would skip it:
          // stop instead (nothing past the batch was committed).
          if (attempt >= SEEK_ATTEMPTS) {
            throw new LifelineError('LL_TRANSACTION', `could not seek ${position.topic}[${position.partition}] back to ${position.offset} after an abort`, { cause: err, retriable: false, details: { kind: 'fatal' } })
          }
          await sleep(100 * attempt, stopping.signal).catch(() => undefined)
        }
      }
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------------
  function start(): Promise<void> {
    if (starting || closing) return Promise.reject(new LifelineError('LL_CONSUMER_STATE', closing ? 'start() after close()' : 'start() called twice'))
    state = 'starting'
    starting = (async () => {
      const config = options.kafkaConfig
      const clientId = options.clientId ?? d.clientId
      const admin = createAdmin({ brokers: options.brokers, clientId: `${clientId}-admin`, config })
      try {
        // The consumer runtime's checks: inputs exist; DLQs exist (created unless provisioning is off) with
        // at least the partitions of their source, as a dead letter keeps its source partition number.
        await ensureTopics(admin, { service, topics: options.topics, deadLetter: options.deadLetter, checkOnly: !(options.deadLetter?.provision ?? d.deadLetter.provision) })
      } finally {
        await admin.close()
      }
      const p = createTransactionalProducer({
        brokers: options.brokers,
        clientId: `${clientId}-producer`,
        transactionalId: options.transactionalId,
        transactionTimeoutMs: options.transactionTimeoutMs ?? d.transactionTimeoutMs,
        ...(config ? { config } : {}),
      })
      producer = p
      // Fences older instances with this transactionalId and aborts the transaction one left open.
      await p.connect()
      const c = createConsumer({
        brokers: options.brokers,
        clientId: `${clientId}-consumer`,
        config,
        groupId: options.groupId,
        // Inputs that are outputs of other transactions: only committed ones.
        isolationLevel: 'read_committed',
        fromBeginning: options.fromBeginning ?? d.fromBeginning,
        sessionTimeoutMs: options.sessionTimeoutMs ?? d.sessionTimeoutMs,
        rebalance: { onAssign, onRevoke, onError: (err) => reportError(err, 'rebalance hook failed') },
      })
      consumer = c
      c.subscribe(options.topics)
      await c.connect()
      state = 'running'
      loopDone = run(c, p).catch((err: unknown) => stopOnError(err))
      log.info({ topics: options.topics }, 'transactional pipeline started')
    })()
    return starting.catch(async (err: unknown) => {
      await shutdown().catch((closeErr: unknown) => log.warn({ err: closeErr }, 'cleanup after a failed start failed'))
      state = 'stopped'
      settle.reject(err)
      throw err
    })
  }

  /** Fenced or fatal: stop by ourselves and tell the user through done(), `fenced` and the log. */
  function stopOnError(err: unknown): void {
    state = 'stopped'
    if (isLifelineError(err, 'LL_FENCED')) {
      log.error({ err }, 'fenced by a newer instance with the same transactionalId; stopping')
      emit('fenced', err)
    } else log.error({ err }, 'transactional pipeline failed; stopping')
    settle.reject(err)
    // Leave the group so the partitions move to a live member; the error is already reported.
    void close().catch((closeErr: unknown) => log.warn({ err: closeErr }, 'close after a fatal error failed'))
  }

  async function shutdown(): Promise<void> {
    stopping.abort()
    const steps = closeSteps(log, 'the transactional pipeline')
    const step = steps.run
    await step('stopping the loop', () => loopDone)
    // The consumer first: leaving the group commits nothing (offsets only ever move in transactions).
    await step('leaving the group', () => consumer?.close())
    await step('closing the producer', () => producer?.close())
    steps.finish()
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      // A close() racing start() waits for it, so nothing start() creates outlives close().
      await starting?.catch(() => undefined)
      try {
        await shutdown()
      } finally {
        if (state !== 'stopped') state = 'closed'
        settle.resolve()
        log.info('transactional pipeline closed')
      }
    })()
    return closing
  }

  return Object.assign(emitter, {
    start,
    done: () => stopped,
    close,
    stats: (): TransactionalPipelineStats => ({ state, ...counters, assigned: [...owned.values()].map((o) => ({ topic: o.topic, partition: o.partition })) }),
    [Symbol.asyncDispose]: close,
  }) as TransactionalPipeline
}
