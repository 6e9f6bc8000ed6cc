/**
 * Options of the transactional pipeline (`createTransactionalPipeline`): types, defaults and the schema they
 * are validated against (errors name the option path, e.g. `pipeline.retry.maxAttempts`).
 *
 * @module
 */
import Type from 'typebox'
import { LifelineError } from '../errors.js'
import { transactionalProducerDefaults } from '../kafka/index.js'
import type { ConsumedRecord, ProduceRecord } from '../kafka/types.js'
import type { Logger } from '../logger.js'
import type { ClassifierVerdict } from '../retry/classify.js'
import { consumerDefaults, ConsumerOptionsSchema, type DeadLetterOptions } from '../runtime/options.js'
import { validateOptions } from '../util/options.js'
import { NameSchema } from '../util/names.js'

/** What a transform gets besides the record. */
export interface TransformContext {
  /** Aborted when the transaction is being aborted (revocation of the record's partition, close()). */
  signal: AbortSignal
  /** 1 for the first attempt at this record; more after a retriable failure aborted its batch. */
  attempt: number
}

export type Transform = (record: ConsumedRecord, context: TransformContext) => Promise<readonly ProduceRecord[]> | readonly ProduceRecord[]

export interface TransactionalPipelineOptions {
  brokers: string[]
  groupId: string
  /**
   * The producer's transactional.id: stable for one instance across its restarts (e.g. `{app}-{pod ordinal}`)
   * and unique among the instances running at once. A restart with the same id aborts the transaction the
   * crashed instance left open at once; a second live instance with the same id fences the first.
   */
  transactionalId: string
  topics: string[]
  /** Maps one input record to its output records (possibly none). Deterministic or idempotent, no side effects. */
  transform: Transform
  /** The service's name: `{service}` in DLQ topic names and `lifeline.service` of dead letters (default: `groupId`). */
  service?: string
  /** Most records in one transaction (default 500). */
  batchSize?: number
  /** How long a batch may keep filling after its first record, ms (default 100). */
  batchMs?: number
  /** transaction.timeout.ms: a batch must be processed well within it, ms (default 60000). */
  transactionTimeoutMs?: number
  /** session.timeout.ms of the group member (default 10000). */
  sessionTimeoutMs?: number
  /** Start without committed offsets from the earliest record (default true) or the latest. */
  fromBeginning?: boolean
  /**
   * Retries of a failed transform: `maxAttempts` attempts per record, the first included (default 4), then
   * the record is dead-lettered; between attempts the batch is aborted and waits an exponential backoff
   * with full jitter (default 200 ms → 10000 ms), which also paces batches aborted for other reasons.
   */
  retry?: { maxAttempts?: number; baseMs?: number; maxMs?: number }
  /** Error codes (`err.code`, anywhere in the cause chain) that are permanent: dead-lettered at once. */
  permanentCodes?: string[]
  /** Consulted first with a transform's error: `'retry'`, `'permanent'` or undefined (the built-in rules). */
  classifier?: (err: unknown) => ClassifierVerdict
  /**
   * Dead letters (the consumer runtime's options): `topic` template (default `{service}.{topic}.dlq`) or
   * function, `springHeaders` (default false), `provision` (create missing DLQ topics at start(), default
   * true), `retentionMs`, `replicationFactor`.
   */
  deadLetter?: DeadLetterOptions
  /** client.id prefix (default `lifeline-txn`). */
  clientId?: string
  /** Extra librdkafka properties for the consumer and the producer (security, compression, ...). */
  kafkaConfig?: Record<string, string | number | boolean>
  logger?: Logger
}

/** Defaults of {@link TransactionalPipelineOptions}. */
export const transactionalPipelineDefaults = {
  batchSize: 500,
  batchMs: 100,
  transactionTimeoutMs: transactionalProducerDefaults.transactionTimeoutMs,
  sessionTimeoutMs: 10_000,
  fromBeginning: true,
  retry: { maxAttempts: 4, baseMs: 200, maxMs: 10_000 },
  deadLetter: { topic: consumerDefaults.deadLetter.topic, springHeaders: false, provision: true },
  clientId: 'lifeline-txn',
} as const satisfies Partial<TransactionalPipelineOptions>

const Name = NameSchema()

const Schema = Type.Object(
  {
    brokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    groupId: Type.String({ minLength: 1 }),
    transactionalId: Type.String({ minLength: 1 }),
    topics: Type.Array(Name, { minItems: 1 }),
    // Functions (checked after the schema): JSON Schema cannot describe one.
    transform: Type.Any(),
    service: Type.Optional(Name),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    batchMs: Type.Optional(Type.Integer({ minimum: 0 })),
    transactionTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    sessionTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    fromBeginning: Type.Optional(Type.Boolean()),
    retry: Type.Optional(
      Type.Object(
        { maxAttempts: Type.Optional(Type.Integer({ minimum: 1 })), baseMs: Type.Optional(Type.Integer({ minimum: 0 })), maxMs: Type.Optional(Type.Integer({ minimum: 0 })) },
        { additionalProperties: false },
      ),
    ),
    permanentCodes: ConsumerOptionsSchema.properties.permanentCodes,
    classifier: Type.Optional(Type.Any()),
    // One schema for one input: the consumer runtime's dead-letter options.
    deadLetter: ConsumerOptionsSchema.properties.deadLetter,
    clientId: Type.Optional(Type.String({ minLength: 1 })),
    kafkaConfig: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
    logger: Type.Optional(Type.Any()),
  },
  { additionalProperties: false },
)

/** Validates pipeline options (LL_OPTIONS_INVALID names the path) and returns them frozen. */
export function validatePipelineOptions(input: TransactionalPipelineOptions): TransactionalPipelineOptions {
  const options = validateOptions(Schema, input, 'pipeline') as unknown as TransactionalPipelineOptions
  const invalid = (path: string, what: string) => new LifelineError('LL_OPTIONS_INVALID', `invalid options: pipeline.${path}: ${what}`, { details: { problems: [`pipeline.${path}: ${what}`] } })
  if (typeof options.transform !== 'function') throw invalid('transform', 'must be a function')
  if (options.classifier !== undefined && typeof options.classifier !== 'function') throw invalid('classifier', 'must be a function')
  const topic = options.deadLetter?.topic
  if (topic !== undefined && typeof topic !== 'function' && (typeof topic !== 'string' || topic === '')) throw invalid('deadLetter.topic', 'must be a non-empty template string or a function')
  return options
}
