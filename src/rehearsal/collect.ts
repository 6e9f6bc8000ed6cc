/**
 * Reading the evidence back from Kafka: the DLQ topic record by record, where each event sits in the source
 * topic, and the group's committed offsets next to the log end (sampled every second by the harness).
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto'
import { createConsumer } from '../kafka/index.js'
import type { ConsumedRecord, KafkaAdmin } from '../kafka/types.js'
import { decodeFailureHeaders } from '../failure/headers.js'
import { ReplayHeaders } from '../failure/formats.js'
import type { DlqEntry, OffsetSample } from './history.js'
import { EVENT_ID_HEADER } from './workload.js'

const lastHeader = (headers: ReadonlyArray<{ key: string; value: Buffer | null }>, name: string) => headers.filter((h) => h.key === name).at(-1)?.value?.toString()

/** Reads every record of `topic` up to its current end, mapping each with `map`. */
async function readTopic<T>(brokers: string[], admin: KafkaAdmin, topic: string, timeoutMs: number, map: (r: ConsumedRecord) => T): Promise<T[]> {
  const ends = await admin.topicOffsets(topic)
  const total = ends.reduce((n, p) => n + (p.high - p.low), 0)
  if (total === 0) return []
  const consumer = createConsumer({ brokers, groupId: `${topic}.reader.${randomBytes(4).toString('hex')}`, fromBeginning: true })
  const out: T[] = []
  try {
    await consumer.connect()
    consumer.subscribe([topic])
    const deadline = Date.now() + timeoutMs
    while (out.length < total && Date.now() < deadline) for (const r of await consumer.poll(500, 500)) out.push(map(r))
  } finally {
    await consumer.close()
  }
  return out
}

/**
 * Where each event's record sits in the source topic (`partition@offset` → event id), read back from the
 * log: a producer retry whose first write was stored but never acknowledged leaves a copy at an offset no
 * acknowledgement names (rehearsal finding F6), and a dead letter of that copy names it as its origin.
 */
export async function readSourcePlaces(brokers: string[], admin: KafkaAdmin, topic: string, timeoutMs = 120_000): Promise<Map<string, string>> {
  const places = await readTopic(brokers, admin, topic, timeoutMs, (r): [string, string | undefined] => [`${r.partition}@${r.offset}`, lastHeader(r.headers, EVENT_ID_HEADER)])
  return new Map(places.filter((p): p is [string, string] => p[1] !== undefined))
}

/** Reads every record of the DLQ `topic` up to its current end. */
export function readDlq(brokers: string[], admin: KafkaAdmin, topic: string, timeoutMs = 60_000): Promise<DlqEntry[]> {
  return readTopic(brokers, admin, topic, timeoutMs, (r) => {
    const failure = decodeFailureHeaders(r.headers)
    return {
      partition: r.partition,
      offset: r.offset,
      key: r.key?.toString() ?? null,
      eventId: lastHeader(r.headers, EVENT_ID_HEADER),
      valueSha: createHash('sha256').update(r.value ?? Buffer.alloc(0)).digest('hex'),
      originTopic: failure?.originTopic,
      originPartition: failure?.originPartition,
      originOffset: failure?.originOffset,
      replayId: lastHeader(r.headers, ReplayHeaders.id),
      timestamp: r.timestamp,
    }
  })
}

/** The group's committed offsets and the log end now; undefined when the brokers do not answer. */
export async function sampleOffsets(admin: KafkaAdmin, group: string, topic: string): Promise<OffsetSample | undefined> {
  try {
    const committed = await admin.groupOffsets(group, topic)
    const ends = await admin.topicOffsets(topic)
    const at = Date.now()
    return { at, partitions: ends.map((e) => ({ partition: e.partition, committed: committed.find((c) => c.partition === e.partition)?.offset ?? -1, high: e.high })) }
  } catch (err) {
    if (err instanceof Error) return undefined
    throw err
  }
}
