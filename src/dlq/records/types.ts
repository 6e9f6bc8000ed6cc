/**
 * The DLQ records' vocabulary: statuses and their allowed changes, and the shapes of a stored record, its
 * events, its filter and the results of indexing and grouping. Types and constants only (no SQL).
 *
 * @module
 */
import type { ConsumedRecord, KafkaHeader } from '../../kafka/types.js'
import type { AuditEntry } from '../audit.js'
import type { DeadLetterContext, DeadLetterFormat } from '../../failure/formats.js'

export type DlqStatus = 'pending' | 'replaying' | 'replayed' | 'resolved' | 'discarded' | 'failed-again'

export const DLQ_STATUSES: readonly DlqStatus[] = Object.freeze(['pending', 'replaying', 'replayed', 'resolved', 'discarded', 'failed-again'])

/**
 * Allowed status changes. `resolved` and `discarded` are final. A `failed-again` record is an earlier life:
 * it is closed (resolved or discarded), never replayed again, since its next life (the record that came
 * back, `pending`) is the one to act on — replaying both would send the event twice.
 */
export const DLQ_TRANSITIONS: Readonly<Record<DlqStatus, readonly DlqStatus[]>> = Object.freeze({
  pending: ['replaying', 'resolved', 'discarded'],
  replaying: ['replayed', 'pending', 'failed-again'],
  replayed: ['failed-again'],
  'failed-again': ['resolved', 'discarded'],
  resolved: [],
  discarded: [],
})

/** A header as stored: UTF-8 text when the bytes are text PostgreSQL can hold, else base64 (key and value). */
export interface StoredHeader {
  key: string
  value: string | null
  encoding?: 'base64'
}

export interface DlqRecordSummary {
  id: string
  topic: string
  partition: number
  offset: number
  /** The key as UTF-8 text (null for a null key). */
  keyText: string | null
  timestamp: number
  format: DeadLetterFormat
  originTopic: string | null
  originPartition: number | null
  originOffset: number | null
  originTimestamp: number | null
  consumerGroup: string | null
  service: string | null
  errorClass: string | null
  errorCode: string | null
  errorMessage: string | null
  fingerprint: string | null
  attempts: number | null
  firstFailureAt: Date | null
  lastFailureAt: Date | null
  failedAt: Date
  status: DlqStatus
  statusReason: string | null
  statusActor: string | null
  statusAt: Date
  replayCount: number
  replayedBefore: number
  replayId: string | null
  previousId: string | null
  masked: boolean
  indexedAt: Date
}

export interface DlqRecord extends DlqRecordSummary {
  key: Buffer | null
  value: Buffer | null
  headers: KafkaHeader[]
  errorStack: string | null
  details: Record<string, string>
}

export interface DlqEvent {
  id: string
  recordId: string
  from: DlqStatus | null
  to: DlqStatus
  actor: string
  reason: string | null
  detail: Record<string, unknown>
  at: Date
}

export interface DlqRecordDetail extends DlqRecord {
  events: DlqEvent[]
  /** Earlier lives, most recent first (the record this one's replay was made from, then its own, ...). */
  earlierLives: DlqRecordSummary[]
  /** Later lives: records that came back from a replay of this one. */
  laterLives: DlqRecordSummary[]
  /** Further copies of this dead letter read from its DLQ topic (where they are), oldest first. */
  copies: Array<{ topic: string; partition: number; offset: string; indexedAt: Date }>
}

export interface RecordFilter {
  /** Origin topic (the DLQ topic for a record whose origin is unknown). */
  topic?: string
  /** The DLQ topic itself. */
  dlqTopic?: string
  group?: string
  errorCode?: string
  errorClass?: string
  fingerprint?: string
  /** The record key as UTF-8 text. */
  key?: string
  status?: DlqStatus | DlqStatus[]
  format?: DeadLetterFormat
  /** Failed at or after (ms since the epoch, ISO-8601 text or Date). */
  from?: number | string | Date
  /** Failed before (exclusive). */
  to?: number | string | Date
  /** Case-insensitive substring of the error message (`%` and `_` match themselves). */
  text?: string
  /** Keyset pagination: records after this id in the listing order. */
  afterId?: string | number
  /** By id: `asc` (default, oldest first) or `desc`. */
  order?: 'asc' | 'desc'
  /** 1 to 1000 (default 100). */
  limit?: number | string
}

export interface IndexResult {
  id: string
  inserted: boolean
  /** The earlier life this record was linked to (its replay id matched a replay). */
  previousId?: string
  /** Whether that earlier life became `failed-again`. */
  failedAgain?: boolean
  /**
   * Set when the record is a further copy of a dead letter already stored (same consumer group, origin and
   * life: e.g. the late write of a member that had lost its partition): `id` is that dead letter's, and the
   * copy's place is kept in `lifeline_dlq_copies` (migration 0012).
   */
  copy?: boolean
}

export interface IndexItem {
  record: Pick<ConsumedRecord, 'topic' | 'partition' | 'offset' | 'key' | 'value' | 'headers' | 'timestamp'>
  context: DeadLetterContext
  /** Whether a masking policy changed the record (Lifeline's own: `lifeline.masked` present). */
  masked?: boolean
}

export interface ErrorGroup {
  fingerprint: string
  errorClass: string | null
  errorCode: string | null
  /** The most recent record's message. */
  sampleMessage: string | null
  count: number
  /** Of them, still `pending`. */
  pending: number
  firstSeen: Date
  lastSeen: Date
  /** Origin topics (DLQ topics for records without an origin), sorted. */
  topics: string[]
  distinctKeys: number
}

export interface StatusChange {
  /** Who: a user name, `indexer`, `redrive:<job>`. */
  actor: string
  reason?: string
  /** The status the caller believes the record has: refused (LL_DLQ_CONFLICT) when it has another. */
  from?: DlqStatus
  /** Extra context for the event (job id, replay id, ...). */
  detail?: Record<string, unknown>
  /** The audit row of the action this change is part of: written in the same transaction. */
  audit?: AuditEntry
}
