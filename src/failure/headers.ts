/**
 * The dead-letter header codec: the failure context a dead-lettered record carries, as Kafka headers.
 *
 * Lifeline's own headers are UTF-8 strings prefixed `lifeline.` (numbers in decimal, times in ISO-8601
 * UTC). With `spring: true` the record also carries Spring Kafka's `kafka_dlt-*` headers in Spring's binary
 * encodings, so Spring tooling (and `DeadLetterPublishingRecoverer`-based consumers) can read our dead
 * letters; see `KafkaHeaders.DLT_*` and `DeadLetterPublishingRecoverer.maybeAddOriginalHeaders` in
 * spring-kafka: partition = int32 big-endian, offset and timestamp = int64 big-endian, timestamp type =
 * Kafka's `TimestampType.toString()` (`CreateTime` / `LogAppendTime`), everything else UTF-8.
 *
 * Encoding replaces earlier failure headers instead of appending (as Spring's default
 * `stripPreviousExceptionHeaders`), so a record dead-lettered, replayed and dead-lettered again does not
 * grow. Decoding never throws: a header that is missing, not UTF-8 or not a number reads as undefined.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer'
import type { KafkaHeader } from '../kafka/types.js'

/** Prefix of every Lifeline failure header. */
export const LIFELINE_HEADER_PREFIX = 'lifeline.'
/** Prefix of Spring Kafka's dead-letter headers (`KafkaHeaders.PREFIX` + `dlt-`). */
export const SPRING_DLT_HEADER_PREFIX = 'kafka_dlt-'
/** Value of `lifeline.schema` written by this codec. */
export const FAILURE_HEADERS_SCHEMA = '1'
/** Cap of `lifeline.error.message` (and Spring's exception message), UTF-8 bytes. */
export const MAX_MESSAGE_BYTES = 4 * 1024
/** Cap of `lifeline.error.stack` (and Spring's stack trace), UTF-8 bytes. */
export const MAX_STACK_BYTES = 16 * 1024

/** Lifeline failure header names. */
export const LifelineHeaders = Object.freeze({
  schema: 'lifeline.schema',
  originTopic: 'lifeline.origin.topic',
  originPartition: 'lifeline.origin.partition',
  originOffset: 'lifeline.origin.offset',
  originTimestamp: 'lifeline.origin.timestamp',
  group: 'lifeline.group',
  service: 'lifeline.service',
  errorClass: 'lifeline.error.class',
  errorCode: 'lifeline.error.code',
  errorMessage: 'lifeline.error.message',
  errorStack: 'lifeline.error.stack',
  errorFingerprint: 'lifeline.error.fingerprint',
  attempts: 'lifeline.attempts',
  firstFailure: 'lifeline.first-failure',
  lastFailure: 'lifeline.last-failure',
} as const)

/** Spring Kafka dead-letter header names (`org.springframework.kafka.support.KafkaHeaders.DLT_*`). */
export const SpringDltHeaders = Object.freeze({
  originalTopic: 'kafka_dlt-original-topic',
  originalPartition: 'kafka_dlt-original-partition',
  originalOffset: 'kafka_dlt-original-offset',
  originalTimestamp: 'kafka_dlt-original-timestamp',
  originalTimestampType: 'kafka_dlt-original-timestamp-type',
  originalConsumerGroup: 'kafka_dlt-original-consumer-group',
  exceptionFqcn: 'kafka_dlt-exception-fqcn',
  exceptionCauseFqcn: 'kafka_dlt-exception-cause-fqcn',
  exceptionMessage: 'kafka_dlt-exception-message',
  exceptionStacktrace: 'kafka_dlt-exception-stacktrace',
  keyExceptionFqcn: 'kafka_dlt-key-exception-fqcn',
  keyExceptionMessage: 'kafka_dlt-key-exception-message',
  keyExceptionStacktrace: 'kafka_dlt-key-exception-stacktrace',
} as const)

/** Everything a dead letter says about its failure. Times are ms since the epoch. */
export interface FailureContext {
  originTopic: string
  originPartition: number
  originOffset: number
  /** The original record's timestamp (ms; written as a decimal string, not ISO: it may be -1). */
  originTimestamp: number
  /** Kafka timestamp type of the original record (Spring header only; default `CreateTime`). */
  originTimestampType?: 'CreateTime' | 'LogAppendTime'
  group: string
  service: string
  errorClass: string
  errorCode: string
  /** Capped at {@link MAX_MESSAGE_BYTES} UTF-8 bytes on encode. */
  errorMessage: string
  /** Capped at {@link MAX_STACK_BYTES} UTF-8 bytes on encode; undefined = header omitted. */
  errorStack?: string
  errorFingerprint: string
  /** Attempts made, all failed. */
  attempts: number
  firstFailureAt: number
  lastFailureAt: number
}

/** A decoded failure context: any field a header did not provide (or provided as garbage) is undefined. */
export interface DecodedFailureContext extends Partial<FailureContext> {
  /** `lifeline.schema` as found. */
  schema?: string
}

/** Spring's dead-letter headers as decoded by {@link decodeSpringHeaders}; absent or unreadable → undefined. */
export interface SpringDltContext {
  originalTopic?: string
  originalPartition?: number
  originalOffset?: number
  /** ms since the epoch. */
  originalTimestamp?: number
  /** `CreateTime`, `LogAppendTime` or `NoTimestampType` as Spring writes them; other text passes through. */
  originalTimestampType?: string
  originalConsumerGroup?: string
  exceptionFqcn?: string
  exceptionCauseFqcn?: string
  exceptionMessage?: string
  exceptionStacktrace?: string
  keyExceptionFqcn?: string
  keyExceptionMessage?: string
  keyExceptionStacktrace?: string
}

export interface EncodeFailureOptions {
  /** Also write Spring Kafka's `kafka_dlt-*` headers (replacing earlier ones). Default false. */
  spring?: boolean
}

/**
 * `s` cut to at most `maxBytes` UTF-8 bytes, never inside a character (a lone surrogate encodes as the
 * 3-byte U+FFFD, as `Buffer.from` does).
 */
export function truncateUtf8(s: string, maxBytes: number): string {
  const bytes = Buffer.from(s, 'utf8')
  if (bytes.length <= maxBytes) return s
  let end = maxBytes
  // Back up over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString('utf8')
}

function int32be(n: number): Buffer | undefined {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) return undefined
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

function int64be(n: number): Buffer | undefined {
  if (!Number.isSafeInteger(n)) return undefined
  const b = Buffer.alloc(8)
  b.writeBigInt64BE(BigInt(n))
  return b
}

/** ECMAScript dates span ±8.64e15 ms (ECMA-262 §21.4.1.22); beyond that there is no ISO string. */
const isoTime = (ms: number): string | undefined => (Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : undefined)

const decimal = (n: number): string | undefined => (Number.isSafeInteger(n) ? String(n) : undefined)

/** True for headers an encode replaces. */
/** Replay headers (`lifeline.replay.*`, written by a DLQ redrive) survive a new failure: they link it to its earlier life. */
const REPLAY_HEADER_PREFIX = 'lifeline.replay.'

function isFailureHeader(key: string, spring: boolean): boolean {
  return (key.startsWith(LIFELINE_HEADER_PREFIX) && !key.startsWith(REPLAY_HEADER_PREFIX)) || (spring && key.startsWith(SPRING_DLT_HEADER_PREFIX))
}

/**
 * The headers of a dead letter: `original` without earlier failure headers (`lifeline.*` except
 * `lifeline.replay.*`, and
 * `kafka_dlt-*` with `spring`), then the headers of `failure`. The kept headers are the same objects in
 * the same order (duplicates and null values included). Never throws: a value that cannot be represented
 * (a non-integer number, an invalid time) leaves its header out.
 */
export function encodeFailureHeaders(original: readonly KafkaHeader[], failure: FailureContext, options: EncodeFailureOptions = {}): KafkaHeader[] {
  const spring = options.spring === true
  const out = original.filter((header) => !isFailureHeader(header.key, spring))
  const add = (key: string, value: string | Buffer | undefined): void => {
    if (value !== undefined) out.push({ key, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value })
  }
  const message = truncateUtf8(failure.errorMessage, MAX_MESSAGE_BYTES)
  const stack = failure.errorStack === undefined ? undefined : truncateUtf8(failure.errorStack, MAX_STACK_BYTES)

  add(LifelineHeaders.schema, FAILURE_HEADERS_SCHEMA)
  add(LifelineHeaders.originTopic, failure.originTopic)
  add(LifelineHeaders.originPartition, decimal(failure.originPartition))
  add(LifelineHeaders.originOffset, decimal(failure.originOffset))
  add(LifelineHeaders.originTimestamp, decimal(failure.originTimestamp))
  add(LifelineHeaders.group, failure.group)
  add(LifelineHeaders.service, failure.service)
  add(LifelineHeaders.errorClass, failure.errorClass)
  add(LifelineHeaders.errorCode, failure.errorCode)
  add(LifelineHeaders.errorMessage, message)
  add(LifelineHeaders.errorStack, stack)
  add(LifelineHeaders.errorFingerprint, failure.errorFingerprint)
  add(LifelineHeaders.attempts, decimal(failure.attempts))
  add(LifelineHeaders.firstFailure, isoTime(failure.firstFailureAt))
  add(LifelineHeaders.lastFailure, isoTime(failure.lastFailureAt))

  if (spring) {
    add(SpringDltHeaders.originalTopic, failure.originTopic)
    add(SpringDltHeaders.originalPartition, int32be(failure.originPartition))
    add(SpringDltHeaders.originalOffset, int64be(failure.originOffset))
    add(SpringDltHeaders.originalTimestamp, int64be(failure.originTimestamp))
    add(SpringDltHeaders.originalTimestampType, failure.originTimestampType ?? 'CreateTime')
    add(SpringDltHeaders.originalConsumerGroup, failure.group)
    add(SpringDltHeaders.exceptionFqcn, failure.errorClass)
    add(SpringDltHeaders.exceptionMessage, message)
    add(SpringDltHeaders.exceptionStacktrace, stack)
  }
  return out
}

/** The value of the last header named `key` (Kafka's `lastHeader`), as UTF-8 text; undefined if absent or not UTF-8. */
function lastText(headers: readonly KafkaHeader[], key: string): string | undefined {
  const value = lastValue(headers, key)
  return value !== undefined && isUtf8(value) ? value.toString('utf8') : undefined
}

function lastValue(headers: readonly KafkaHeader[], key: string): Buffer | undefined {
  for (let i = headers.length - 1; i >= 0; i--) {
    const header = headers[i] as KafkaHeader
    if (header.key === key) return Buffer.isBuffer(header.value) ? header.value : undefined
  }
  return undefined
}

/** `obj` without its undefined-valued keys, so a decoded context lists only what the headers provided. */
function defined<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(obj)) {
    const value = (obj as Record<string, unknown>)[key]
    if (value !== undefined) out[key] = value
  }
  return out as T
}

function parseDecimal(text: string | undefined): number | undefined {
  if (text === undefined || !/^-?\d{1,16}$/.test(text)) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : undefined
}

const ISO_UTC = /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/

function parseIso(text: string | undefined): number | undefined {
  if (text === undefined || !ISO_UTC.test(text)) return undefined
  const ms = Date.parse(text)
  if (Number.isNaN(ms)) return undefined
  // Date.parse rolls 2024-02-30 over to March 1st; a date that does not print back as itself is garbage.
  const printed = new Date(ms).toISOString()
  if (printed === text) return ms // the usual case: written by toISOString()
  return printed.replace(/\.\d+Z$/, '') === text.replace(/(?:\.\d+)?Z$/, '') ? ms : undefined
}

/**
 * The failure context of a dead letter's headers (last occurrence wins), or undefined when it has no
 * `lifeline.*` header at all. Never throws.
 */
export function decodeFailureHeaders(headers: readonly KafkaHeader[]): DecodedFailureContext | undefined {
  if (!headers.some((header) => header.key.startsWith(LIFELINE_HEADER_PREFIX))) return undefined
  const text = (key: string): string | undefined => lastText(headers, key)
  return defined<DecodedFailureContext>({
    schema: text(LifelineHeaders.schema),
    originTopic: text(LifelineHeaders.originTopic),
    originPartition: parseDecimal(text(LifelineHeaders.originPartition)),
    originOffset: parseDecimal(text(LifelineHeaders.originOffset)),
    originTimestamp: parseDecimal(text(LifelineHeaders.originTimestamp)),
    group: text(LifelineHeaders.group),
    service: text(LifelineHeaders.service),
    errorClass: text(LifelineHeaders.errorClass),
    errorCode: text(LifelineHeaders.errorCode),
    errorMessage: text(LifelineHeaders.errorMessage),
    errorStack: text(LifelineHeaders.errorStack),
    errorFingerprint: text(LifelineHeaders.errorFingerprint),
    attempts: parseDecimal(text(LifelineHeaders.attempts)),
    firstFailureAt: parseIso(text(LifelineHeaders.firstFailure)),
    lastFailureAt: parseIso(text(LifelineHeaders.lastFailure)),
  })
}

/**
 * Spring Kafka's dead-letter headers (last occurrence wins, as Spring appends original-record headers on
 * every republish), or undefined when there is no `kafka_dlt-*` header. A partition that is not exactly 4
 * bytes, or an offset/timestamp that is not exactly 8 bytes (or beyond 2^53), reads as undefined. Never throws.
 */
export function decodeSpringHeaders(headers: readonly KafkaHeader[]): SpringDltContext | undefined {
  if (!headers.some((header) => header.key.startsWith(SPRING_DLT_HEADER_PREFIX))) return undefined
  const int32 = (key: string): number | undefined => {
    const value = lastValue(headers, key)
    return value?.length === 4 ? value.readInt32BE(0) : undefined
  }
  const int64 = (key: string): number | undefined => {
    const value = lastValue(headers, key)
    if (value?.length !== 8) return undefined
    const n = value.readBigInt64BE(0)
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined
  }
  const text = (key: string): string | undefined => lastText(headers, key)
  return defined<SpringDltContext>({
    originalTopic: text(SpringDltHeaders.originalTopic),
    originalPartition: int32(SpringDltHeaders.originalPartition),
    originalOffset: int64(SpringDltHeaders.originalOffset),
    originalTimestamp: int64(SpringDltHeaders.originalTimestamp),
    originalTimestampType: text(SpringDltHeaders.originalTimestampType),
    originalConsumerGroup: text(SpringDltHeaders.originalConsumerGroup),
    exceptionFqcn: text(SpringDltHeaders.exceptionFqcn),
    exceptionCauseFqcn: text(SpringDltHeaders.exceptionCauseFqcn),
    exceptionMessage: text(SpringDltHeaders.exceptionMessage),
    exceptionStacktrace: text(SpringDltHeaders.exceptionStacktrace),
    keyExceptionFqcn: text(SpringDltHeaders.keyExceptionFqcn),
    keyExceptionMessage: text(SpringDltHeaders.keyExceptionMessage),
    keyExceptionStacktrace: text(SpringDltHeaders.keyExceptionStacktrace),
  })
}
