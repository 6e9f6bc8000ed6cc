/**
 * Values into and out of `lifeline_dlq_records`: text PostgreSQL can hold, headers stored losslessly, and
 * rows read back as {@link DlqRecordSummary} / {@link DlqRecord}.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer'
import type { KafkaHeader } from '../../kafka/types.js'
import type { SqlRow } from '../../store/executor.js'
import type { DeadLetterFormat } from '../../failure/formats.js'
import type { DlqRecord, DlqRecordSummary, DlqStatus, StoredHeader } from './types.js'

/** `s` as PostgreSQL text can hold it: NUL and lone surrogates become U+FFFD. */
export function clean(s: string): string {
  // eslint-disable-next-line no-control-regex -- NUL is exactly what PostgreSQL text cannot hold
  return s.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\uFFFD')
}

export const cleanOrNull = (s: string | undefined): string | null => (s === undefined ? null : clean(s))

/** Headers as stored (`headers` jsonb): lossless, text when it is, base64 otherwise. */
export function storeHeaders(headers: readonly KafkaHeader[]): StoredHeader[] {
  return headers.map((h) => {
    const keyIsText = clean(h.key) === h.key
    // Valid UTF-8 decodes without lone surrogates: only NUL is left that text cannot hold.
    const valueIsText = h.value === null || (isUtf8(h.value) && !h.value.includes(0))
    if (keyIsText && valueIsText) return { key: h.key, value: h.value === null ? null : h.value.toString('utf8') }
    return { key: Buffer.from(h.key, 'utf8').toString('base64'), value: h.value === null ? null : h.value.toString('base64'), encoding: 'base64' as const }
  })
}

/** The Kafka headers of stored ones (the exact bytes). */
export function loadHeaders(stored: unknown): KafkaHeader[] {
  if (!Array.isArray(stored)) return []
  return (stored as StoredHeader[]).map((h) =>
    h.encoding === 'base64'
      ? { key: Buffer.from(h.key, 'base64').toString('utf8'), value: h.value === null ? null : Buffer.from(h.value, 'base64') }
      : { key: h.key, value: h.value === null ? null : Buffer.from(h.value, 'utf8') },
  )
}

/** The columns of a summary: everything but the value, headers, stack and details. */
const SUMMARY_FIELDS = [
  'id', 'topic', 'partition', '"offset"', 'key', '"timestamp"', 'format', 'origin_topic', 'origin_partition', 'origin_offset', 'origin_timestamp', 'consumer_group', 'service',
  'error_class', 'error_code', 'error_message', 'fingerprint', 'attempts', 'first_failure_at', 'last_failure_at', 'failed_at', 'status', 'status_reason', 'status_actor',
  'status_at', 'replay_count', 'replayed_before', 'replay_id', 'previous_id', 'masked', 'indexed_at',
]
/** The summary columns, optionally table-qualified (`r.`). */
export const summaryColumns = (alias = ''): string => SUMMARY_FIELDS.map((c) => `${alias}${c}`).join(', ')
export const FULL_SELECT = `${summaryColumns()}, value, headers, error_stack, details`

const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v))

/** A summary of a row selected with {@link summaryColumns}. */
export function toSummary(row: SqlRow): DlqRecordSummary {
  return {
    id: String(row.id), topic: row.topic as string, partition: Number(row.partition), offset: Number(row.offset),
    keyText: row.key === null ? null : (row.key as Buffer).toString('utf8'), timestamp: Number(row.timestamp), format: row.format as DeadLetterFormat,
    originTopic: strOrNull(row.origin_topic), originPartition: numOrNull(row.origin_partition), originOffset: numOrNull(row.origin_offset), originTimestamp: numOrNull(row.origin_timestamp),
    consumerGroup: strOrNull(row.consumer_group), service: strOrNull(row.service), errorClass: strOrNull(row.error_class), errorCode: strOrNull(row.error_code),
    errorMessage: strOrNull(row.error_message), fingerprint: strOrNull(row.fingerprint), attempts: numOrNull(row.attempts),
    firstFailureAt: (row.first_failure_at as Date | null) ?? null, lastFailureAt: (row.last_failure_at as Date | null) ?? null, failedAt: row.failed_at as Date,
    status: row.status as DlqStatus, statusReason: strOrNull(row.status_reason), statusActor: strOrNull(row.status_actor), statusAt: row.status_at as Date,
    replayCount: Number(row.replay_count), replayedBefore: Number(row.replayed_before), replayId: strOrNull(row.replay_id), previousId: strOrNull(row.previous_id),
    masked: row.masked === true, indexedAt: row.indexed_at as Date,
  }
}

/** A full record of a row selected with {@link FULL_SELECT}. */
export function toRecord(row: SqlRow): DlqRecord {
  return { ...toSummary(row), key: (row.key as Buffer | null) ?? null, value: (row.value as Buffer | null) ?? null, headers: loadHeaders(row.headers), errorStack: strOrNull(row.error_stack), details: (row.details as Record<string, string> | null) ?? {} }
}
