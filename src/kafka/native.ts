/**
 * The one import of `@confluentinc/kafka-javascript` (a CommonJS package) and the helpers that translate
 * between its shapes and Lifeline's.
 */
import { createRequire } from 'node:module'
import type * as RdKafkaTypes from '@confluentinc/kafka-javascript'
import type { KafkaConnection, KafkaHeader } from './types.js'

const require = createRequire(import.meta.url)
export const rdkafka = require('@confluentinc/kafka-javascript') as typeof RdKafkaTypes

export type NativeHeader = Record<string, Buffer | string>

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

export function toNativeHeaders(headers: readonly KafkaHeader[] | undefined): NativeHeader[] | undefined {
  if (headers === undefined || headers.length === 0) return undefined
  // A null header value travels as an empty buffer: the binding cannot express null.
  return headers.map((h) => ({ [h.key]: h.value ?? Buffer.alloc(0) }))
}

export function fromNativeHeaders(headers: unknown): KafkaHeader[] {
  if (!Array.isArray(headers)) return []
  const out: KafkaHeader[] = []
  for (const h of headers as Array<Record<string, unknown>>) {
    for (const [key, value] of Object.entries(h)) {
      out.push({ key, value: Buffer.isBuffer(value) ? value : value == null ? null : Buffer.from(String(value)) })
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
