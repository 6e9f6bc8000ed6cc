/**
 * A transactional producer on librdkafka: the records sent in a transaction and the consumer offsets
 * added to it commit atomically (KIP-98), and the offsets carry the consumer group's generation, so a
 * member that lost its partitions cannot commit for them (KIP-447). `read_committed` readers never see
 * the records of an aborted transaction.
 *
 * Errors follow librdkafka's transactional error model (the flags of `rd_kafka_error_t`):
 * - fenced (`ERR__FENCED`, `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`): a newer producer initialised
 *   with the same transactional.id, so this one is a zombie → `LL_FENCED`, and every later call rejects
 *   with that same error;
 * - fatal: the producer cannot go on → `LL_TRANSACTION` (retriable false); every later call rejects too;
 * - requires abort: call `abort()`, then `begin()` again → `LL_TRANSACTION`;
 * - retriable: `commit()`, `abort()` and `sendOffsets()` call librdkafka again (which resumes the same
 *   operation) a few times before giving up with `LL_TRANSACTION`.
 *
 * @module
 * @example
 * const producer = createTransactionalProducer({ brokers, transactionalId: 'orders-enricher-0' })
 * await producer.begin()
 * await producer.send([{ topic: 'orders.enriched', key, value }])
 * await producer.sendOffsets([{ topic: 'orders', partition: 0, offset: last + 1 }], consumer)
 * await producer.commit()
 */
import Type from 'typebox'
import { LifelineError } from '../errors.js'
import { validateOptions } from '../util/options.js'
import { nativeConsumerOf } from './consumer.js'
import { asError, baseConfig, enqueueRecord, nativeErrorDetails, newNativeTransactionalProducer } from './native.js'
import type { KafkaConsumer, ProduceAck, ProduceRecord, TopicPartitionOffset, TransactionalProducer, TransactionalProducerOptions } from './types.js'

/** Defaults of {@link TransactionalProducerOptions}. */
export const transactionalProducerDefaults = {
  transactionTimeoutMs: 60_000,
  operationTimeoutMs: 30_000,
  lingerMs: 5,
} as const satisfies Partial<TransactionalProducerOptions>

const Schema = Type.Object(
  {
    brokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    clientId: Type.Optional(Type.String({ minLength: 1 })),
    config: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
    transactionalId: Type.String({ minLength: 1 }),
    transactionTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    operationTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    lingerMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
)

/** ERR__FENCED (local), PRODUCER_FENCED (90), INVALID_PRODUCER_EPOCH (47, in delivery reports). */
const FENCED_CODES: ReadonlySet<unknown> = new Set([-144, 90, 47])
/** How many times a retriable commit/abort/sendOffsets failure is retried before it is reported. */
const RETRIES = 3

/** What a librdkafka transactional error asks of the caller. */
export type TransactionErrorKind = 'fenced' | 'fatal' | 'abortable' | 'retriable' | 'failed'

/** Classifies a binding error by its code and flags (never by its message). */
export function transactionErrorKind(err: unknown): TransactionErrorKind {
  if (err === null || typeof err !== 'object') return 'failed'
  const e = err as { code?: unknown; isFatal?: unknown; isTxnRequiresAbort?: unknown; isRetriable?: unknown }
  if (FENCED_CODES.has(e.code)) return 'fenced'
  if (e.isFatal === true) return 'fatal'
  if (e.isTxnRequiresAbort === true) return 'abortable'
  if (e.isRetriable === true) return 'retriable'
  return 'failed'
}

/** The LifelineError for a failed transactional call: `LL_FENCED` or `LL_TRANSACTION` with the cause. */
export function transactionError(what: string, err: unknown, transactionalId: string): LifelineError {
  const kind = transactionErrorKind(err)
  const details = { ...nativeErrorDetails(err), kind, transactionalId }
  if (kind === 'fenced') {
    return new LifelineError('LL_FENCED', `${what}: fenced by a newer producer with transactional.id ${transactionalId}: ${asError(err).message}`, { cause: err, details })
  }
  return new LifelineError('LL_TRANSACTION', `${what} failed: ${asError(err).message}`, {
    cause: err,
    retriable: kind === 'abortable' || kind === 'retriable',
    details,
  })
}

interface Pending {
  resolve(ack: ProduceAck): void
  reject(err: Error): void
}

export function createTransactionalProducer(input: TransactionalProducerOptions): TransactionalProducer {
  const options = validateOptions(Schema, input, 'transactionalProducer')
  const id = options.transactionalId
  const timeoutMs = options.operationTimeoutMs ?? transactionalProducerDefaults.operationTimeoutMs
  const native = newNativeTransactionalProducer({
    ...baseConfig({ ...options, config: undefined }),
    dr_cb: true,
    'transactional.id': id,
    'transaction.timeout.ms': options.transactionTimeoutMs ?? transactionalProducerDefaults.transactionTimeoutMs,
    'enable.idempotence': true,
    acks: 'all',
    'linger.ms': options.lingerMs ?? transactionalProducerDefaults.lingerMs,
    ...options.config,
  })

  let connected: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let open = false
  let socketOpen = false
  /** Set once the producer is fenced or hit a fatal error: every later call rejects with it. */
  let dead: LifelineError | undefined

  native.on('delivery-report', (err, report) => {
    const pending = report.opaque as Pending
    if (err) pending.reject(fail(`delivery to ${report.topic}`, err))
    else pending.resolve({ topic: report.topic, partition: report.partition, offset: Number(report.offset) })
  })

  /** The error for `err`, remembering a fenced or fatal one for every later call. */
  function fail(what: string, err: unknown): LifelineError {
    const error = transactionError(what, err, id)
    if (!dead && (error.code === 'LL_FENCED' || error.details.kind === 'fatal')) dead = error
    return error
  }

  function ensureUsable(): void {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'transactional producer is closed')
    if (dead) throw dead
  }

  /** Runs one binding call; retriable failures are retried (librdkafka resumes the same operation). */
  async function call(what: string, run: (cb: (err: unknown) => void) => void, retriable = false): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const err = await new Promise<unknown>((resolve) => run((e) => resolve(e ?? undefined)))
      if (err === undefined) return
      if (retriable && attempt <= RETRIES && transactionErrorKind(err) === 'retriable') continue
      throw fail(what, err)
    }
  }

  function connect(): Promise<void> {
    connected ??= (async () => {
      await new Promise<void>((resolve, reject) =>
        native.connect({ timeout: 10_000 }, (err) =>
          err
            ? reject(new LifelineError('LL_KAFKA_CONNECT', `transactional producer could not connect to ${options.brokers.join(',')}: ${asError(err).message}`, { cause: err }))
            : resolve(),
        ),
      )
      socketOpen = true
      native.setPollInBackground(true)
      // Fences every older producer with this transactional.id and completes or aborts its open transaction.
      await call('initTransactions', (cb) => native.initTransactions(timeoutMs, cb), true)
    })()
    return connected
  }

  async function begin(): Promise<void> {
    ensureUsable()
    await connect()
    await call('beginTransaction', (cb) => native.beginTransaction(cb))
    open = true
  }

  async function produceOne(record: ProduceRecord, pending: Pending): Promise<void> {
    try {
      await enqueueRecord(native, record, pending)
    } catch (err) {
      throw fail(`enqueueing a record for ${record.topic}`, err)
    }
  }


  // Enqueueing is serialised across send() calls, so the order of send() calls is the order on each partition.
  let enqueueChain: Promise<void> = Promise.resolve()

  async function send(records: readonly ProduceRecord[]): Promise<ProduceAck[]> {
    ensureUsable()
    if (!open) throw new LifelineError('LL_TRANSACTION', 'send() outside a transaction: call begin() first', { retriable: false, details: { transactionalId: id } })
    const acks: Array<Promise<ProduceAck>> = []
    const enqueued = enqueueChain.then(async () => {
      for (const record of records) {
        let pending!: Pending
        const ack = new Promise<ProduceAck>((resolve, reject) => (pending = { resolve, reject }))
        // Observed here too: when a later record cannot be enqueued, nobody awaits the earlier acks, and an
        // abort fails them (purged).
        ack.catch(() => undefined)
        acks.push(ack)
        await produceOne(record, pending)
      }
    })
    enqueueChain = enqueued.catch(() => undefined)
    await enqueued
    return Promise.all(acks)
  }

  async function sendOffsets(offsets: readonly TopicPartitionOffset[], consumer: KafkaConsumer): Promise<void> {
    ensureUsable()
    const nativeConsumer = nativeConsumerOf(consumer)
    if (!nativeConsumer) throw new LifelineError('LL_ARGUMENT_INVALID', 'sendOffsets(consumer): the consumer must come from createConsumer() of this library')
    if (offsets.length === 0) return
    const list = offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset }))
    await call('sendOffsetsToTransaction', (cb) => native.sendOffsetsToTransaction(list, nativeConsumer, timeoutMs, cb), true)
  }

  async function commit(): Promise<void> {
    ensureUsable()
    // Records of a send() called before commit() belong to this transaction even if it was not awaited.
    await enqueueChain
    await call('commitTransaction', (cb) => native.commitTransaction(timeoutMs, cb), true)
    open = false
  }

  async function abort(): Promise<void> {
    ensureUsable()
    await call('abortTransaction', (cb) => native.abortTransaction(timeoutMs, cb), true)
    open = false
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      if (!connected) return
      // A failed initTransactions still leaves a connection to close.
      await connected.catch(() => undefined)
      if (!socketOpen) return
      try {
        // An open transaction would hold back read_committed readers of its partitions (the last stable
        // offset) until transaction.timeout.ms: end it now. A fenced producer's was aborted by its successor.
        if (open && !dead) await call('abortTransaction', (cb) => native.abortTransaction(timeoutMs, cb), true)
      } finally {
        open = false
        await new Promise<void>((resolve) => native.disconnect(() => resolve()))
      }
    })()
    return closing
  }

  return { connect, begin, send, sendOffsets, commit, abort, inTransaction: () => open, close }
}
