/**
 * Lifeline: reliable Kafka event consumption for TypeScript.
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
export type { LifelineConsumer } from './runtime/consumer.js'
export { consumerDefaults, dlqTopicName } from './runtime/options.js'
export type { ConsumerEvents, ConsumerOptions, DeadLetterOptions, Decoder, Handler, LifelineMessage, RetryOptions, RetryTopicsOptions, ParkingOptions, SequenceOptions } from './runtime/options.js'
export { NonRetriableError, DecodeError, classifyError } from './retry/classify.js'
export { fingerprint } from './failure/fingerprint.js'
export type { Classification, ClassifierVerdict } from './retry/classify.js'
export { exponential, fixed, delayFor } from './retry/backoff.js'
export type { BackoffPolicy, Jitter } from './retry/backoff.js'
export { jsonDecoder, stringDecoder, rawDecoder } from './runtime/decode.js'
export { encodeFailureHeaders, decodeFailureHeaders, decodeSpringHeaders, LifelineHeaders, SpringDltHeaders } from './failure/headers.js'
export type { FailureContext, DecodedFailureContext, SpringDltContext } from './failure/headers.js'
export { ensureTopics } from './runtime/topics.js'
export type { EnsureTopicsOptions, EnsuredTopic } from './runtime/topics.js'

// Kafka access (Lifeline's own interfaces over librdkafka)
export { createProducer, createAdmin, createConsumer as createKafkaConsumer, clientVersion } from './kafka/index.js'
export type {
  ConsumedRecord,
  KafkaAdmin,
  KafkaConnection,
  KafkaConsumer,
  KafkaHeader,
  KafkaProducer,
  ProduceAck,
  ProduceRecord,
  TopicPartition,
  TopicPartitionOffset,
  TopicSpec,
} from './kafka/index.js'

// Local development broker
export { startKafka, stopKafka, kafkaStatus } from './dev/kafka-launcher.js'
export type { KafkaCluster, StartKafkaOptions, ClusterState } from './dev/kafka-launcher.js'
export { resolveKafkaJars, KAFKA_VERSION } from './dev/kafka-jars.js'

// Order under failure: parked keys (operator API), retry-tier records, named crash points
export { createParkedKeys } from './ordering/state-store.js'
export type { ParkedKey, ParkedKeys, ParkedKeyFilter, ParkedRecord, ParkStatus, KeyEvent, ReleaseRequest } from './ordering/state-store.js'
export type { GapPolicy, SeqRange } from './runtime/options.js'
export { CRASH_POINTS, CRASH_ENV, armedCrashPoint } from './util/crash-points.js'
export type { CrashPointName } from './util/crash-points.js'
export { retryTopicName, readTierRecord, RetryHeaders } from './failure/tier-record.js'
export type { TierInfo } from './failure/tier-record.js'
export { migrateLifeline } from './store/schema.js'

// Effects exactly once: inbox, guards, compensation
export { createInbox, inboxDefaults } from './effects/inbox.js'
export type { Inbox, InboxOptions, InboxStats, EffectContext, IgnoreDetail } from './effects/inbox.js'
export { defineStateMachine, versionedUpdate, listIgnoredEvents } from './effects/guards.js'
export type { StateMachine, StateMachineDefinition, VersionedUpdate, GuardResult } from './effects/guards.js'
export { compensateOnFailure, recordFailure, listFailures, settleFailure } from './effects/compensation.js'
export type { Compensation, CompensateOptions, FailureRecord, FailureStatus, CompensationState } from './effects/compensation.js'

export { createTransactionalPipeline, transactionalPipelineDefaults } from './effects/transactional-pipeline.js'
export type { TransactionalPipeline, TransactionalPipelineOptions, TransactionalPipelineEvents, TransactionalPipelineStats, Transform, TransformContext, PipelineState } from './effects/transactional-pipeline.js'
export { createTransactionalProducer } from './kafka/index.js'
export type { TransactionalProducer, TransactionalProducerOptions } from './kafka/index.js'
export {
  defineReconciliation,
  runReconciliation,
  scheduleReconciliation,
  registerReconciliation,
  getReconciliation,
  listReconciliations,
  listReconciliationRuns,
  getReconciliationRun,
  listReconciliationFindings,
  diffFields,
} from './effects/reconcile.js'

// Dead letters: PII masking, other systems' formats, the indexer and the records store
export { Masker, REDACTED, MASKED_HEADER } from './failure/masking.js'
export { parseDeadLetter, ReplayHeaders, DEAD_LETTER_FORMATS } from './failure/formats.js'
export type { DeadLetterContext, DeadLetterFormat } from './failure/formats.js'
export { createDlqIndexer, dlqIndexerDefaults } from './dlq/indexer.js'
export type { DlqIndexer, DlqIndexerOptions, DlqIndexerStats } from './dlq/indexer.js'
export { listRecords, countRecords, getRecord, groupRecords, setStatus, DLQ_STATUSES, DLQ_TRANSITIONS } from './dlq/records.js'
export type { DlqStatus, DlqRecord, DlqRecordSummary, DlqRecordDetail, RecordFilter, ErrorGroup } from './dlq/records.js'
export { replayRecord, previewRedrive, createRedriveJob, runRedriveJob, getJob, listJobs, pauseJob, cancelJob, resumeInterruptedJobs, discardRecord, resolveRecord, editRecord, replayEdited, redriveDefaults } from './dlq/redrive.js'
export type { RedriveDeps, RedriveTarget, RedriveJob, RedriveJobStatus, ReplayResult } from './dlq/redrive.js'
export { createToken, verifyToken, revokeToken, listTokens, ROLES } from './dlq/auth.js'
export type { Role, TokenInfo, CreatedToken, Principal } from './dlq/auth.js'
export type { ApprovalPolicy, Approval } from './dlq/approvals.js'
export { createDlqApi, serveDlqApi, openApiDocument } from './dlq/api.js'
export { createDlqProcessor, dlqProcessorDefaults } from './dlq/processor.js'
export type { DlqProcessor, DlqProcessorOptions, DlqNotificationOptions } from './dlq/processor.js'
export { createNotifier, notifierDefaults } from './dlq/notifier.js'
export type { Notifier, NotifierOptions, NotifierStats, WebhookTarget } from './dlq/notifier.js'
export type { Notification, NotificationKind } from './dlq/notification.js'
export type { MaskingPolicy, MaskRule, MaskAction, Keyring } from './failure/masking.js'

// Observability: the metrics and health endpoints of a consumer process
export { serveMetrics, serveMetricsDefaults } from './observe/serve-metrics.js'
export type { MetricsServer, ServeMetricsOptions } from './observe/serve-metrics.js'
export { watchConsumerHealth, judgeHealth, healthDefaults } from './observe/health.js'
export type { ConsumerHealth, ConsumerHealthOptions, HealthReport, HealthLimits } from './observe/health.js'

// Failure rehearsal: the contract a consumer module follows for `lifeline rehearse --consumer` (docs/rehearsal.md)
export type { RehearsalContext, RehearsalConsumerFactory } from './rehearsal/contract.js'
export type { RehearsalEvent } from './rehearsal/workload.js'

// Storage
export { openDatabase, openPostgres, openPglite, databaseFromEnv, describeDatabase, loadMigrations, migrate } from './store/index.js'
export type { SqlExecutor, SqlQueryable, SqlResult, SqlRow, Migration } from './store/index.js'

// Errors and logging
export { LifelineError, ErrorCodes, isLifelineError } from './errors.js'
export type { ErrorCode, LifelineErrorOptions } from './errors.js'
export { createLogger, silentLogger } from './logger.js'
export type { Logger } from './logger.js'
