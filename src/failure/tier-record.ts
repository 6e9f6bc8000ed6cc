/**
 * Non-blocking retry tiers (pure): names, the record written to a tier, and reading a tier record back.
 *
 * A record whose in-place attempts failed with a retriable error is written to tier 1
 * (`{service}.{topic}.retry.1`) with a due time `delaysMs[0]` from now, and its source offset is
 * committed: the source partition flows on. The tier's consumer holds it until due, runs it once more
 * and, on failure, moves it to tier 2, ... and after the last tier to the DLQ. The failure headers
 * (`lifeline.origin.*`, `lifeline.attempts`, `lifeline.first-failure`, ...) travel with it, so attempts and
 * the first failure time survive across tiers and reach the DLQ record.
 *
 * @module
 */
import type { ConsumedRecord, KafkaHeader, ProduceRecord } from '../kafka/types.js'
import { decodeFailureHeaders, encodeFailureHeaders, type FailureContext } from './headers.js'

/** Headers a tier record carries on top of the failure headers. */
export const RetryHeaders = Object.freeze({
  /** 1-based tier number. */
  tier: 'lifeline.retry.tier',
  /** When the record may run again (ISO-8601 UTC). */
  due: 'lifeline.retry.due',
  /** The parked-key head token this copy belongs to (absent when the key is not parked). */
  token: 'lifeline.park.token',
} as const)

export const defaultRetryTopicTemplate = '{service}.{topic}.retry.{n}'

/** The most retry tiers a consumer may have (`retryTopics.delaysMs`), so the highest tier a replay may name. */
export const MAX_RETRY_TIERS = 20

/** The topic of tier `n` (1-based) of a source topic. */
export function retryTopicName(service: string, sourceTopic: string, n: number, template: string | ((sourceTopic: string, n: number) => string) = defaultRetryTopicTemplate): string {
  if (typeof template === 'function') return template(sourceTopic, n)
  return template.replaceAll('{service}', service).replaceAll('{topic}', sourceTopic).replaceAll('{n}', String(n))
}

/** What a tier record says about itself. */
export interface TierInfo {
  tier: number
  dueAt: number
  token?: string
  /** The source record as first consumed (topic, partition, offset, timestamp from the failure headers). */
  origin: { topic: string; partition: number; offset: number; timestamp: number }
  /** Attempts made before this tier (all failed). */
  attempts: number
  firstFailureAt: number
}

/**
 * The record for tier `tier`: same key, value and user headers; failure headers; the source partition
 * number. Its `lifeline.retry.due` header is what the writer computed; readers use {@link dueTime}.
 */
export function tierRecord(tierTopic: string, source: ConsumedRecord, context: FailureContext, tier: number, dueAt: number, token: string | undefined): ProduceRecord {
  const headers = encodeFailureHeaders(source.headers, context)
  headers.push({ key: RetryHeaders.tier, value: Buffer.from(String(tier)) })
  headers.push({ key: RetryHeaders.due, value: Buffer.from(new Date(dueAt).toISOString()) })
  if (token !== undefined) headers.push({ key: RetryHeaders.token, value: Buffer.from(token) })
  // No timestamp: the tier record is stamped when written (by the broker on a tier Lifeline provisioned,
  // LogAppendTime), so its due time is computed from when it was written; the origin's timestamp is a header.
  return { topic: tierTopic, partition: context.originPartition, key: source.key, value: source.value, headers }
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/

const last = (headers: readonly KafkaHeader[], key: string): string | undefined => {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]!.key === key) return headers[i]!.value?.toString('utf8')
  return undefined
}

/**
 * Reads a tier record's headers; undefined when they are missing or garbage (such a record is not ours to
 * retry: the runtime dead-letters it with what it has). Never throws.
 */
export function readTierRecord(record: ConsumedRecord): TierInfo | undefined {
  const failure = decodeFailureHeaders(record.headers)
  const tierText = last(record.headers, RetryHeaders.tier)
  const tier = tierText !== undefined && /^[1-9]\d{0,2}$/.test(tierText) ? Number(tierText) : Number.NaN
  const dueText = last(record.headers, RetryHeaders.due)
  const dueAt = dueText !== undefined && ISO_UTC.test(dueText) ? Date.parse(dueText) : Number.NaN
  if (!failure || !Number.isInteger(tier) || tier < 1 || Number.isNaN(dueAt)) return undefined
  if (failure.originTopic === undefined || failure.originPartition === undefined || failure.originOffset === undefined) return undefined
  return {
    tier,
    dueAt,
    token: last(record.headers, RetryHeaders.token),
    origin: { topic: failure.originTopic, partition: failure.originPartition, offset: failure.originOffset, timestamp: failure.originTimestamp ?? record.timestamp },
    attempts: failure.attempts ?? 0,
    firstFailureAt: failure.firstFailureAt ?? record.timestamp,
  }
}

/**
 * The source record as the handler should see it: the tier record's key, value and headers (user headers
 * plus Lifeline's failure context), at its origin topic, partition and offset.
 */
export function originView(record: ConsumedRecord, info: TierInfo): ConsumedRecord {
  return { ...record, topic: info.origin.topic, partition: info.origin.partition, offset: info.origin.offset, timestamp: info.origin.timestamp }
}

/**
 * When a tier record may run: `delayMs` (the reading consumer's delay for its tier) after it was written,
 * never later than its `lifeline.retry.due` header (a redrive sets an earlier one) and never more than
 * `delayMs` after this consumer first saw it — so a writer's clock running ahead, or a delay shortened
 * since, cannot hold a tier partition (FIFO) for longer than the tier's delay.
 */
export function dueTime(info: TierInfo, writtenAt: number, delayMs: number, firstSeenAt: number): number {
  return Math.min(info.dueAt, writtenAt + delayMs, firstSeenAt + delayMs)
}
