/**
 * The baseline of the consumer benches: the raw client (src/kafka) polling a topic with no Lifeline in
 * between, shared by the runtime and scale benches.
 *
 * @module
 */
import { createConsumer } from '../../src/kafka/index.js'
import { suffix } from './topics.js'

/**
 * Raw client: polls `topic` until `count` records were read; ms from the first record to the last. With
 * `commitEveryMs`, commits the positions read at most that often (as a real consumer would); without, never.
 */
export async function rawConsume(brokers: string[], topic: string, count: number, options: { group: string; commitEveryMs?: number }): Promise<number> {
  const consumer = createConsumer({ brokers, groupId: `${options.group}-${suffix()}` })
  consumer.subscribe([topic])
  let seen = 0
  let first = 0
  let lastCommit = Date.now()
  const positions = new Map<number, number>()
  try {
    while (seen < count) {
      const records = await consumer.poll(10_000, 100)
      if (records.length > 0 && first === 0) first = performance.now()
      seen += records.length
      if (options.commitEveryMs === undefined) continue
      for (const r of records) positions.set(r.partition, r.offset + 1)
      if (Date.now() - lastCommit > options.commitEveryMs) {
        lastCommit = Date.now()
        await consumer.commit([...positions].map(([partition, offset]) => ({ topic, partition, offset })))
      }
    }
    return performance.now() - first
  } finally {
    await consumer.close()
  }
}
