/**
 * A group consumer on librdkafka's native KafkaConsumer, with an explicit poll call (the caller owns the
 * loop), explicit commits that resolve on the broker's answer, per-partition pause/resume, and rebalance
 * hooks that can delay a revocation until in-flight work has finished.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { LifelineError } from '../errors.js'
import { asError, baseConfig, fromNativeHeaders, nativeErrorDetails, newNativeConsumer, type NativeConsumer, type NativeMessage } from './native.js'
import type {
  ConsumedRecord,
  ConsumerOptions,
  KafkaConsumer,
  TopicPartition,
  TopicPartitionOffset,
} from './types.js'

const ERR_ASSIGN = -175 // RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
const ERR_REVOKE = -174 // RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
const ERR_NO_OFFSET = -168 // RD_KAFKA_RESP_ERR__NO_OFFSET: nothing to commit
const ERR_TIMED_OUT = -185

const tp = (p: TopicPartition): TopicPartition => ({ topic: p.topic, partition: p.partition })

const natives = new WeakMap<KafkaConsumer, NativeConsumer>()

/**
 * The binding's consumer behind a consumer made here, for the one call that needs it: a transaction's
 * offsets carry the group's generation and member id, which librdkafka reads from it (KIP-447). Internal
 * to src/kafka (index.ts does not export it).
 */
export function nativeConsumerOf(consumer: KafkaConsumer): NativeConsumer | undefined {
  return natives.get(consumer)
}

export function createConsumer(options: ConsumerOptions): KafkaConsumer {
  let rebalanceChain: Promise<void> = Promise.resolve()

  // Rebalances are applied in the order librdkafka announces them, each after the user hook settles.
  function onRebalance(err: { code: number }, assignment: TopicPartition[]): void {
    const partitions = assignment.map(tp)
    rebalanceChain = rebalanceChain.then(() => applyRebalance(err, partitions)).catch((hookError: unknown) => {
      // A failing hook must not wedge later rebalances: the (un)assignment below already happened.
      options.rebalance?.onError?.(hookError)
    })
  }

  async function applyRebalance(err: { code: number }, partitions: TopicPartition[]): Promise<void> {
    const cooperative = native.rebalanceProtocol() === 'COOPERATIVE'
    if (err.code === ERR_ASSIGN) {
      let assignment: Array<TopicPartition & { offset?: number }> = partitions
      try {
        const starts = await options.rebalance?.onAssign?.(partitions)
        if (starts && starts.length > 0) {
          const at = new Map(starts.map((s) => [`${s.topic}\u0000${s.partition}`, s.offset]))
          assignment = partitions.map((p) => {
            const offset = at.get(`${p.topic}\u0000${p.partition}`)
            return offset === undefined ? p : { ...p, offset }
          })
        }
      } finally {
        if (native.isConnected()) {
          if (cooperative) native.incrementalAssign(assignment)
          else native.assign(assignment)
        }
      }
    } else if (err.code === ERR_REVOKE) {
      const lost = native.assignmentLost()
      try {
        await options.rebalance?.onRevoke?.(partitions, lost)
      } finally {
        if (native.isConnected()) {
          if (cooperative) native.incrementalUnassign(partitions)
          else native.unassign()
        }
      }
    }
  }

  const native: NativeConsumer = newNativeConsumer(
    {
      ...baseConfig(options),
      'group.id': options.groupId,
      'enable.auto.commit': false,
      'enable.auto.offset.store': false,
      'enable.partition.eof': false,
      'partition.assignment.strategy': 'cooperative-sticky',
      'session.timeout.ms': options.sessionTimeoutMs ?? 10_000,
      'max.poll.interval.ms': options.maxPollIntervalMs ?? 300_000,
      'isolation.level': options.isolationLevel ?? 'read_committed',
      rebalance_cb: onRebalance,
    },
    // A topic-level property: in the global config the binding's empty topic config would override it.
    { 'auto.offset.reset': (options.fromBeginning ?? true) ? 'earliest' : 'latest' },
  )
  native.setDefaultIsTimeoutOnlyForFirstMessage(true)

  let connected: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let polling = false
  let subscription: string[] | undefined

  function ensureOpen(): void {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'consumer is closed')
  }

  function connect(): Promise<void> {
    connected ??= new Promise<void>((resolve, reject) => {
      native.connect({ timeout: 10_000 }, (err) =>
        err
          ? reject(
              new LifelineError('LL_KAFKA_CONNECT', `consumer could not connect to ${options.brokers.join(',')}: ${asError(err).message}`, {
                cause: err,
              }),
            )
          : resolve(),
      )
    }).then(() => {
      if (subscription) native.subscribe(subscription)
    })
    return connected
  }

  function toRecord(m: NativeMessage): ConsumedRecord {
    return {
      topic: m.topic,
      partition: m.partition,
      offset: Number(m.offset),
      key: m.key ?? null,
      value: m.value ?? null,
      headers: fromNativeHeaders(m.headers),
      timestamp: m.timestamp ?? 0,
      size: m.size + (m.key?.length ?? 0),
    }
  }

  async function poll(max: number, timeoutMs: number): Promise<ConsumedRecord[]> {
    ensureOpen()
    await connect()
    native.setDefaultConsumeTimeout(timeoutMs)
    polling = true
    try {
      return await new Promise<ConsumedRecord[]>((resolve, reject) => {
        native.consume(max, (err, messages) => {
          if (err) {
            if ((err as { code?: number }).code === ERR_TIMED_OUT) return resolve([])
            return reject(
              new LifelineError('LL_KAFKA_CONSUME', `consume failed: ${asError(err).message}`, { cause: err, details: nativeErrorDetails(err) }),
            )
          }
          resolve(messages.map(toRecord))
        })
      })
    } finally {
      polling = false
    }
  }

  // commitCb runs a synchronous commit on a worker thread: the event loop never blocks, and the promise
  // settles on the broker's answer whether or not anyone is polling.
  function commit(offsets: readonly TopicPartitionOffset[]): Promise<void> {
    ensureOpen()
    if (offsets.length === 0) return Promise.resolve()
    const list = offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? null }))
    return new Promise<void>((resolve, reject) => {
      native.commitCb(list, (err: unknown) => {
        const code = (err as { code?: number } | null | undefined)?.code
        if (err && code !== ERR_NO_OFFSET) {
          reject(new LifelineError('LL_KAFKA_COMMIT', `offset commit failed: ${asError(err).message}`, { cause: err, details: nativeErrorDetails(err) }))
        } else resolve()
      })
    })
  }

  function committed(partitions: readonly TopicPartition[], timeoutMs = 10_000): Promise<TopicPartitionOffset[]> {
    ensureOpen()
    return new Promise((resolve, reject) => {
      native.committed(partitions.map(tp), timeoutMs, (err, result) =>
        err
          ? reject(new LifelineError('LL_KAFKA_COMMIT', `reading committed offsets failed: ${asError(err).message}`, { cause: err }))
          : resolve(result.map((r) => ({ topic: r.topic, partition: r.partition, offset: Number(r.offset), metadata: r.metadata ?? null }))),
      )
    })
  }

  function seek(position: TopicPartitionOffset, timeoutMs = 10_000): Promise<void> {
    ensureOpen()
    return new Promise((resolve, reject) => {
      native.seek({ topic: position.topic, partition: position.partition, offset: position.offset }, timeoutMs, (err: unknown) =>
        err ? reject(new LifelineError('LL_KAFKA_CONSUME', `seek failed: ${asError(err).message}`, { cause: err })) : resolve(),
      )
    })
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      if (!connected) return
      const wasConnected = await connected.then(
        () => true,
        () => false,
      )
      if (!wasConnected) return
      // Let an in-progress poll return before disconnecting (the binding forbids overlapping calls).
      while (polling) await delay(5)
      await new Promise<void>((resolve) => native.disconnect(() => resolve()))
      await rebalanceChain
    })()
    return closing
  }

  const consumer: KafkaConsumer = {
    connect,
    subscribe: (topics) => {
      ensureOpen()
      subscription = [...topics]
      // Before connect() the subscription is applied once connected.
      if (native.isConnected()) native.subscribe(subscription)
    },
    poll,
    commit,
    committed,
    pause: (partitions) => void native.pause(partitions.map(tp)),
    resume: (partitions) => void native.resume(partitions.map(tp)),
    seek,
    assignment: () => native.assignments().map(tp),
    watermarks: (topic, partition) => {
      if (!native.isConnected()) return undefined
      try {
        const w = native.getWatermarkOffsets(topic, partition)
        return w.highOffset >= 0 ? { low: Number(w.lowOffset), high: Number(w.highOffset) } : undefined
      } catch (err) {
        // Not fetched yet (no cached watermark): unknown, not an error.
        if ((err as { code?: number }).code !== undefined) return undefined
        throw err
      }
    },
    close,
  }
  natives.set(consumer, native)
  return consumer
}
