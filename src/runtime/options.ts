/**
 * Options of the Lifeline consumer: types, defaults and the schema they are validated against at
 * construction (errors name the option path, e.g. `consumer.retry.maxAttempts`).
 */
import Type from 'typebox'
import type { Registry } from 'prom-client'
import type { KafkaHeader, TopicPartition, TopicPartitionOffset } from '../kafka/types.js'
import type { Logger } from '../logger.js'
import type { BackoffFunction, Jitter } from '../retry/backoff.js'
import type { ClassifierVerdict } from '../retry/classify.js'
import type { CircuitBreakerOptions, Transition } from '../retry/circuit-breaker.js'
import type { Ordering } from './key-scheduler.js'
import type { SqlExecutor } from '../store/executor.js'
import { MaskingOptionsSchema, type Keyring, type MaskingPolicy } from '../failure/masking.js'
import { MAX_RETRY_TIERS } from '../failure/tier-record.js'
import { NameSchema } from '../util/names.js'

/** What the handler receives for each record. */
/** What happens to a key whose sequence gap stayed open `sequence.timeoutMs`. */
export type GapPolicy = 'hold' | 'skip' | 'dead-letter'

/** Missing sequences, both ends inclusive. */
export type SeqRange = readonly [from: number, to: number]

export interface LifelineMessage<V = unknown> {
  /** The decoded value (null for a tombstone / null value). */
  value: V
  key: Buffer | null
  /** The key as UTF-8 text (null when the key is null). */
  keyText: string | null
  headers: KafkaHeader[]
  /** The first header of that name as UTF-8 text. */
  header(name: string): string | undefined
  /** 1 for the first attempt. */
  attempt: number
  /** Aborted when the consumer closes or loses the partition and the handler overran the drain timeout. */
  signal: AbortSignal
  topic: string
  partition: number
  offset: number
  timestamp: number
  /** The record's exact key and value bytes (`headers` holds the header bytes). */
  raw: { key: Buffer | null; value: Buffer | null }
}

export type Handler<V = unknown> = (message: LifelineMessage<V>) => Promise<void> | void

/** Turns value bytes into the handler's value; throw to mark the record undecodable (permanent). */
export interface Decoder<V = unknown> {
  name: string
  decode(value: Buffer | null): V
}

export interface RetryOptions {
  /** Total attempts, the first included (default 4: the first try and 3 retries). */
  maxAttempts?: number
  /**
   * Backoff between attempts: exponential with jitter (default base 1000 ms, factor 2, max 30000 ms,
   * jitter `full`), `{ type: 'fixed', ms }`, or a function `(attempt, error) => ms`.
   */
  backoff?: { type: 'exponential'; baseMs?: number; factor?: number; maxMs?: number; jitter?: Jitter } | { type: 'fixed'; ms: number } | BackoffFunction
  /** Give up retrying this long after the first failure, ms (default: none). */
  deadlineMs?: number
  /**
   * An attempt that failed because Lifeline's database is unreachable (`LL_DB_CONNECT`: the inbox's
   * transaction could not start or its connection broke): `'wait'` (default) does not count it
   * toward `maxAttempts` or `deadlineMs` — the record waits, backing off from 250 ms to 30 s, until the
   * database answers, like the runtime's own state writes; `'attempt'` counts it like any failure.
   */
  databaseOutage?: 'wait' | 'attempt'
}

export interface DeadLetterOptions {
  /** DLQ topic for a source topic (default `{service}.{topic}.dlq`): a template or a function. */
  topic?: string | ((sourceTopic: string) => string)
  /** Also write Spring Kafka's `kafka_dlt-*` headers (default false). */
  springHeaders?: boolean
  /** Create missing DLQ topics at start() (default true); false = fail start() when one is missing. */
  provision?: boolean
  /** DLQ retention, ms (default 14 days), used when provisioning. */
  retentionMs?: number
  /** Replication factor of created DLQ topics (default: the broker's default). */
  replicationFactor?: number
}

export interface RetryTopicsOptions {
  /**
   * One delay per tier, ms: `[5000, 60000, 600000]` makes tiers `.retry.1` (5 s), `.retry.2` (1 min) and
   * `.retry.3` (10 min). A record whose in-place attempts (`retry.maxAttempts`) failed with a retriable error
   * moves to the next tier and its source offset is committed; after the last tier it is dead-lettered.
   */
  delaysMs: number[]
  /** Tier topic name: a template with `{service}`, `{topic}`, `{n}` (default `{service}.{topic}.retry.{n}`) or a function. */
  topic?: string | ((sourceTopic: string, n: number) => string)
  /** Retention of created tier topics, ms (default 7 days). */
  retentionMs?: number
}

export interface ParkingOptions {
  /** How often the owner of a partition looks for keys released elsewhere (a retry tier, an operator), ms (default 1000). */
  pollMs?: number
}

export interface SequenceOptions {
  /**
   * The record's sequence within its key: a non-negative safe integer, or undefined/null for a record that
   * is not sequenced. Gets the decoded message (`attempt` is 0). Throwing, or returning anything else,
   * dead-letters the record (LL_SEQUENCE_INVALID).
   */
  extract: (message: LifelineMessage<unknown>) => number | bigint | null | undefined
  /** The sequence of a key's first record (default: the first one seen is the key's start). */
  firstSequence?: number
  /** How long a gap may stay open, ms (default 30000). */
  timeoutMs?: number
  /** What happens to a gap still open after `timeoutMs` (default `hold`). */
  policy?: GapPolicy
  /**
   * @deprecated No effect since records that arrive ahead of a gap are stored in the state database
   * (store, then process) instead of an in-memory reorder buffer: nothing is held in memory and a gap
   * never pauses a partition. Accepted so existing configurations keep working.
   */
  maxPerKey?: number
  /** @deprecated No effect (see `maxPerKey`). */
  maxTotal?: number
}

export interface ConsumerEvents {
  /** A record's handler succeeded. */
  processed: [info: { topic: string; partition: number; offset: number; attempts: number; durationMs: number }]
  /** An attempt failed and the record will be tried again after `delayMs`. */
  retry: [info: { topic: string; partition: number; offset: number; attempt: number; delayMs: number; error: unknown }]
  /** A record was written to its DLQ; its offset is committable once `onDeadLetter` (if any) returned. */
  'dead-letter': [info: { topic: string; partition: number; offset: number; dlqTopic: string; dlqOffset: number; errorCode: string; attempts: number }]
  /** Offsets were committed. */
  commit: [offsets: Array<{ topic: string; partition: number; offset: number }>]
  'partitions-assigned': [partitions: Array<{ topic: string; partition: number }>]
  'partitions-revoked': [partitions: Array<{ topic: string; partition: number }>, lost: boolean]
  paused: [partition: { topic: string; partition: number }, reason: string]
  resumed: [partition: { topic: string; partition: number }]
  /** A record left the main path to a retry tier (`location` `retry:N`) or the DLQ. */
  'retry-tier': [info: { topic: string; partition: number; offset: number; tier: number; retryTopic: string; dueAt: number; attempts: number; errorCode: string }]
  /** A key was parked behind a record that left the main path (or its head moved to another tier or the DLQ). */
  parked: [info: { topic: string; partition: number; key: Buffer; offset: number; location: string }]
  /**
   * A record arrived for a parked key and is stored behind its head (its offset is then committed); `again`:
   * it was delivered again and found stored already (by this member or a former owner of its partition).
   */
  'record-parked': [info: { topic: string; partition: number; key: Buffer; offset: number; again: boolean }]
  /** A released key's parked records were all replayed and the key flows again. */
  released: [info: { topic: string; partition: number; key: Buffer; replayed: number }]
  /** A record at or below its key's last handled sequence was skipped. */
  duplicate: [info: { topic: string; partition: number; offset: number; key: Buffer; seq: number }]
  /** A sequence gap timed out: `policy` says what happened (`hold` repeats every timeoutMs while it stays open). */
  'sequence-gap': [info: { topic: string; partition: number; key: Buffer; missing: SeqRange; policy: GapPolicy; waitingMs?: number; records: number }]
  /** The circuit breaker changed state (only with the `circuitBreaker` option). */
  breaker: [transition: Transition]
  fenced: [info: { topic: string; partition: number; epoch: number }]
  /** A non-fatal problem the consumer recovers from by itself (poll, commit or DLQ write failures). */
  error: [error: unknown]
}

export interface ConsumerOptions<V = unknown> {
  brokers: string[]
  groupId: string
  /** The service's name: part of DLQ topic names and failure headers. */
  service: string
  topics: string[]
  handler: Handler<V>
  /** `'json'` (default), `'string'`, `'raw'` (Buffer) or a custom {@link Decoder}. */
  decoder?: 'json' | 'string' | 'raw' | Decoder<V>
  /** JSON Schema (or a typebox schema) the decoded value must satisfy; a failure is permanent. */
  schema?: object
  /** `'key'` (default): one record per key at a time, keys in parallel; `'partition'`; `'none'`. */
  ordering?: Ordering
  /** Handlers running at once (default 32). */
  concurrency?: number
  /** `'at-least-once'` (default, commit after the effect) or `'at-most-once'` (commit before the handler). */
  delivery?: 'at-least-once' | 'at-most-once'
  /** Pause a partition when this many of its records are buffered (default 5000; a pause makes librdkafka refetch, so not too low). */
  maxBufferedPerPartition?: number
  /** Pause every partition when the buffered bytes reach this (default 64 MiB). */
  maxBufferedBytes?: number
  retry?: RetryOptions
  /** Error codes (anywhere in the cause chain) that go straight to the DLQ. */
  permanentCodes?: string[]
  /** Per-error override: `'retry'`, `'permanent'` or undefined (no opinion). */
  classifier?: (error: unknown) => ClassifierVerdict
  deadLetter?: DeadLetterOptions
  /**
   * Stop consuming while a downstream is down instead of burning retries into the DLQ (opt-in). When the
   * rate of retriable failures in the window crosses the threshold the breaker opens: every partition
   * pauses, no handler starts, and attempts that fail meanwhile do not count toward `retry.maxAttempts`.
   * After `openMs` one probe record runs; `successesToClose` probe successes close it and consumption resumes.
   * Permanent failures (bad payloads) never count.
   */
  circuitBreaker?: CircuitBreakerOptions
  /**
   * Non-blocking retries: after `retry.maxAttempts` in-place attempts a retriable failure moves to retry-tier
   * topics instead of the DLQ (see {@link RetryTopicsOptions}). With `ordering` `key` or `partition` it needs
   * `state`, so later records of the key park behind it.
   */
  retryTopics?: RetryTopicsOptions
  /**
   * The database for ordering state (parked keys, parked records, last sequences): a PostgreSQL server
   * shared by the group's members (or embedded PGlite for a single process). Lifeline migrates its tables
   * at start(). With it and `ordering` `key`/`partition`, a key whose record leaves the main path (retry tier
   * or DLQ) is parked: its later records wait, in order, until the head succeeds or is released.
   */
  state?: SqlExecutor
  parking?: ParkingOptions
  /** Per-key sequence reordering and duplicate detection (needs `state`). */
  sequence?: SequenceOptions
  /**
   * Positions stored with the effects (e.g. `inbox.startOffsets` with `storeOffsets`): on assignment a
   * partition starts at the stored offset when it is ahead of the group's committed one. Needs
   * `ordering: 'partition'` (then every offset below a stored position is finished).
   */
  startOffsets?: (partitions: TopicPartition[]) => Promise<TopicPartitionOffset[]>
  /**
   * PII masking of dead letters: policies by topic and JSON path (`redact`, `hash`, `encrypt` with
   * AES-256-GCM under `keyring`), applied to the DLQ record's value, error message, stack and named headers
   * before it is written (see docs/masking.md). Retry-tier records keep the clear value (the handler needs it).
   */
  masking?: { policies: MaskingPolicy[]; keyring?: Keyring }
  /** Runs after the DLQ write and before the record's offset is committed (seed 003's recovery step). */
  onDeadLetter?: (record: LifelineMessage<V>, error: unknown) => Promise<void> | void
  /** Commit interval, ms (default 1000); commits also happen on revoke and close. */
  commitIntervalMs?: number
  /** How long a revocation or close() waits for in-flight handlers, ms (default 30000). */
  drainTimeoutMs?: number
  /** session.timeout.ms (default 10000). */
  sessionTimeoutMs?: number
  /**
   * Extra librdkafka properties for the consumer, the DLQ producer and the admin client. They override the
   * producer's defaults; the consumer's commit and assignment settings (manual commits, cooperative-sticky)
   * are fixed by Lifeline and cannot be changed here.
   */
  kafkaConfig?: Record<string, string | number | boolean>
  /** A prom-client registry to register Lifeline's metrics in (see docs/metrics.md). */
  metrics?: { registry: Registry }
  /**
   * OpenTelemetry spans (default true): made only when an SDK registered a tracer provider (checked per poll
   * batch). false: never, even with an SDK registered (see docs/tracing.md).
   */
  tracing?: boolean
  logger?: Logger
}

export const consumerDefaults = {
  decoder: 'json',
  ordering: 'key',
  concurrency: 32,
  delivery: 'at-least-once',
  maxBufferedPerPartition: 5000,
  maxBufferedBytes: 64 * 1024 * 1024,
  commitIntervalMs: 1000,
  drainTimeoutMs: 30_000,
  sessionTimeoutMs: 10_000,
  retry: { maxAttempts: 4, baseMs: 1000, factor: 2, maxMs: 30_000, jitter: 'full' as Jitter },
  deadLetter: { topic: '{service}.{topic}.dlq', springHeaders: false, provision: true, retentionMs: 14 * 24 * 3600 * 1000 },
  retryTopics: { topic: '{service}.{topic}.retry.{n}', retentionMs: 7 * 24 * 3600 * 1000 },
  parking: { pollMs: 1000 },
  sequence: { timeoutMs: 30_000, policy: 'hold' as GapPolicy },
} as const

const NonEmpty = Type.String({ minLength: 1 })
const PositiveInt = Type.Integer({ minimum: 1 })

/** Structural checks; functions are checked with typeof after the schema (typebox has no function type in JSON Schema). */
export const ConsumerOptionsSchema = Type.Object(
  {
    brokers: Type.Array(NonEmpty, { minItems: 1 }),
    groupId: NonEmpty,
    service: NameSchema(),
    topics: Type.Array(NameSchema(), { minItems: 1 }),
    handler: Type.Any(),
    decoder: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('string'), Type.Literal('raw'), Type.Object({ name: Type.String(), decode: Type.Any() })])),
    schema: Type.Optional(Type.Object({})),
    ordering: Type.Optional(Type.Union([Type.Literal('key'), Type.Literal('partition'), Type.Literal('none')])),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    delivery: Type.Optional(Type.Union([Type.Literal('at-least-once'), Type.Literal('at-most-once')])),
    maxBufferedPerPartition: Type.Optional(PositiveInt),
    maxBufferedBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    retry: Type.Optional(
      Type.Object(
        {
          maxAttempts: Type.Optional(PositiveInt),
          backoff: Type.Optional(
            Type.Union([
              Type.Object(
                {
                  type: Type.Literal('exponential'),
                  baseMs: Type.Optional(Type.Integer({ minimum: 0 })),
                  factor: Type.Optional(Type.Number({ minimum: 1 })),
                  maxMs: Type.Optional(Type.Integer({ minimum: 0 })),
                  jitter: Type.Optional(Type.Union([Type.Literal('full'), Type.Literal('equal'), Type.Literal('none')])),
                },
                { additionalProperties: false },
              ),
              Type.Object({ type: Type.Literal('fixed'), ms: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
              // A function (checked in functionOptions): JSON Schema cannot describe one.
              Type.Unsafe<BackoffFunction>({ 'x-function': true, not: { type: ['object', 'array', 'string', 'number', 'boolean', 'null'] } }),
            ]),
          ),
          deadlineMs: Type.Optional(PositiveInt),
          databaseOutage: Type.Optional(Type.Union([Type.Literal('wait'), Type.Literal('attempt')])),
        },
        { additionalProperties: false },
      ),
    ),
    permanentCodes: Type.Optional(Type.Array(Type.String())),
    classifier: Type.Optional(Type.Any()),
    deadLetter: Type.Optional(
      Type.Object(
        {
          topic: Type.Optional(Type.Any()),
          springHeaders: Type.Optional(Type.Boolean()),
          provision: Type.Optional(Type.Boolean()),
          retentionMs: Type.Optional(PositiveInt),
          replicationFactor: Type.Optional(PositiveInt),
        },
        { additionalProperties: false },
      ),
    ),
    onDeadLetter: Type.Optional(Type.Any()),
    retryTopics: Type.Optional(
      Type.Object(
        {
          delaysMs: Type.Array(Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600 * 1000 }), { minItems: 1, maxItems: MAX_RETRY_TIERS }),
          topic: Type.Optional(Type.Any()),
          retentionMs: Type.Optional(PositiveInt),
        },
        { additionalProperties: false },
      ),
    ),
    state: Type.Optional(Type.Any()),
    parking: Type.Optional(Type.Object({ pollMs: Type.Optional(Type.Integer({ minimum: 10 })) }, { additionalProperties: false })),
    sequence: Type.Optional(
      Type.Object(
        {
          extract: Type.Any(),
          firstSequence: Type.Optional(Type.Integer({ minimum: 0 })),
          timeoutMs: Type.Optional(PositiveInt),
          policy: Type.Optional(Type.Union([Type.Literal('hold'), Type.Literal('skip'), Type.Literal('dead-letter')])),
          maxPerKey: Type.Optional(PositiveInt),
          maxTotal: Type.Optional(PositiveInt),
        },
        { additionalProperties: false },
      ),
    ),
    startOffsets: Type.Optional(Type.Any()),
    masking: Type.Optional(MaskingOptionsSchema),
    circuitBreaker: Type.Optional(
      Type.Object(
        {
          windowMs: Type.Optional(Type.Integer({ minimum: 1 })),
          minimumCalls: Type.Optional(PositiveInt),
          failureRateThreshold: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
          openMs: Type.Optional(Type.Integer({ minimum: 0 })),
          halfOpenProbes: Type.Optional(PositiveInt),
          successesToClose: Type.Optional(PositiveInt),
        },
        { additionalProperties: false },
      ),
    ),
    commitIntervalMs: Type.Optional(Type.Integer({ minimum: 10 })),
    drainTimeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
    sessionTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    kafkaConfig: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
    metrics: Type.Optional(Type.Object({ registry: Type.Any() })),
    tracing: Type.Optional(Type.Boolean()),
    logger: Type.Optional(Type.Any()),
  },
  { additionalProperties: false },
)

/** Function-valued options typebox cannot check: [path, value, required]. */
export function functionOptions(o: ConsumerOptions<unknown>): Array<[string, unknown, boolean]> {
  return [
    ['handler', o.handler, true],
    ['classifier', o.classifier, false],
    ['onDeadLetter', o.onDeadLetter, false],
    ['sequence.extract', o.sequence?.extract, o.sequence !== undefined],
    ['startOffsets', o.startOffsets, false],
    ['state.transaction', o.state?.transaction, o.state !== undefined],
    ['retryTopics.topic', typeof o.retryTopics?.topic === 'function' ? o.retryTopics.topic : undefined, false],
    ['decoder.decode', typeof o.decoder === 'object' ? o.decoder.decode : undefined, typeof o.decoder === 'object'],
  ]
}

/** The DLQ topic name for a source topic. */
export function dlqTopicName(service: string, sourceTopic: string, template: DeadLetterOptions['topic'] = consumerDefaults.deadLetter.topic): string {
  if (typeof template === 'function') return template(sourceTopic)
  return template.replaceAll('{service}', service).replaceAll('{topic}', sourceTopic)
}
