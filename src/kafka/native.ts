/**
 * The one import of `@confluentinc/kafka-javascript` (a CommonJS package) and the helpers that translate
 * between its shapes and Lifeline's.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { createRequire } from 'node:module'
import type * as RdKafkaTypes from '@confluentinc/kafka-javascript'
import { LifelineError } from '../errors.js'
import type { KafkaConnection, KafkaHeader, ProduceRecord } from './types.js'

const require = createRequire(import.meta.url)
export const rdkafka = require('@confluentinc/kafka-javascript') as typeof RdKafkaTypes

/**
 * True when the loaded binding was built with patches/kafka-javascript-null-headers.patch (applied by
 * scripts/patch-kafka-javascript.sh): it then sends a null header value as a null header and delivers a
 * consumed null header as null. Without it a null header cannot be sent at all and arrives as an empty
 * buffer (docs/headers.md, "Null and empty header values").
 */
export const bindingKeepsNullHeaders: boolean = (require('@confluentinc/kafka-javascript/librdkafka.js') as { lifelineNullHeaders?: unknown }).lifelineNullHeaders === 1

/** A header as the binding takes and gives it: one `{ key: value }` object per header, in order. */
export type NativeHeader = Record<string, Buffer | string | null>

/** librdkafka's name and the version it was built from, for logs and the test banner. */
export function clientVersion(): string {
  return `librdkafka ${rdkafka.librdkafkaVersion} (features: ${rdkafka.features.join(',')})`
}

export function baseConfig(conn: KafkaConnection): Record<string, string | number | boolean> {
  return {
    'bootstrap.servers': conn.brokers.join(','),
    'client.id': conn.clientId ?? 'lifeline',
    // librdkafka logs through our error events, not to stderr.
    'log.connection.close': false,
    ...conn.config,
  }
}

/**
 * Lifeline's headers as the binding takes them, each value kept as it is: null stays null (a null header,
 * value length -1 on the wire; needs the patched binding) and an empty value is an empty one.
 *
 * An empty value is handed over as the empty string: the binding reads a Buffer's bytes through
 * `node::Buffer::Data`, which is NULL for a zero-length buffer (`Buffer.alloc(0)`, `Buffer.from('')`),
 * and librdkafka takes a NULL value for a null header; a string's bytes are never NULL. Throws
 * LL_KAFKA_PRODUCE for a null value when the binding is not patched (it would send the record without that
 * header and throw after).
 */
export function toNativeHeaders(headers: readonly KafkaHeader[] | undefined): NativeHeader[] | undefined {
  if (headers === undefined || headers.length === 0) return undefined
  return headers.map((h) => {
    if (h.value === null && !bindingKeepsNullHeaders) {
      throw new LifelineError('LL_KAFKA_PRODUCE', `header ${JSON.stringify(h.key)} has a null value, which this build of @confluentinc/kafka-javascript cannot send: run scripts/patch-kafka-javascript.sh (docs/headers.md)`, { retriable: false })
    }
    return { [h.key]: h.value !== null && h.value.length === 0 ? '' : h.value }
  })
}

/** The binding's headers as Lifeline's: a null value (a null header) stays null, bytes stay bytes. */
export function fromNativeHeaders(headers: unknown): KafkaHeader[] {
  if (!Array.isArray(headers)) return []
  const out: KafkaHeader[] = []
  for (const h of headers as Array<Record<string, unknown>>) {
    for (const [key, value] of Object.entries(h)) {
      out.push({ key, value: Buffer.isBuffer(value) ? value : value === null || value === undefined ? null : Buffer.from(String(value)) })
    }
  }
  return out
}

/** A librdkafka error's numeric code and name, for error details. */
export function nativeErrorDetails(err: unknown): Record<string, unknown> {
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown; errno?: unknown; origin?: unknown; isRetriable?: unknown }
    return { nativeCode: e.code ?? e.errno, origin: e.origin, nativeRetriable: e.isRetriable }
  }
  return {}
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/**
 * The subset of the binding's KafkaConsumer that Lifeline uses. The package's own typings lack several
 * methods it has (incrementalAssign, commitCb, ...), so the shape is declared here, in one place.
 */
export interface NativeConsumer {
  connect(metadataOptions: unknown, cb: (err: unknown) => void): void
  disconnect(cb: () => void): void
  isConnected(): boolean
  subscribe(topics: string[]): void
  consume(max: number, cb: (err: unknown, messages: NativeMessage[]) => void): void
  setDefaultConsumeTimeout(ms: number): void
  setDefaultIsTimeoutOnlyForFirstMessage(value: boolean): void
  commitCb(offsets: unknown[], cb: (err: unknown) => void): void
  committed(partitions: unknown[], timeoutMs: number, cb: (err: unknown, result: Array<{ topic: string; partition: number; offset: number; metadata?: string | null }>) => void): void
  seek(position: { topic: string; partition: number; offset: number }, timeoutMs: number, cb: (err: unknown) => void): void
  pause(partitions: unknown[]): void
  resume(partitions: unknown[]): void
  assign(partitions: unknown[]): void
  unassign(): void
  incrementalAssign(partitions: unknown[]): void
  incrementalUnassign(partitions: unknown[]): void
  assignments(): Array<{ topic: string; partition: number }>
  assignmentLost(): boolean
  getWatermarkOffsets(topic: string, partition: number): { lowOffset: number; highOffset: number }
  queryWatermarkOffsets(topic: string, partition: number, timeoutMs: number, cb: (err: unknown, offsets: { lowOffset: number; highOffset: number }) => void): void
  rebalanceProtocol(): string
}

export interface NativeMessage {
  topic: string
  partition: number
  offset: number
  key?: Buffer | null
  value: Buffer | null
  size: number
  timestamp?: number
  headers?: unknown
}

export interface NativeProducer {
  connect(metadataOptions: unknown, cb: (err: unknown) => void): void
  disconnect(cb: () => void): void
  setPollInBackground(value: boolean): void
  produce(topic: string, partition: number, value: Buffer | null, key: Buffer | null, timestamp: number | null, opaque: unknown, headers: NativeHeader[] | undefined): void
  flush(timeoutMs: number, cb: (err: unknown) => void): void
  queryWatermarkOffsets(topic: string, partition: number, timeoutMs: number, cb: (err: unknown, offsets: { lowOffset: number; highOffset: number }) => void): void
  on(event: 'delivery-report', listener: (err: unknown, report: { topic: string; partition: number; offset: number; opaque: unknown }) => void): void
}

/** The binding's transaction calls (librdkafka's rd_kafka_*_transaction, KIP-98/KIP-447). */
const QUEUE_FULL = -184 // RD_KAFKA_RESP_ERR__QUEUE_FULL

/**
 * Enqueues one record with `opaque` as its delivery-report opaque. A full local queue is waited out (the
 * deliveries drain it) instead of failing; any other error is thrown as the binding raised it.
 */
export async function enqueueRecord(native: NativeProducer, record: ProduceRecord, opaque: unknown): Promise<void> {
  const key = typeof record.key === 'string' ? Buffer.from(record.key) : (record.key ?? null)
  const value = typeof record.value === 'string' ? Buffer.from(record.value) : record.value
  for (;;) {
    try {
      native.produce(record.topic, record.partition ?? -1, value, key, record.timestamp ?? null, opaque, toNativeHeaders(record.headers))
      return
    } catch (err) {
      if ((err as { code?: number }).code !== QUEUE_FULL) throw err
      await delay(5)
    }
  }
}

export interface NativeTransactionalProducer extends NativeProducer {
  initTransactions(timeoutMs: number, cb: (err: unknown) => void): void
  beginTransaction(cb: (err: unknown) => void): void
  /** Takes the binding's consumer object: librdkafka reads the group metadata (generation, member id) from it. */
  sendOffsetsToTransaction(offsets: Array<{ topic: string; partition: number; offset: number }>, consumer: NativeConsumer, timeoutMs: number, cb: (err: unknown) => void): void
  commitTransaction(timeoutMs: number, cb: (err: unknown) => void): void
  abortTransaction(timeoutMs: number, cb: (err: unknown) => void): void
}

export function newNativeConsumer(globalConfig: Record<string, unknown>, topicConfig: Record<string, unknown>): NativeConsumer {
  return new rdkafka.KafkaConsumer(globalConfig as never, topicConfig as never) as unknown as NativeConsumer
}

export function newNativeProducer(globalConfig: Record<string, unknown>): NativeProducer {
  return new rdkafka.Producer(globalConfig as never) as unknown as NativeProducer
}

export function newNativeTransactionalProducer(globalConfig: Record<string, unknown>): NativeTransactionalProducer {
  return new rdkafka.Producer(globalConfig as never) as unknown as NativeTransactionalProducer
}
