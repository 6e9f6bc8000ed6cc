/**
 * Reads one partition between two offsets with a consumer of no group (assign, never commit), looking for
 * a record: how a partition's new owner tells whether a copy its former owner was writing when it died
 * reached the topic, so that it is produced again only when it did not.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { LifelineError } from '../errors.js'
import { asError, baseConfig, fromNativeHeaders, newNativeConsumer, type NativeMessage } from './native.js'
import type { ConsumedRecord, KafkaConnection } from './types.js'

export interface ScanRange {
  topic: string
  partition: number
  /** First offset to read. */
  from: number
  /** Stop before this offset (the high watermark when the scan starts, if omitted). */
  to?: number
}

const toRecord = (m: NativeMessage): ConsumedRecord => ({ topic: m.topic, partition: m.partition, offset: Number(m.offset), key: m.key ?? null, value: m.value ?? null, headers: fromNativeHeaders(m.headers), timestamp: m.timestamp ?? 0, size: m.size })

/** The first record of `range` that `match` accepts, or undefined when none does. Reads committed records only. */
export async function findRecord(connection: KafkaConnection, range: ScanRange, match: (record: ConsumedRecord) => boolean, timeoutMs = 30_000): Promise<ConsumedRecord | undefined> {
  const native = newNativeConsumer(
    { ...baseConfig(connection), 'group.id': `lifeline-scan-${randomBytes(6).toString('hex')}`, 'enable.auto.commit': false, 'enable.auto.offset.store': false, 'enable.partition.eof': false, 'isolation.level': 'read_committed' },
    { 'auto.offset.reset': 'earliest' },
  )
  const fail = (what: string, err: unknown) => new LifelineError('LL_KAFKA_CONSUME', `scanning ${range.topic}[${range.partition}] failed (${what}): ${asError(err).message}`, { cause: err })
  await new Promise<void>((resolve, reject) => native.connect({ timeout: 10_000 }, (err) => (err ? reject(fail('connect', err)) : resolve())))
  try {
    const to = range.to ?? (await new Promise<number>((resolve, reject) => native.queryWatermarkOffsets(range.topic, range.partition, 10_000, (err, w) => (err ? reject(fail('watermarks', err)) : resolve(Number(w.highOffset))))))
    if (range.from >= to) return undefined
    native.assign([{ topic: range.topic, partition: range.partition, offset: range.from }])
    native.setDefaultConsumeTimeout(200)
    const deadline = Date.now() + timeoutMs
    for (let next = range.from; next < to; ) {
      if (Date.now() > deadline) throw new LifelineError('LL_KAFKA_CONSUME', `scanning ${range.topic}[${range.partition}] from ${range.from} to ${to} took longer than ${timeoutMs} ms (reached ${next})`)
      const batch = await new Promise<NativeMessage[]>((resolve, reject) => native.consume(500, (err, messages) => (err && (err as { code?: number }).code !== -185 ? reject(fail('consume', err)) : resolve(messages ?? []))))
      for (const m of batch) {
        const record = toRecord(m)
        if (record.offset >= to) return undefined
        if (match(record)) return record
        next = record.offset + 1
      }
    }
    return undefined
  } finally {
    await new Promise<void>((resolve) => native.disconnect(() => resolve()))
  }
}
