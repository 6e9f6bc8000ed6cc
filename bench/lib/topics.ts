/**
 * Topic helpers shared by benchmarks: unique name suffixes and a pipelined backlog fill.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import type { KafkaProducer, ProduceRecord } from '../../src/kafka/index.js'

/** A unique, sortable name part: base-36 time and 3 random bytes. */
export function suffix(): string {
  return `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`
}

/** Produces `count` records to `topic` in batches of 2,000, up to 8 batches in flight. */
export async function fill(producer: KafkaProducer, topic: string, count: number, key: (i: number) => string | null, value: (i: number) => Buffer): Promise<void> {
  const batch = 2_000
  const window: Array<Promise<unknown>> = []
  for (let i = 0; i < count; i += batch) {
    const records: ProduceRecord[] = []
    for (let j = i; j < Math.min(count, i + batch); j++) records.push({ topic, key: key(j), value: value(j) })
    window.push(producer.send(records))
    if (window.length >= 8) await window.shift()
  }
  await Promise.all(window)
}
