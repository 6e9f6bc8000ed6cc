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
 * - timed out: the same codes for a transaction older than `transaction.timeout.ms`, which the broker aborted
 *   itself → `LL_TRANSACTION` (retriable, `details.kind: 'timed-out'`); `abort()` re-initialises the producer
 *   (see {@link transactionError} for why the age tells the two apart);
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
import { asError, baseConfig, enqueueRecord, nativeErrorDetails, newNativeTransactionalProducer, type NativeTransactionalProducer } from './native.js'
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

/**
 * What a librdkafka transactional error asks of the caller. `timed-out` is never a flag of the error itself:
 * {@link transactionError} derives it from the age of the transaction.
 */
export type TransactionErrorKind = 'fenced' | 'timed-out' | 'fatal' | 'abortable' | 'retriable' | 'failed'

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

/** The open transaction a failed call belonged to: how long ago it began, and transaction.timeout.ms. */
export interface TransactionAge {
  ageMs: number
  timeoutMs: number
}

/**
 * The LifelineError for a failed transactional call: `LL_FENCED` or `LL_TRANSACTION` with the cause.
 *
 * A fence and a broker-side transaction timeout look the same to us. The coordinator aborts a transaction
 * that outlived transaction.timeout.ms and bumps the producer epoch (KIP-588), so the producer's next
 * Produce, AddPartitionsToTxn, AddOffsetsToTxn or EndTxn gets INVALID_PRODUCER_EPOCH (47) — exactly what a
 * newer instance's InitProducerId causes. Brokers answer PRODUCER_FENCED (90) only to newer request versions
 * (KAFKA-9911, KAFKA-10687: never on Produce), and librdkafka 2.15 sends EndTxn v1 and maps both codes to a
 * fatal ERR__FENCED (rdkafka_txnmgr.c `rd_kafka_txn_normalize_err`; rdkafka_request.c, the
 * ProduceResponse handler: "transactional producer fenced by newer producer instance"); its INTRODUCTION.md
 * lists KIP-588 as not supported. Observed on Kafka 4.3 with librdkafka 2.15.1, for a timeout and for a fence
 * alike: delivery report code 47 (no flags), then code -144 with isFatal true, isRetriable false,
 * isTxnRequiresAbort false on every transactional call.
 *
 * What does tell them apart is the age of the transaction: the coordinator times out only a transaction
 * older than transaction.timeout.ms, counted from its first AddPartitionsToTxn, which comes after our
 * begin(). So a fenced-looking error of a younger transaction is a fence, always. One of an older
 * transaction is taken as a timeout (`LL_TRANSACTION`, `details.kind: 'timed-out'`, retriable): the
 * caller aborts, which re-creates the producer (librdkafka cannot leave its fatal state) — what the Java
 * client's abortTransaction() does for InvalidProducerEpochException since KIP-588. Should a newer instance
 * really have taken the transactional.id during such a stall, the re-initialisation fences it in turn and it
 * stops with LL_FENCED (its own transaction is young): one instance stays, nothing commits twice.
 */
export function transactionError(what: string, err: unknown, transactionalId: string, transaction?: TransactionAge): LifelineError {
  const flagged = transactionErrorKind(err)
  const timedOut = flagged === 'fenced' && transaction !== undefined && transaction.ageMs >= transaction.timeoutMs
  const kind: TransactionErrorKind = timedOut ? 'timed-out' : flagged
  const details = { ...nativeErrorDetails(err), kind, transactionalId, ...(transaction ? { transactionAgeMs: Math.round(transaction.ageMs), transactionTimeoutMs: transaction.timeoutMs } : {}) }
  if (kind === 'fenced') {
    return new LifelineError('LL_FENCED', `${what}: fenced by a newer producer with transactional.id ${transactionalId}: ${asError(err).message}`, { cause: err, details })
  }
  if (kind === 'timed-out') {
    return new LifelineError(
      'LL_TRANSACTION',
      `${what} failed: the transaction outlived transaction.timeout.ms (${transaction!.timeoutMs} ms) and the broker aborted it; abort() re-initialises the producer: ${asError(err).message}`,
      { cause: err, retriable: true, details },
    )
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

/**
 * One librdkafka producer instance. A broker-side transaction timeout leaves it in a fatal state for good,
 * so abort() replaces it by a new one with the same transactional.id.
 */
interface Session {
  readonly native: NativeTransactionalProducer
  /** Connects and initialises transactions, once. */
  ready?: Promise<void>
  socketOpen: boolean
  /** performance.now() at begin() of the open transaction. */
  begunAt?: number
  /** Set once its transaction timed out on the broker: every call but abort() and close() rejects with it. */
  expired?: LifelineError
}

export function createTransactionalProducer(input: TransactionalProducerOptions): TransactionalProducer {
  const options = validateOptions(Schema, input, 'transactionalProducer')
  const id = options.transactionalId
  const timeoutMs = options.operationTimeoutMs ?? transactionalProducerDefaults.operationTimeoutMs
  const config = {
    ...baseConfig({ ...options, config: undefined }),
    dr_cb: true,
    'transactional.id': id,
    'transaction.timeout.ms': options.transactionTimeoutMs ?? transactionalProducerDefaults.transactionTimeoutMs,
    'enable.idempotence': true,
    acks: 'all',
    'linger.ms': options.lingerMs ?? transactionalProducerDefaults.lingerMs,
    ...options.config,
  }
  /** The effective transaction.timeout.ms (options.config may set it too). */
  const transactionTimeoutMs = Number(config['transaction.timeout.ms'])

  let session = newSession()
  let connected: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let open = false
  /** Set once the producer is fenced or hit a fatal error: every later call rejects with it. */
  let dead: LifelineError | undefined

  function newSession(): Session {
    const s: Session = { native: newNativeTransactionalProducer(config), socketOpen: false }
    s.native.on('delivery-report', (err, report) => {
      const pending = report.opaque as Pending
      if (err) pending.reject(fail(`delivery to ${report.topic}`, err, s))
      else pending.resolve({ topic: report.topic, partition: report.partition, offset: Number(report.offset) })
    })
    return s
  }

  /**
   * The error for `err` in session `s`: a fenced, fatal or timed-out one is remembered for every later call.
   * A late report of a replaced session changes nothing.
   */
  function fail(what: string, err: unknown, s: Session = session): LifelineError {
    const age = s.begunAt === undefined ? undefined : { ageMs: performance.now() - s.begunAt, timeoutMs: transactionTimeoutMs }
    const error = transactionError(what, err, id, age)
    if (s !== session) return error
    if (error.details.kind === 'timed-out') s.expired ??= error
    else if (!dead && (error.code === 'LL_FENCED' || error.details.kind === 'fatal')) dead = error
    return error
  }

  function ensureUsable(): void {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'transactional producer is closed')
    if (dead) throw dead
    if (session.expired) throw session.expired
  }

  /** Runs one binding call; retriable failures are retried (librdkafka resumes the same operation). */
  async function call(what: string, run: (cb: (err: unknown) => void) => void, retriable = false, s: Session = session): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const err = await new Promise<unknown>((resolve) => run((e) => resolve(e ?? undefined)))
      if (err === undefined) return
      if (retriable && attempt <= RETRIES && transactionErrorKind(err) === 'retriable') continue
      throw fail(what, err, s)
    }
  }

  /** Connects `s` and initialises transactions: fences every older producer with this transactional.id and completes or aborts its open transaction. */
  function ready(s: Session): Promise<void> {
    s.ready ??= (async () => {
      await new Promise<void>((resolve, reject) =>
        s.native.connect({ timeout: 10_000 }, (err) =>
          err
            ? reject(new LifelineError('LL_KAFKA_CONNECT', `transactional producer could not connect to ${options.brokers.join(',')}: ${asError(err).message}`, { cause: err }))
            : resolve(),
        ),
      )
      s.socketOpen = true
      s.native.setPollInBackground(true)
      await call('initTransactions', (cb) => s.native.initTransactions(timeoutMs, cb), true, s)
    })()
    return s.ready
  }

  function connect(): Promise<void> {
    connected ??= ready(session)
    return connected
  }

  async function disconnect(s: Session): Promise<void> {
    await s.ready?.catch(() => undefined)
    if (!s.socketOpen) return
    s.socketOpen = false
    await new Promise<void>((resolve) => s.native.disconnect(() => resolve()))
  }

  /**
   * Replaces a session whose transaction timed out on the broker: the broker already aborted the transaction,
   * and librdkafka's fatal state cannot be left, so a new instance initialises transactions with the same id.
   */
  async function renew(): Promise<void> {
    const old = session
    // Its queued records fail (purged) with errors of the old session.
    await disconnect(old)
    const next = newSession()
    session = next
    connected = ready(next)
    try {
      await connected
    } catch (err) {
      // Fenced or fatal: remembered by fail(). Anything else (the broker unreachable): the next abort() tries again.
      if (!dead) next.expired = new LifelineError('LL_TRANSACTION', `re-initialising the producer after a transaction timeout failed: ${asError(err).message}`, { cause: err, retriable: true, details: { kind: 'timed-out', transactionalId: id } })
      await disconnect(next)
      throw dead ?? next.expired
    }
  }

  async function begin(): Promise<void> {
    ensureUsable()
    await connect()
    await call('beginTransaction', (cb) => session.native.beginTransaction(cb))
    session.begunAt = performance.now()
    open = true
  }

  async function produceOne(record: ProduceRecord, pending: Pending): Promise<void> {
    const s = session
    try {
      await enqueueRecord(s.native, record, pending)
    } catch (err) {
      throw fail(`enqueueing a record for ${record.topic}`, err, s)
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
    await call('sendOffsetsToTransaction', (cb) => session.native.sendOffsetsToTransaction(list, nativeConsumer, timeoutMs, cb), true)
  }

  async function commit(): Promise<void> {
    ensureUsable()
    // Records of a send() called before commit() belong to this transaction even if it was not awaited.
    await enqueueChain
    await call('commitTransaction', (cb) => session.native.commitTransaction(timeoutMs, cb), true)
    open = false
    session.begunAt = undefined
  }

  async function abort(): Promise<void> {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'transactional producer is closed')
    if (dead) throw dead
    if (session.expired) {
      await renew()
    } else {
      await call('abortTransaction', (cb) => session.native.abortTransaction(timeoutMs, cb), true)
    }
    open = false
    session.begunAt = undefined
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      if (!connected) return
      const s = session
      // A failed initTransactions still leaves a connection to close.
      await connected.catch(() => undefined)
      if (!s.socketOpen) return
      try {
        // An open transaction would hold back read_committed readers of its partitions (the last stable
        // offset) until transaction.timeout.ms: end it now. A fenced producer's was aborted by its successor,
        // a timed-out one's by the broker.
        if (open && !dead && !s.expired) await call('abortTransaction', (cb) => s.native.abortTransaction(timeoutMs, cb), true, s)
      } finally {
        open = false
        await disconnect(s)
      }
    })()
    return closing
  }

  return { connect, begin, send, sendOffsets, commit, abort, inTransaction: () => open, close }
}
