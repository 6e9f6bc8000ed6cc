export { defer }

/** Test helpers for the real broker that `npm test` starts (KAFKA_BOOTSTRAP). */
import { randomBytes } from 'node:crypto'
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'
import { createAdmin, createConsumer, createProducer } from '../../src/kafka/index.js'
import type { ConsumedRecord, ConsumerOptions, KafkaAdmin, KafkaConsumer, KafkaProducer, ProducerOptions, TopicSpec } from '../../src/kafka/index.js'

export function brokers(): string[] {
  const bootstrap = process.env.KAFKA_BOOTSTRAP
  if (!bootstrap) throw new Error('KAFKA_BOOTSTRAP is not set: run the tests with `npm test`, which starts a broker')
  return bootstrap.split(',')
}

/** A random, collision-free name for a topic, group or database. */
export function randomName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`
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

/** Polls `check` until it returns true (never a fixed sleep); throws with `what` on timeout. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
