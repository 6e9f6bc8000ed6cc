/** Helpers for consumer-runtime tests against the real broker. */
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { createConsumer, type LifelineConsumer } from '../../src/runtime/consumer.js'
import type { ConsumerOptions } from '../../src/runtime/options.js'
import type { ConsumedRecord } from '../../src/kafka/types.js'
import { brokers, consumer as rawConsumer, defer, pollUntil, randomName } from './kafka.js'

/** Fast retries for tests: fixed 20 ms backoff, 3 attempts. */
export const fastRetry = { maxAttempts: 3, backoff: { type: 'fixed' as const, ms: 20 } }

/** A started Lifeline consumer, closed (and its DLQ topics deleted) when the test ends. */
export async function lifeline<V = unknown>(t: TestContext, options: Partial<ConsumerOptions<V>> & Pick<ConsumerOptions<V>, 'topics' | 'handler'>): Promise<LifelineConsumer> {
  const c = createConsumer<V>({
    brokers: brokers(),
    groupId: randomName('group'),
    service: 'svc',
    retry: fastRetry,
    commitIntervalMs: 100,
    ...options,
  })
  defer(t, () => c.close())
  await c.start()
  return c
}

/** Reads every record of a topic from the beginning with a throwaway group (on the test broker, or on `on`). */
export async function readAll(t: TestContext, topic: string, count: number, timeoutMs = 30_000, on?: string[]): Promise<ConsumedRecord[]> {
  const c = rawConsumer(t, { groupId: randomName('reader'), ...(on ? { brokers: on } : {}) })
  c.subscribe([topic])
  return pollUntil(c, count, timeoutMs)
}

/**
 * Reads `count` records of a topic, then a little longer (a duplicate would arrive after the last one), and
 * asserts that each of `0 .. count - 1` arrived exactly once, by the `n` of its JSON value.
 */
export async function assertEachOnce(t: TestContext, topic: string, count: number): Promise<ConsumedRecord[]> {
  const out = await readAll(t, topic, count, 60_000)
  const extra = await readAll(t, topic, count + 1, 3000)
  assert.equal(extra.length, count, 'no record arrived twice')
  const seen = new Map<number, number>()
  for (const r of out) {
    const n = (JSON.parse(r.value!.toString()) as { n: number }).n
    seen.set(n, (seen.get(n) ?? 0) + 1)
  }
  assert.deepEqual([...seen.keys()].sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i), 'every record arrived')
  assert.ok([...seen.values()].every((c) => c === 1), 'every record arrived exactly once')
  return out
}

export function header(record: ConsumedRecord, key: string): string | undefined {
  return record.headers.find((h) => h.key === key)?.value?.toString('utf8')
}
