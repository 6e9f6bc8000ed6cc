/**
 * The DLQ indexer's options (their one schema and defaults), its stats and its interface
 * ({@link createDlqIndexer} in indexer.ts builds it).
 *
 * @module
 */
import Type from 'typebox'
import type { Registry } from 'prom-client'
import type { TopicPartition } from '../kafka/types.js'
import type { Logger } from '../logger.js'
import type { SqlExecutor } from '../store/executor.js'
import type { DeadLetterFormat } from '../failure/formats.js'
import { MaskingOptionsSchema, type Keyring, type MaskingPolicy } from '../failure/masking.js'
import { NameSchema } from '../util/names.js'

export interface DlqIndexerOptions {
  brokers: string[]
  /** The DLQ processor's database (migrated at start unless `migrate` is false). */
  db: SqlExecutor
  /** DLQ topics to index. */
  topics?: string[]
  /**
   * A regular expression of DLQ topic names (librdkafka's regex dialect, POSIX extended; `^` is added when
   * missing). Topics created later are picked up at the next metadata refresh (`topicRefreshMs`).
   */
  pattern?: string
  /** Consumer group (default `lifeline-dlq-indexer`). */
  groupId?: string
  /** PII masking of foreign records (see docs/masking.md). */
  masking?: { policies: MaskingPolicy[]; keyring?: Keyring }
  /** Records per batch, one transaction each (default 500). */
  batchSize?: number
  /** How long a poll waits for the first record, ms (default 500). */
  pollTimeoutMs?: number
  /** How often librdkafka refreshes topic metadata, which is when a `pattern` sees new topics, ms (default 30000). */
  topicRefreshMs?: number
  /** How long a revocation waits for the batch being stored, ms (default 30000). */
  drainTimeoutMs?: number
  /** Apply Lifeline's migrations at start (default true). */
  migrate?: boolean
  /** client.id (default `lifeline-dlq-indexer`). */
  clientId?: string
  /** Extra librdkafka properties (security, SASL, ...). */
  kafkaConfig?: Record<string, string | number | boolean>
  logger?: Logger
  /** A prom-client registry for `lifeline_dlq_indexed_total` and `lifeline_dlq_index_errors_total`. */
  metrics?: { registry: Registry }
}

export const dlqIndexerDefaults = {
  groupId: 'lifeline-dlq-indexer',
  batchSize: 500,
  pollTimeoutMs: 500,
  topicRefreshMs: 30_000,
  drainTimeoutMs: 30_000,
  migrate: true,
  clientId: 'lifeline-dlq-indexer',
  retryBaseMs: 200,
  retryMaxMs: 10_000,
} as const satisfies Partial<DlqIndexerOptions> & Record<string, unknown>

/** The schema `createDlqIndexer` checks its options against. */
export const DlqIndexerOptionsSchema = Type.Object(
  {
    brokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    db: Type.Any(),
    topics: Type.Optional(Type.Array(NameSchema())),
    pattern: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
    groupId: Type.Optional(Type.String({ minLength: 1 })),
    masking: Type.Optional(MaskingOptionsSchema),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
    pollTimeoutMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000 })),
    topicRefreshMs: Type.Optional(Type.Integer({ minimum: 1000 })),
    drainTimeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
    migrate: Type.Optional(Type.Boolean()),
    clientId: Type.Optional(Type.String({ minLength: 1 })),
    kafkaConfig: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]))),
    logger: Type.Optional(Type.Any()),
    metrics: Type.Optional(Type.Object({ registry: Type.Any() })),
  },
  { additionalProperties: false },
)

export interface DlqIndexerStats {
  running: boolean
  /** Records stored for the first time. */
  indexed: number
  /** Records read again that were already stored. */
  duplicates: number
  /** Further copies of a dead letter already stored (same group, origin and life; see `lifeline_dlq_copies`). */
  copies: number
  /** Records linked to an earlier life (their replay id matched). */
  linked: number
  /** Records the database refused even as `unknown` (logged; still in their DLQ topic). */
  skipped: number
  byFormat: Partial<Record<DeadLetterFormat, number>>
  assigned: TopicPartition[]
  lastIndexedAt: number | undefined
}

export interface DlqIndexer {
  /** Migrates (unless disabled), connects, subscribes and starts indexing. */
  start(): Promise<void>
  /** Stops polling, lets the batch in hand finish (or abandons its database retries), leaves the group. Idempotent. */
  close(): Promise<void>
  stats(): DlqIndexerStats
  [Symbol.asyncDispose](): Promise<void>
}
