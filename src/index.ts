/**
 * Lifeline: reliable Kafka event consumption for TypeScript — the consumer runtime, effects exactly once,
 * storage and the operators' parked-keys API. Other entry points: `lifeline/dlq` (the DLQ processor),
 * `lifeline/reconcile`, `lifeline/kafka` (Lifeline's Kafka clients), `lifeline/observe` (metrics and health
 * endpoints), `lifeline/dev` (local Kafka and PostgreSQL, fault tools) and `lifeline/rehearsal` (the
 * contract of a rehearsed consumer). test/api/exports.test.ts pins every entry's export list.
 *
 * @module
 * @example
 * import { createConsumer, NonRetriableError } from 'lifeline'
 * const consumer = createConsumer({
 *   brokers: ['127.0.0.1:9092'], groupId: 'billing', service: 'billing', topics: ['orders'],
 *   handler: async ({ value }) => { if (!isValid(value)) throw new NonRetriableError('bad order') },
 * })
 * await consumer.start()
 */

// Consumer runtime
export { createConsumer } from './runtime/consumer.js'
export type { ConsumerStats, LifelineConsumer } from './runtime/consumer.js'
export { consumerDefaults, dlqTopicName } from './runtime/options.js'
export type { ConsumerEvents, ConsumerOptions, DeadLetterOptions, Decoder, Handler, LifelineMessage, RetryOptions, RetryTopicsOptions, ParkingOptions, SequenceOptions, GapPolicy, SeqRange } from './runtime/options.js'
export { jsonDecoder, stringDecoder, rawDecoder } from './runtime/decode.js'
export { ensureTopics } from './runtime/topics.js'
export type { EnsureTopicsOptions, EnsuredTopic } from './runtime/topics.js'
export { retryTopicName, RetryHeaders } from './failure/tier-record.js'

// Retry policy and failure classification
export { NonRetriableError, DecodeError, classifyError } from './retry/classify.js'
export type { Classification, ClassifierVerdict, ClassifyOptions } from './retry/classify.js'
export { exponential, fixed, delayFor } from './retry/backoff.js'
export type { BackoffPolicy, Jitter } from './retry/backoff.js'
export type { CircuitBreakerOptions, Transition as BreakerTransition } from './retry/circuit-breaker.js'

// Order under failure: parked keys (operator API) and named crash points
export { createParkedKeys } from './ordering/state-store.js'
export type { ParkedKey, ParkedKeys, ParkedKeyFilter, ParkedRecord, ParkStatus, KeyEvent, ReleaseRequest } from './ordering/state-store.js'
export { CRASH_POINTS, CRASH_ENV, armedCrashPoint } from './util/crash-points.js'
export type { CrashPointName } from './util/crash-points.js'

// Effects exactly once: inbox, guards, compensation, Kafka transactions
export { createInbox, inboxDefaults } from './effects/inbox.js'
export type { Inbox, InboxOptions, InboxStats, EffectContext, IgnoreDetail, InboxEvent, InboxStatement, InboxStatementEvent } from './effects/inbox.js'
export { defineStateMachine, versionedUpdate, listIgnoredEvents } from './effects/guards.js'
export type { StateMachine, StateMachineDefinition, VersionedUpdate, GuardResult } from './effects/guards.js'
export { compensateOnFailure, recordFailure, listFailures, settleFailure } from './effects/compensation.js'
export type { Compensation, CompensateOptions, FailureRecord, FailureStatus, CompensationState } from './effects/compensation.js'
export { createTransactionalPipeline, transactionalPipelineDefaults } from './effects/transactional-pipeline.js'
export type { TransactionalPipeline, TransactionalPipelineOptions, TransactionalPipelineEvents, TransactionalPipelineStats, Transform, TransformContext, PipelineState } from './effects/transactional-pipeline.js'

// Storage (the drivers are optional peers, loaded when a database of their kind is opened)
export { openDatabase, openPostgres, openPglite, databaseFromEnv, describeDatabase } from './store/index.js'
export type { OpenDatabaseOptions } from './store/open.js'
export type { SqlExecutor, SqlQueryable, SqlResult, SqlRow, PostgresOptions, PgliteOptions } from './store/index.js'
export { migrateLifeline } from './store/schema.js'

// Errors and logging
export { LifelineError, ErrorCodes, isLifelineError } from './errors.js'
export type { ErrorCode, LifelineErrorOptions } from './errors.js'
export { createLogger, silentLogger } from './logger.js'
export type { Logger } from './logger.js'
