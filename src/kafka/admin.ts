/** Topic and group administration on the client's promise-based admin API. */
import { setTimeout as delay } from 'node:timers/promises'
import { LifelineError } from '../errors.js'
import { asError, baseConfig, nativeErrorDetails, rdkafka } from './native.js'
import type { KafkaAdmin, KafkaConnection, TopicDescription, TopicSpec } from './types.js'

const TOPIC_ALREADY_EXISTS = 36

function adminError(what: string, err: unknown): LifelineError {
  return new LifelineError('LL_KAFKA_ADMIN', `${what}: ${asError(err).message}`, { cause: err, details: nativeErrorDetails(err) })
}

export function createAdmin(options: KafkaConnection): KafkaAdmin {
  const kafka = new rdkafka.KafkaJS.Kafka({})
  // The compat layer logs to the console by default; library code must not.
  const admin = kafka.admin({ ...baseConfig(options), kafkaJS: { logLevel: rdkafka.KafkaJS.logLevel.NOTHING } } as never)
  let connected: Promise<void> | undefined
  let closing: Promise<void> | undefined

  function connect(): Promise<void> {
    connected ??= admin.connect().catch((err: unknown) => {
      throw new LifelineError('LL_KAFKA_CONNECT', `admin could not connect to ${options.brokers.join(',')}: ${asError(err).message}`, { cause: err })
    })
    return connected
  }

  async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (closing) throw new LifelineError('LL_KAFKA_CLOSED', 'admin client is closed')
    await connect()
    try {
      return await fn()
    } catch (err) {
      throw adminError(what, err)
    }
  }

  async function listTopics(): Promise<string[]> {
    return call('listing topics failed', () => admin.listTopics())
  }

  async function createTopics(specs: readonly TopicSpec[], opts: { timeoutMs?: number } = {}): Promise<string[]> {
    if (specs.length === 0) return []
    const existing = new Set(await listTopics())
    const missing = specs.filter((s) => !existing.has(s.topic))
    const created: string[] = []
    for (const spec of missing) {
      try {
        await call(`creating topic ${spec.topic} failed`, () =>
          admin.createTopics({
            timeout: opts.timeoutMs ?? 30_000,
            topics: [
              {
                topic: spec.topic,
                numPartitions: spec.partitions,
                replicationFactor: spec.replicationFactor ?? -1,
                configEntries: Object.entries(spec.configs ?? {}).map(([name, value]) => ({ name, value })),
              },
            ],
          }),
        )
        created.push(spec.topic)
      } catch (err) {
        // Another process created it between our list and create: that is the state we wanted.
        const nativeCode = ((err as LifelineError).cause as { code?: number } | undefined)?.code
        if (nativeCode !== TOPIC_ALREADY_EXISTS) throw err
      }
    }
    if (created.length > 0) await waitForMetadata(created)
    return created
  }

  // createTopics returns before every broker knows the topic; wait until metadata shows all partitions led.
  async function waitForMetadata(topics: string[]): Promise<void> {
    const deadline = Date.now() + 30_000
    for (;;) {
      const described = await describeTopics(topics).catch(() => [] as TopicDescription[])
      const ready = described.length === topics.length && described.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))
      if (ready) return
      if (Date.now() > deadline) throw new LifelineError('LL_KAFKA_ADMIN', `topics ${topics.join(', ')} did not become available within 30 s`)
      await delay(100)
    }
  }

  async function describeTopics(topics: readonly string[]): Promise<TopicDescription[]> {
    const meta = await call('describing topics failed', () => admin.fetchTopicMetadata({ topics: [...topics] }))
    return meta.map((t) => ({
      topic: t.name,
      partitions: t.partitions
        .map((p) => ({
          partition: p.partitionId,
          leader: p.leader,
          replicas: p.replicas ?? [],
          isr: p.isr ?? [],
        }))
        .sort((a, b) => a.partition - b.partition),
    }))
  }

  return {
    connect,
    createTopics,
    deleteTopics: async (topics) => {
      if (topics.length > 0) await call('deleting topics failed', () => admin.deleteTopics({ topics: [...topics], timeout: 30_000 }))
    },
    listTopics,
    describeTopics,
    topicOffsets: async (topic) => {
      const rows = await call(`reading offsets of ${topic} failed`, () => admin.fetchTopicOffsets(topic))
      return rows.map((r) => ({ partition: r.partition, low: Number(r.low), high: Number(r.high) })).sort((a, b) => a.partition - b.partition)
    },
    groupOffsets: async (groupId, topic) => {
      const rows = await call(`reading offsets of group ${groupId} failed`, () => admin.fetchOffsets({ groupId, topics: [topic] }))
      const parts = rows.find((r) => r.topic === topic)?.partitions ?? []
      return parts.map((p) => ({ partition: p.partition, offset: Number(p.offset) })).sort((a, b) => a.partition - b.partition)
    },
    close: () => {
      closing ??= (async () => {
        if (!connected) return
        const ok = await connected.then(
          () => true,
          () => false,
        )
        if (ok) await admin.disconnect()
      })()
      return closing
    },
  }
}
