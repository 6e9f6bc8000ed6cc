/**
 * Building the dead-letter record (pure) — same key, same partition number, original value bytes and
 * original headers, plus Lifeline's failure headers.
 */
import type { ConsumedRecord, ProduceRecord } from '../kafka/types.js'
import type { Classification } from '../retry/classify.js'
import { fingerprint } from './fingerprint.js'
import { encodeFailureHeaders, type FailureContext } from './headers.js'

export interface FailureSummary {
  classification: Classification
  attempts: number
  firstFailureAt: number
  lastFailureAt: number
}

/**
 * Drops the frames at and below `boundary` (the runtime's own file that called the handler): how the runtime
 * reached the handler varies from call to call, and must not split one error into several fingerprints.
 */
export function userFrames(stack: string | undefined, boundary: string): string | undefined {
  if (stack === undefined) return undefined
  const lines = stack.split('\n')
  const cut = lines.findIndex((line, i) => i > 0 && line.includes(boundary))
  return cut < 0 ? stack : lines.slice(0, cut).join('\n')
}

export function failureContext(record: ConsumedRecord, group: string, service: string, failure: FailureSummary, fingerprintBoundary?: string): FailureContext {
  const c = failure.classification
  return {
    originTopic: record.topic,
    originPartition: record.partition,
    originOffset: record.offset,
    originTimestamp: record.timestamp,
    group,
    service,
    errorClass: c.errorClass,
    errorCode: c.code,
    errorMessage: c.message,
    errorStack: c.stack,
    errorFingerprint: fingerprint(c.errorClass, c.code, fingerprintBoundary === undefined ? c.stack : userFrames(c.stack, fingerprintBoundary)),
    attempts: failure.attempts,
    firstFailureAt: failure.firstFailureAt,
    lastFailureAt: failure.lastFailureAt,
  }
}

/** The DLQ record for `record`: byte-identical key and value, source partition, failure headers. */
export function deadLetterRecord(dlqTopic: string, record: ConsumedRecord, context: FailureContext, options: { spring?: boolean } = {}): ProduceRecord {
  return {
    topic: dlqTopic,
    partition: record.partition,
    key: record.key,
    value: record.value,
    headers: encodeFailureHeaders(record.headers, context, { spring: options.spring ?? false }),
    timestamp: record.timestamp > 0 ? record.timestamp : undefined,
  }
}
