/**
 * Readers for every DLQ format the indexer understands (pure): Lifeline's own `lifeline.*` headers, Spring
 * Kafka's dead-letter topics (both the `DeadLetterPublishingRecoverer` DLT and the `@RetryableTopic` DLT),
 * Kafka Connect's `__connect.errors.*`, Kafka Streams' `__streams.errors.*` (KIP-1034) and Karafka's
 * `source_*` headers. A record in none of them is `unknown`: still indexed, with its raw headers.
 *
 * Header values are read as their writers write them (see the constants below for the source of each
 * encoding). Nothing here throws, whatever the headers hold: a value that is missing, not UTF-8, out of
 * range or of the wrong width reads as undefined.
 *
 * @module
 */
import type { ConsumedRecord, KafkaHeader } from '../kafka/types.js'
import { fingerprint } from './fingerprint.js'
import { MASKED_HEADER } from './masking.js'
import { bigInteger, decimal, has, int32, int64, INT32_MAX, lastValue, position, springAttempts, text, timestamp } from './header-values.js'
import { decodeFailureHeaders, decodeSpringHeaders, LifelineHeaders, MAX_MESSAGE_BYTES, MAX_STACK_BYTES, SPRING_DLT_HEADER_PREFIX, truncateUtf8 } from './headers.js'

export type DeadLetterFormat = 'lifeline' | 'spring' | 'spring-retry' | 'connect' | 'streams' | 'karafka' | 'unknown'

export { springAttempts }

export const DEAD_LETTER_FORMATS: readonly DeadLetterFormat[] = Object.freeze(['lifeline', 'spring', 'spring-retry', 'connect', 'streams', 'karafka', 'unknown'])

/**
 * Headers a Lifeline redrive writes on a replayed record. A record that fails again carries them back to a
 * DLQ (whatever system dead-letters it, as long as it keeps the record's headers), which links it to its
 * earlier life.
 */
export const ReplayHeaders = Object.freeze({
  /** The replay's id (`lifeline_dlq_replays.replay_id`). */
  id: 'lifeline.replay.id',
  /** Replays of this record's lineage so far, this one included (decimal). */
  count: 'lifeline.replay.count',
  /** Who asked for the replay. */
  actor: 'lifeline.replay.actor',
} as const)

/**
 * Spring Kafka `@RetryableTopic` headers (`KafkaHeaders.ORIGINAL_*`, `EXCEPTION_*`, `RetryTopicHeaders`).
 * Partition is an int32 and offset/timestamp int64, big-endian (`DeadLetterRecordManager`);
 * `retry_topic-attempts` is an int32 since spring-kafka 2.7.9 (GH-2003; before, `BigInteger.toByteArray()`:
 * one byte for small counts); the `retry_topic-*` timestamps are `BigInteger.toByteArray()` (1 to 8 bytes).
 */
export const SpringRetryHeaders = Object.freeze({
  originalTopic: 'kafka_original-topic',
  originalPartition: 'kafka_original-partition',
  originalOffset: 'kafka_original-offset',
  originalTimestamp: 'kafka_original-timestamp',
  originalTimestampType: 'kafka_original-timestamp-type',
  /** Same name as the DLT's (`KafkaHeaders.ORIGINAL_CONSUMER_GROUP`). */
  originalConsumerGroup: 'kafka_dlt-original-consumer-group',
  exceptionFqcn: 'kafka_exception-fqcn',
  exceptionCauseFqcn: 'kafka_exception-cause-fqcn',
  exceptionMessage: 'kafka_exception-message',
  exceptionStacktrace: 'kafka_exception-stacktrace',
  keyExceptionFqcn: 'kafka_key-exception-fqcn',
  keyExceptionMessage: 'kafka_key-exception-message',
  keyExceptionStacktrace: 'kafka_key-exception-stacktrace',
  attempts: 'retry_topic-attempts',
  originalTimestampRetry: 'retry_topic-original-timestamp',
  backoffTimestamp: 'retry_topic-backoff-timestamp',
} as const)

/** Spring's delivery-attempt header (int32), written when the container's `deliveryAttemptHeader` is on. */
export const SPRING_DELIVERY_ATTEMPT = 'kafka_deliveryAttempt'

/** Kafka Connect's error context (`DeadLetterQueueReporter`, `errors.deadletterqueue.context.headers.enable`); UTF-8 text. */
export const ConnectHeaders = Object.freeze({
  topic: '__connect.errors.topic',
  partition: '__connect.errors.partition',
  offset: '__connect.errors.offset',
  connectorName: '__connect.errors.connector.name',
  taskId: '__connect.errors.task.id',
  stage: '__connect.errors.stage',
  className: '__connect.errors.class.name',
  exceptionClass: '__connect.errors.exception.class.name',
  exceptionMessage: '__connect.errors.exception.message',
  exceptionStacktrace: '__connect.errors.exception.stacktrace',
} as const)

/**
 * Kafka Streams' DLQ headers (KIP-1034, Kafka 4.2, `org.apache.kafka.streams.errors.ExceptionHandlerUtils`);
 * UTF-8 text. `exception` is the exception's `toString()` (`fqcn: message`).
 */
export const StreamsHeaders = Object.freeze({
  exception: '__streams.errors.exception',
  message: '__streams.errors.message',
  stacktrace: '__streams.errors.stacktrace',
  topic: '__streams.errors.topic',
  partition: '__streams.errors.partition',
  offset: '__streams.errors.offset',
} as const)

/**
 * Karafka's DLQ headers (`build_dlq_message` in Karafka's DLQ strategies): `source_*` since Karafka 2.4,
 * `original_*` before; decimal text. Karafka writes no error class or message.
 */
export const KarafkaHeaders = Object.freeze({
  topic: 'source_topic',
  partition: 'source_partition',
  offset: 'source_offset',
  consumerGroup: 'source_consumer_group',
  attempts: 'source_attempts',
  traceId: 'source_trace_id',
  legacyTopic: 'original_topic',
  legacyPartition: 'original_partition',
  legacyOffset: 'original_offset',
  legacyConsumerGroup: 'original_consumer_group',
  legacyAttempts: 'original_attempts',
} as const)

/** What a dead letter says about its failure, whatever its format. Times are ms since the epoch. */
export interface DeadLetterContext {
  format: DeadLetterFormat
  originTopic?: string
  originPartition?: number
  originOffset?: number
  originTimestamp?: number
  consumerGroup?: string
  service?: string
  errorClass?: string
  errorCode?: string
  /** Capped at {@link MAX_MESSAGE_BYTES} UTF-8 bytes. */
  errorMessage?: string
  /** Capped at {@link MAX_STACK_BYTES} UTF-8 bytes. */
  errorStack?: string
  /** Lifeline's `lifeline.error.fingerprint`, else computed (see {@link foreignFingerprint}). Always set. */
  fingerprint: string
  /** Attempts made, all failed. */
  attempts?: number
  firstFailureAt?: number
  lastFailureAt?: number
  /** `lifeline.replay.id`: the replay this record came back from. */
  replayId?: string
  /** `lifeline.replay.count`: replays of its lineage before this life. */
  replayCount?: number
  /** Lifeline's `lifeline.masked` marker (the runtime masked this record before writing it). */
  masked?: string
  /** Format-specific context without a field of its own (Connect task and stage, Karafka trace id, ...). */
  details: Record<string, string>
}

// ---------------------------------------------------------------------------------------------------------
// Fingerprints of foreign stacks.

/**
 * Ruby (`path:line:in 'method'`) and Python (`File "path", line n, in fn`) frames rewritten as V8 frames, so
 * {@link fingerprint} sees their top frames; Java frames (`\tat pkg.Class.method(File.java:42)`) already
 * read as V8 frames.
 */
function asV8Frames(stack: string): string {
  return stack
    .split('\n')
    .map((line) => {
      const ruby = /^\s*(?:from\s+)?(\S+?):\d+:in [`'](.+)'\s*$/.exec(line)
      if (ruby) return `    at ${ruby[2] ?? ''} (${ruby[1] ?? ''})`
      const python = /^\s*File "(.+)", line \d+, in (.+)$/.exec(line)
      if (python) return `    at ${python[2] ?? ''} (${python[1] ?? ''})`
      return line
    })
    .join('\n')
}

/**
 * The fingerprint of a failure that did not bring Lifeline's: error class + code + normalised top frames,
 * as {@link fingerprint} computes it for Lifeline's own dead letters (so a JavaScript service's failure
 * groups the same whichever way it reached the DLQ). Without a class, the format stands in for it.
 */
export function foreignFingerprint(format: DeadLetterFormat, errorClass: string | undefined, errorCode: string | undefined, stack: string | undefined): string {
  return fingerprint(errorClass ?? `(${format})`, errorCode ?? 'UNKNOWN', stack === undefined ? undefined : asV8Frames(stack))
}

// ---------------------------------------------------------------------------------------------------------

type Parsed = Omit<DeadLetterContext, 'fingerprint' | 'details' | 'replayId' | 'replayCount'> & { fingerprint?: string; details?: Record<string, string> }

function parseLifeline(headers: readonly KafkaHeader[]): Parsed | undefined {
  const decoded = decodeFailureHeaders(headers)
  if (!decoded) return undefined
  // Replay or retry-tier headers alone (a replayed record dead-lettered by another system) are not a Lifeline dead letter.
  if (decoded.originTopic === undefined && decoded.errorClass === undefined && decoded.schema === undefined) return undefined
  return {
    format: 'lifeline',
    originTopic: decoded.originTopic,
    originPartition: position(decoded.originPartition, INT32_MAX),
    originOffset: position(decoded.originOffset),
    originTimestamp: timestamp(decoded.originTimestamp),
    consumerGroup: decoded.group,
    service: decoded.service,
    errorClass: decoded.errorClass,
    errorCode: decoded.errorCode,
    errorMessage: decoded.errorMessage,
    errorStack: decoded.errorStack,
    fingerprint: decoded.errorFingerprint,
    attempts: position(decoded.attempts, INT32_MAX),
    firstFailureAt: decoded.firstFailureAt,
    lastFailureAt: decoded.lastFailureAt,
    masked: text(headers, MASKED_HEADER),
  }
}

function isSpringRetry(headers: readonly KafkaHeader[]): boolean {
  return has(headers, SpringRetryHeaders.attempts) || has(headers, SpringRetryHeaders.originalTimestampRetry) || has(headers, SpringRetryHeaders.originalTopic)
}

function parseSpringRetry(headers: readonly KafkaHeader[]): Parsed {
  const h = SpringRetryHeaders
  const t = (key: string) => text(headers, key)
  const counted = springAttempts(lastValue(headers, h.attempts))
  const errorClass = t(h.exceptionCauseFqcn) ?? t(h.exceptionFqcn) ?? t(h.keyExceptionFqcn)
  const wrapper = t(h.exceptionFqcn)
  return {
    format: 'spring-retry',
    originTopic: t(h.originalTopic),
    originPartition: position(int32(lastValue(headers, h.originalPartition)), INT32_MAX),
    originOffset: position(int64(lastValue(headers, h.originalOffset))),
    originTimestamp: timestamp(bigInteger(lastValue(headers, h.originalTimestampRetry)) ?? int64(lastValue(headers, h.originalTimestamp))),
    consumerGroup: t(h.originalConsumerGroup),
    errorClass,
    errorMessage: t(h.exceptionMessage) ?? t(h.keyExceptionMessage),
    errorStack: t(h.exceptionStacktrace) ?? t(h.keyExceptionStacktrace),
    // The header is the number of the attempt the record would make next: on a DLT record, the attempts
    // made plus one (DeadLetterPublishingRecovererFactory.addHeaders writes getAttempts(record) + 1).
    attempts: counted !== undefined && counted >= 2 ? counted - 1 : counted === 1 ? 1 : undefined,
    // The DLT hop's due time: the failure time plus the DLT's delay, which is none.
    lastFailureAt: timestamp(bigInteger(lastValue(headers, h.backoffTimestamp))),
    details: defined({ timestampType: t(h.originalTimestampType), exceptionFqcn: wrapper !== errorClass ? wrapper : undefined }),
  }
}

function parseSpring(headers: readonly KafkaHeader[]): Parsed | undefined {
  const spring = decodeSpringHeaders(headers)
  if (!spring) return undefined
  const errorClass = spring.exceptionCauseFqcn ?? spring.exceptionFqcn ?? spring.keyExceptionFqcn
  const attempts = int32(lastValue(headers, SPRING_DELIVERY_ATTEMPT))
  return {
    format: 'spring',
    originTopic: spring.originalTopic,
    originPartition: position(spring.originalPartition, INT32_MAX),
    originOffset: position(spring.originalOffset),
    originTimestamp: timestamp(spring.originalTimestamp),
    consumerGroup: spring.originalConsumerGroup,
    errorClass,
    errorMessage: spring.exceptionMessage ?? spring.keyExceptionMessage,
    errorStack: spring.exceptionStacktrace ?? spring.keyExceptionStacktrace,
    attempts: attempts !== undefined && attempts >= 1 ? attempts : undefined,
    details: defined({ timestampType: spring.originalTimestampType, exceptionFqcn: spring.exceptionFqcn !== errorClass ? spring.exceptionFqcn : undefined }),
  }
}

function parseConnect(headers: readonly KafkaHeader[]): Parsed | undefined {
  if (!headers.some((h) => h.key.startsWith('__connect.errors.'))) return undefined
  const h = ConnectHeaders
  const t = (key: string) => text(headers, key)
  const connector = t(h.connectorName)
  return {
    format: 'connect',
    originTopic: t(h.topic),
    originPartition: position(decimal(t(h.partition)), INT32_MAX),
    originOffset: position(decimal(t(h.offset))),
    service: connector,
    errorClass: t(h.exceptionClass),
    // The stage (KEY_CONVERTER, VALUE_CONVERTER, TRANSFORMATION, TASK_PUT, ...) is Connect's nearest thing to a code.
    errorCode: t(h.stage),
    errorMessage: t(h.exceptionMessage),
    errorStack: t(h.exceptionStacktrace),
    details: defined({ connector, taskId: t(h.taskId), stage: t(h.stage), className: t(h.className) }),
  }
}

function parseStreams(headers: readonly KafkaHeader[]): Parsed | undefined {
  if (!headers.some((h) => h.key.startsWith('__streams.errors.'))) return undefined
  const h = StreamsHeaders
  const t = (key: string) => text(headers, key)
  const exception = t(h.exception)
  // Throwable.toString(): `fqcn` or `fqcn: message`.
  const fqcn = exception === undefined ? undefined : /^([\w$.]+)(?::|$)/.exec(exception)?.[1]
  const message = t(h.message)
  return {
    format: 'streams',
    originTopic: t(h.topic),
    originPartition: position(decimal(t(h.partition)), INT32_MAX),
    originOffset: position(decimal(t(h.offset))),
    errorClass: fqcn,
    errorMessage: message ?? (fqcn !== undefined && exception !== undefined && exception.length > fqcn.length + 2 ? exception.slice(fqcn.length + 2) : undefined),
    errorStack: t(h.stacktrace),
  }
}

function parseKarafka(headers: readonly KafkaHeader[]): Parsed | undefined {
  const h = KarafkaHeaders
  const current = has(headers, h.topic) && (has(headers, h.partition) || has(headers, h.offset))
  // The pre-2.4 names are generic: all three must be there.
  const legacy = !current && has(headers, h.legacyTopic) && has(headers, h.legacyPartition) && has(headers, h.legacyOffset)
  if (!current && !legacy) return undefined
  const t = (key: string) => text(headers, key)
  const attempts = position(decimal(current ? t(h.attempts) : t(h.legacyAttempts)), INT32_MAX)
  return {
    format: 'karafka',
    originTopic: current ? t(h.topic) : t(h.legacyTopic),
    originPartition: position(decimal(current ? t(h.partition) : t(h.legacyPartition)), INT32_MAX),
    originOffset: position(decimal(current ? t(h.offset) : t(h.legacyOffset))),
    consumerGroup: current ? t(h.consumerGroup) : t(h.legacyConsumerGroup),
    attempts: attempts !== undefined && attempts >= 1 ? attempts : undefined,
    details: defined({ traceId: current ? t(h.traceId) : undefined }),
  }
}

function defined(obj: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(obj).filter((entry): entry is [string, string] => entry[1] !== undefined))
}

/**
 * The failure context of a dead letter, in the first format whose headers it carries: Lifeline (also when it
 * carries Spring headers too: Lifeline writes both with `springHeaders`), Spring retry-topic, Spring DLT,
 * Connect, Streams, Karafka; else `unknown`. Never throws.
 */
export function parseDeadLetter(record: Pick<ConsumedRecord, 'headers'>): DeadLetterContext {
  const headers = Array.isArray(record.headers) ? record.headers.filter((h): h is KafkaHeader => h !== null && typeof h === 'object' && typeof h.key === 'string') : []
  let parsed: Parsed | undefined = parseLifeline(headers)
  if (!parsed && isSpringRetry(headers)) parsed = parseSpringRetry(headers)
  parsed ??= parseSpring(headers) ?? parseConnect(headers) ?? parseStreams(headers) ?? parseKarafka(headers) ?? { format: 'unknown' }

  const errorMessage = parsed.errorMessage === undefined ? undefined : truncateUtf8(parsed.errorMessage, MAX_MESSAGE_BYTES)
  const errorStack = parsed.errorStack === undefined ? undefined : truncateUtf8(parsed.errorStack, MAX_STACK_BYTES)
  const headerFingerprint = parsed.fingerprint !== undefined && /^[\w.:-]{1,128}$/.test(parsed.fingerprint) ? parsed.fingerprint : undefined
  const replayId = text(headers, ReplayHeaders.id)
  const replayCount = position(decimal(text(headers, ReplayHeaders.count)), INT32_MAX)
  const context: DeadLetterContext = {
    ...parsed,
    errorMessage,
    errorStack,
    fingerprint: headerFingerprint ?? foreignFingerprint(parsed.format, parsed.errorClass, parsed.errorCode, errorStack),
    replayId: replayId !== undefined && replayId.length <= 200 ? replayId : undefined,
    replayCount,
    details: parsed.details ?? {},
  }
  // Without its undefined fields: copied rather than deleted from (a deleted property turns an object into a slow dictionary).
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(context) as Array<keyof DeadLetterContext>) if (context[key] !== undefined) out[key] = context[key]
  return out as unknown as DeadLetterContext
}

/**
 * Headers that carry error text (messages, stack traces, `toString()`s) in each format, Lifeline's own
 * included: the indexer masks them as it masks the error message.
 */
export const ERROR_TEXT_HEADERS: ReadonlySet<string> = new Set([
  LifelineHeaders.errorMessage,
  LifelineHeaders.errorStack,
  `${SPRING_DLT_HEADER_PREFIX}exception-message`,
  `${SPRING_DLT_HEADER_PREFIX}exception-stacktrace`,
  `${SPRING_DLT_HEADER_PREFIX}key-exception-message`,
  `${SPRING_DLT_HEADER_PREFIX}key-exception-stacktrace`,
  SpringRetryHeaders.exceptionMessage,
  SpringRetryHeaders.exceptionStacktrace,
  SpringRetryHeaders.keyExceptionMessage,
  SpringRetryHeaders.keyExceptionStacktrace,
  ConnectHeaders.exceptionMessage,
  ConnectHeaders.exceptionStacktrace,
  StreamsHeaders.exception,
  StreamsHeaders.message,
  StreamsHeaders.stacktrace,
])
