/**
 * `lifeline/dlq`: the DLQ processor — the indexer, the records store, redrive, edit-and-replay, discard,
 * approvals, tokens, the HTTP API, the operator console, notifications — and reading dead letters (Lifeline's and other systems'
 * formats, PII masking). Needs the optional peers `hono` and `@hono/node-server` for the HTTP API.
 *
 * @module
 */
export { createDlqProcessor, dlqProcessorDefaults } from '../dlq/processor.js'
export type { DlqProcessor, DlqProcessorOptions, DlqNotificationOptions, ProcessorMount, ProcessorServices } from '../dlq/processor.js'
export { consoleMount, createConsole } from '../console/app.js'
export type { ConsoleOptions } from '../console/app.js'
export type { SessionOptions } from '../console/sessions.js'
export { createDlqApi, serveDlqApi, openApiDocument, dlqApiDefaults } from '../dlq/api.js'
export type { DlqApiOptions, ServedApi } from '../dlq/api.js'
export { createDlqIndexer, dlqIndexerDefaults } from '../dlq/indexer.js'
export type { DlqIndexer, DlqIndexerOptions, DlqIndexerStats } from '../dlq/indexer.js'
export { listRecords, countRecords, getRecord, groupRecords, DLQ_STATUSES } from '../dlq/records.js'
export type { DlqStatus, DlqRecord, DlqRecordSummary, DlqRecordDetail, RecordFilter, ErrorGroup } from '../dlq/records.js'
export { editRecord } from '../dlq/redrive/edit.js'
export { previewRedrive, createRedriveJob, getJob, listJobs, pauseJob, cancelJob } from '../dlq/redrive/jobs.js'
export { replayRecord, discardRecord, resolveRecord, replayEdited } from '../dlq/redrive/replay.js'
export { runRedriveJob, resumeInterruptedJobs } from '../dlq/redrive/runner.js'
export { redriveDefaults } from '../dlq/redrive/types.js'
export type { RedriveDeps, RedriveTarget, RedriveJob, RedriveJobStatus, ReplayResult } from '../dlq/redrive/types.js'
export { createToken, revokeToken, listTokens, ROLES } from '../dlq/auth.js'
export type { Role, TokenInfo, CreatedToken, Principal, TokenSpec } from '../dlq/auth.js'
export type { ApprovalPolicy, Approval } from '../dlq/approvals.js'
export { createNotifier, notifierDefaults } from '../dlq/notifier.js'
export type { Notifier, NotifierOptions, NotifierStats, WebhookTarget } from '../dlq/notifier.js'
export type { Notification, NotificationKind } from '../dlq/notification.js'

// Reading dead letters: the failure record (headers, formats, fingerprints) and masking
export { decodeFailureHeaders, decodeSpringHeaders, LifelineHeaders, SpringDltHeaders } from '../failure/headers.js'
export type { FailureContext, DecodedFailureContext, SpringDltContext } from '../failure/headers.js'
export { parseDeadLetter, ReplayHeaders, DEAD_LETTER_FORMATS } from '../failure/formats.js'
export type { DeadLetterContext, DeadLetterFormat } from '../failure/formats.js'
export { fingerprint } from '../failure/fingerprint.js'
export { Masker, REDACTED, MASKED_HEADER } from '../failure/masking.js'
export type { MaskingPolicy, MaskRule, MaskAction, Keyring } from '../failure/masking.js'
