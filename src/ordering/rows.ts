/**
 * Row shapes and codecs shared by the ordering stores: the runtime's fenced protocol writes
 * (protocol-store.ts) and the operators' API (state-store.ts). Keys are bytea (any bytes), passed as
 * Buffers; headers are stored as JSON `[[key, base64 | null], ...]`, which keeps a null header value apart
 * from an empty one.
 *
 * @module
 */
import type { KafkaHeader } from '../kafka/types.js'
import type { SqlQueryable } from '../store/executor.js'

/** parked: the head is off the main path; released: the head is done and the owner replays what waits behind it; gap: the key waits for a missing sequence. */
export type ParkStatus = 'parked' | 'released' | 'gap'

/** A record stored behind a parked (or gap) key. */
export interface ParkedRecord {
  id: string
  topic: string
  partition: number
  offset: number
  seq: number | null
  key: Buffer
  value: Buffer | null
  headers: KafkaHeader[]
  timestamp: number
  parkedAt: Date
}

export const toKey = (key: Buffer | string): Buffer => (typeof key === 'string' ? Buffer.from(key, 'utf8') : key)

/** The key as UTF-8 text when it is valid UTF-8, else null. */
export function keyText(key: Buffer): string | null {
  const text = key.toString('utf8')
  return Buffer.from(text, 'utf8').equals(key) ? text : null
}

/** Headers as stored (jsonb): [key, base64 value or null] pairs. */
export const headerPairs = (headers: readonly KafkaHeader[]): Array<[string, string | null]> => headers.map((h) => [h.key, h.value === null ? null : h.value.toString('base64')])
export const encodeHeaders = (headers: readonly KafkaHeader[]): string => JSON.stringify(headerPairs(headers))
export const decodeHeaders = (json: unknown): KafkaHeader[] => (json as Array<[string, string | null]>).map(([key, value]) => ({ key, value: value === null ? null : Buffer.from(value, 'base64') }))

export const PARKED_RECORD_COLUMNS = 'id, topic, partition, key, "offset", seq, value, headers, "timestamp", parked_at'

export function toParkedRecord(row: Record<string, unknown>): ParkedRecord {
  return {
    id: String(row.id),
    topic: row.topic as string,
    partition: Number(row.partition),
    offset: Number(row.offset),
    seq: row.seq === null || row.seq === undefined ? null : Number(row.seq),
    key: row.key as Buffer,
    value: (row.value as Buffer | null) ?? null,
    headers: decodeHeaders(row.headers),
    timestamp: Number(row.timestamp),
    parkedAt: row.parked_at as Date,
  }
}

/**
 * Records stored behind a key, in replay order: by sequence where the key has one (records of a sequenced
 * key may have arrived out of order), then by arrival.
 */
export async function parkedRecords(q: SqlQueryable, group: string, topic: string, key: Buffer, limit: number): Promise<ParkedRecord[]> {
  const { rows } = await q.query(
    `select ${PARKED_RECORD_COLUMNS} from lifeline_parked_records where group_id = $1 and topic = $2 and key = $3 order by seq nulls first, id limit $4`,
    [group, topic, key, limit],
  )
  return rows.map(toParkedRecord)
}

export async function keyEvent(q: SqlQueryable, group: string, topic: string, key: Buffer, name: string, detail: Record<string, unknown>, actor?: string): Promise<void> {
  await q.query('insert into lifeline_key_events (group_id, topic, key, event, detail, actor) values ($1, $2, $3, $4, $5, $6)', [group, topic, key, name, JSON.stringify(detail), actor ?? null])
}
