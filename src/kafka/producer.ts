/**
 * A promise-per-record producer on librdkafka's native producer: each send resolves with the exact
 * partition and offset of every record, from its delivery report.
 */
import { LifelineError } from '../errors.js'
import { asError, baseConfig, enqueueRecord, nativeErrorDetails, newNativeProducer } from './native.js'
import type { KafkaProducer, ProduceAck, ProduceRecord, ProducerOptions } from './types.js'

interface Pending {
  resolve(ack: ProduceAck): void
  reject(err: Error): void
}


export function createProducer(options: ProducerOptions): KafkaProducer {
  const idempotent = options.idempotent ?? true
  const native = newNativeProducer({
    ...baseConfig({ ...options, config: undefined }),
    dr_cb: true,
    'enable.idempotence': idempotent,
    acks: 'all',
    'linger.ms': options.lingerMs ?? 5,
    'delivery.timeout.ms': options.deliveryTimeoutMs ?? 30_000,
    // The caller's librdkafka properties win over these defaults.
    ...options.config,
  })

  let connected: Promise<void> | undefined
  let closing: Promise<void> | undefined

  native.on('delivery-report', (err, report) => {
    const pending = report.opaque as Pending
    if (err) {
      pending.reject(
        new LifelineError('LL_KAFKA_PRODUCE', `delivery to ${report.topic} failed: ${asError(err).message}`, {
          cause: err,
          details: nativeErrorDetails(err),
        }),
      )
    } else {
      pending.resolve({ topic: report.topic, partition: report.partition, offset: Number(report.offset) })
    }
  })

  function connect(): Promise<void> {
    connected ??= new Promise<void>((resolve, reject) => {
      native.connect({ timeout: 10_000 }, (err) => {
        if (err) {
          reject(
            new LifelineError('LL_KAFKA_CONNECT', `producer could not connect to ${options.brokers.join(',')}: ${asError(err).message}`, {
              cause: err,
            }),
          )
          return
        }
        native.setPollInBackground(true)
        resolve()
      })
    })
    return connected
  }

  async function produceOne(record: ProduceRecord, pending: Pending): Promise<void> {
    try {
      await enqueueRecord(native, record, pending)
    } catch (err) {
      throw new LifelineError('LL_KAFKA_PRODUCE', `could not enqueue a record for ${record.topic}: ${asError(err).message}`, {
        cause: err,
        details: nativeErrorDetails(err),
      })
    }
  }


  // Enqueueing is serialised across send() calls: records of two concurrent sends never interleave, so
  // the order of send() calls is the order on each partition (the idempotent producer keeps it from there).
  let enqueueChain: Promise<void> = Promise.resolve()

  async function send(records: readonly ProduceRecord[]): Promise<ProduceAck[]> {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'producer is closed')
    const acks: Array<Promise<ProduceAck>> = []
    const enqueued = enqueueChain.then(async () => {
      await connect()
      for (const record of records) {
        let pending!: Pending
        acks.push(new Promise<ProduceAck>((resolve, reject) => (pending = { resolve, reject })))
        await produceOne(record, pending)
      }
    })
    enqueueChain = enqueued.catch(() => undefined)
    await enqueued
    return Promise.all(acks)
  }

  function flush(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      native.flush(timeoutMs, (err) =>
        err ? reject(new LifelineError('LL_KAFKA_PRODUCE', `flush failed: ${asError(err).message}`, { cause: err })) : resolve(),
      )
    })
  }

  async function highWatermark(topic: string, partition: number, timeoutMs = 10_000): Promise<number> {
    await connect()
    return new Promise((resolve, reject) =>
      native.queryWatermarkOffsets(topic, partition, timeoutMs, (err, offsets) =>
        err ? reject(new LifelineError('LL_KAFKA_ADMIN', `reading the high watermark of ${topic}[${partition}] failed: ${asError(err).message}`, { cause: err, details: nativeErrorDetails(err) })) : resolve(Number(offsets.highOffset)),
      ),
    )
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      if (!connected) return
      // Never connected: nothing to flush or disconnect.
      const ok = await connected.then(
        () => true,
        () => false,
      )
      if (!ok) return
      try {
        await flush(10_000)
      } finally {
        await new Promise<void>((resolve) => native.disconnect(() => resolve()))
      }
    })()
    return closing
  }

  return { connect, send, flush, highWatermark, close }
}
