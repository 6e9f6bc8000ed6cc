/**
 * Lifeline dead letters for the DLQ benchmarks: `count` records for a DLQ topic, the failure headers the
 * runtime writes (origin, group, error, attempts, times) plus one header of the original record.
 *
 * @module
 */
import { encodeFailureHeaders } from '../../src/failure/headers.js'
import type { KafkaProducer, ProduceRecord } from '../../src/kafka/index.js'

export interface DeadLetterShape {
  partitions: number
  keys: number
  valueBytes: number
}

export function deadLetters(dlq: string, origin: string, count: number, shape: DeadLetterShape): ProduceRecord[] {
  const now = Date.now()
  return Array.from({ length: count }, (_, i) => ({
    topic: dlq,
    partition: i % shape.partitions,
    key: `key-${i % shape.keys}`,
    value: JSON.stringify({ i, pad: 'x'.repeat(shape.valueBytes) }),
    headers: encodeFailureHeaders([{ key: 'trace-id', value: Buffer.from(`t-${i}`) }], {
      originTopic: origin, originPartition: i % shape.partitions, originOffset: i, originTimestamp: now, group: 'bench', service: 'bench', errorClass: 'Error',
      errorCode: 'E_BENCH', errorMessage: 'bench failure', errorFingerprint: 'bench', attempts: 3, firstFailureAt: now, lastFailureAt: now,
    }),
  }))
}

/** Sends `records` in sends of 10,000, each acknowledged before the next. */
export async function produceAll(producer: KafkaProducer, records: readonly ProduceRecord[]): Promise<void> {
  for (let i = 0; i < records.length; i += 10_000) await producer.send(records.slice(i, i + 10_000))
}
