/**
 * The DLQ records store: indexed dead letters (any format), their lifecycle and its history, over a
 * {@link SqlExecutor} (PostgreSQL or embedded PGlite). Tables: `migrations/0004_dlq.sql`.
 *
 * Every value reaches SQL as a parameter; filters are validated here (LL_ARGUMENT_INVALID naming the field
 * and what it accepts), so a caller may hand over what a user typed.
 *
 * Lifecycle (see {@link DLQ_TRANSITIONS}):
 *
 *     pending ──► replaying ──► replayed ──► failed-again ──► resolved | discarded
 *        │           │  ▲           (the replay came back: linked by its replay id)
 *        │           ▼  │
 *        │        pending (the send failed)       replaying ──► failed-again (came back before `replayed` was written)
 *        └──► resolved | discarded
 *
 * This file is the store's one entry point; its parts live in `records/`: `types.ts` (statuses and shapes),
 * `filter.ts` (validation and the WHERE clause), `values.ts` (values in and out), `index-records.ts`
 * (writing), `queries.ts` (reading) and `set-status.ts` (the lifecycle).
 *
 * @module
 */
export { INDEXER_ACTOR } from './actors.js'
export { DLQ_STATUSES, DLQ_TRANSITIONS } from './records/types.js'
export type { DlqEvent, DlqRecord, DlqRecordDetail, DlqRecordSummary, DlqStatus, ErrorGroup, IndexItem, IndexResult, RecordFilter, StatusChange, StoredHeader } from './records/types.js'
export { filterClause, likePattern, MAX_LIMIT, parseFilter, type ParsedFilter } from './records/filter.js'
export { loadHeaders, storeHeaders } from './records/values.js'
export { indexRecord, indexRecords } from './records/index-records.js'
export { countRecords, getRecord, getRecordSummary, groupRecords, hourlyCounts, listRecords, pendingGroups } from './records/queries.js'
export { setStatus } from './records/set-status.js'
