/**
 * Readers of header values as the DLQ formats' writers encode them (pure; src/failure/formats.ts names
 * each writer): UTF-8 text, decimal text, Java int32, int64 and `BigInteger` bytes. The last occurrence of
 * a header wins (Kafka's `lastHeader`), as every writer appends on republish. Nothing throws: a value that
 * is missing, not UTF-8, out of range or of the wrong width reads as undefined.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer'
import type { KafkaHeader } from '../kafka/types.js'

export function lastValue(headers: readonly KafkaHeader[], key: string): Buffer | undefined {
  for (let i = headers.length - 1; i >= 0; i--) {
    const header = headers[i] as KafkaHeader
    if (header.key === key) return Buffer.isBuffer(header.value) ? header.value : undefined
  }
  return undefined
}

export function has(headers: readonly KafkaHeader[], key: string): boolean {
  return headers.some((header) => header.key === key)
}

/** UTF-8 text of the last header `key`; undefined when absent, null, empty or not UTF-8. */
export function text(headers: readonly KafkaHeader[], key: string): string | undefined {
  const value = lastValue(headers, key)
  if (value === undefined || value.length === 0 || !isUtf8(value)) return undefined
  return value.toString('utf8')
}

export function decimal(s: string | undefined): number | undefined {
  if (s === undefined) return undefined
  const trimmed = s.trim()
  if (!/^-?\d{1,16}$/.test(trimmed)) return undefined
  const n = Number(trimmed)
  return Number.isSafeInteger(n) ? n : undefined
}

/** A partition or offset: a non-negative integer (Streams writes -1 when there was no source record). */
export const position = (n: number | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined => (n !== undefined && n >= 0 && n <= max ? n : undefined)
export const INT32_MAX = 0x7fffffff
/** A timestamp Kafka can carry: -1 means none. */
export const timestamp = (n: number | undefined): number | undefined => (n !== undefined && n >= 0 && n <= 8.64e15 ? n : undefined)

/** Java `new BigInteger(bytes)`: big-endian two's complement, 1 to 8 bytes here (a long). */
export function bigInteger(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length < 1 || value.length > 8) return undefined
  const n = BigInt.asIntN(value.length * 8, BigInt(`0x${value.toString('hex')}`))
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined
}

/**
 * `retry_topic-attempts`: an int32 (spring-kafka ≥ 2.7.9), a `BigInteger` of 1-3 bytes (earlier), or decimal
 * text (hand-written headers). All-ASCII-digit values read as text: an int32 made of digit bytes would be
 * over 800 million attempts, and a one-byte count of 48 to 57 attempts is beyond any retry configuration.
 */
export function springAttempts(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length === 0) return undefined
  if (value.length <= 9 && /^[0-9]+$/.test(value.toString('latin1'))) return decimal(value.toString('latin1'))
  if (value.length === 4) return value.readInt32BE(0)
  if (value.length < 4) return bigInteger(value)
  return undefined
}

export function int32(value: Buffer | undefined): number | undefined {
  return value?.length === 4 ? value.readInt32BE(0) : undefined
}

export function int64(value: Buffer | undefined): number | undefined {
  return value?.length === 8 ? bigInteger(value) : undefined
}
