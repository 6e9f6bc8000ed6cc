export { defer }
export { randomName } from './names.js'
export { waitFor } from './wait.js'

/** Test helpers for the real broker that `npm test` starts (KAFKA_BOOTSTRAP). */
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'
import { randomName } from './names.js'
import { waitFor } from './wait.js'
import { createAdmin, createConsumer, createProducer } from '../../src/kafka/index.js'
import type { ConsumedRecord, ConsumerOptions, KafkaAdmin, KafkaConsumer, KafkaProducer, ProducerOptions, TopicSpec } from '../../src/kafka/index.js'

export function brokers(): string[] {
  const bootstrap = process.env.KAFKA_BOOTSTRAP
  if (!bootstrap) throw new Error('KAFKA_BOOTSTRAP is not set: run the tests with `npm test`, which starts a broker')
  return bootstrap.split(',')
}

/** An admin client closed when the test ends. */
export function admin(t: TestContext): KafkaAdmin {
  const a = createAdmin({ brokers: brokers() })
  defer(t, () => a.close())
  return a
}

/** Creates a randomly named topic, deleted when the test ends. */
export async function topic(t: TestContext, spec: Partial<TopicSpec> & { prefix?: string } = {}): Promise<string> {
  const name = spec.topic ?? randomName(spec.prefix ?? 'test')
  const a = createAdmin({ brokers: brokers() })
  await a.createTopics([{ topic: name, partitions: spec.partitions ?? 1, replicationFactor: spec.replicationFactor, configs: spec.configs }])
  defer(t, async () => {
    await a.deleteTopics([name])
    await a.close()
  })
  return name
}

export function producer(t: TestContext, options: Partial<ProducerOptions> = {}): KafkaProducer {
  const p = createProducer({ brokers: brokers(), ...options })
  defer(t, () => p.close())
  return p
}

export function consumer(t: TestContext, options: Partial<ConsumerOptions> & { groupId: string }): KafkaConsumer {
  const c = createConsumer({ brokers: brokers(), ...options })
  defer(t, () => c.close())
  return c
}

/** Polls until `count` records arrived or `timeoutMs` passed; returns what arrived. */
export async function pollUntil(c: KafkaConsumer, count: number, timeoutMs = 30_000): Promise<ConsumedRecord[]> {
  const out: ConsumedRecord[] = []
  const deadline = Date.now() + timeoutMs
  while (out.length < count && Date.now() < deadline) out.push(...(await c.poll(500, 200)))
  return out
}


/** Key and value of the probe {@link waitForCoordinatorAbort} writes (readers of the topic skip it). */
export const PROBE = '__probe__'

/**
 * Waits until the transaction coordinator has aborted the open transaction on `name` (partition 0): a probe
 * written after it becomes visible to a read_committed reader only once that transaction ended. The broker
 * looks for timed-out transactions every transaction.abort.timed.out.transaction.cleanup.interval.ms (10 s).
 */
export async function waitForCoordinatorAbort(t: TestContext, name: string): Promise<void> {
  await producer(t).send([{ topic: name, partition: 0, key: PROBE, value: PROBE }])
  const c = consumer(t, { groupId: randomName('probe'), isolationLevel: 'read_committed' })
  c.subscribe([name])
  let seen = false
  await waitFor(async () => {
    for (const r of await c.poll(100, 200)) if (r.key?.toString() === PROBE) seen = true
    return seen
  }, 'the coordinator to abort the timed-out transaction', 90_000)
  await c.close()
}
