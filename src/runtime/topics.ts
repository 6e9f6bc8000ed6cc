/**
 * Topic provisioning for a consumer: the DLQ topic and the retry-tier topics of every source topic, with the
 * source's partition count (a DLQ or tier record keeps its source partition number), `cleanup.policy=delete`
 * and a retention.
 */
import { isLifelineError, LifelineError } from '../errors.js'
import { setTimeout as delay } from 'node:timers/promises'
import { delayFor, exponential } from '../retry/backoff.js'
import type { KafkaAdmin } from '../kafka/types.js'
import { consumerDefaults, dlqTopicName, type DeadLetterOptions, type RetryTopicsOptions } from './options.js'
import { retryTopicName } from '../failure/tier-record.js'

export interface EnsureTopicsOptions {
  service: string
  topics: string[]
  deadLetter?: DeadLetterOptions
  /** Also the retry-tier topics of every source topic. */
  retryTopics?: RetryTopicsOptions
  /** Only check: a missing DLQ is an error instead of being created. */
  checkOnly?: boolean
}

export interface EnsuredTopic {
  topic: string
  role: 'dlq' | 'retry'
  /** The tier number of a retry topic. */
  tier?: number
  source: string
  partitions: number
  created: boolean
}

/** Kafka's UNKNOWN_TOPIC_OR_PARTITION. */
const UNKNOWN_TOPIC = 3
/** 200 ms doubling to 2 s: seven waits, 9 s in all, before the eighth and last ask. */
const METADATA_BACKOFF = exponential({ baseMs: 200, maxMs: 2000, jitter: 'none' })

/**
 * Describes topics the cluster has just listed. Right after another member created them, the broker asked
 * may not know them yet (unknown topic: its metadata has not caught up), which is not the topic missing:
 * asked again, with backoff, for up to 9 s. (Seen in a 3-broker rehearsal: a member started while another
 * created the tiers, and died of it.)
 */
async function describeListed(admin: KafkaAdmin, topics: string[]): ReturnType<KafkaAdmin['describeTopics']> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await admin.describeTopics(topics)
    } catch (err) {
      if (attempt >= 8 || !isLifelineError(err, 'LL_KAFKA_ADMIN') || err.details.nativeCode !== UNKNOWN_TOPIC) throw err
      await delay(delayFor(METADATA_BACKOFF, attempt, err))
    }
  }
}

/**
 * Creates the missing DLQ topics and checks the existing ones. Refuses (LL_TOPIC_INVALID) a source topic
 * that does not exist and a DLQ with fewer partitions than its source.
 */
export async function ensureTopics(admin: KafkaAdmin, options: EnsureTopicsOptions): Promise<EnsuredTopic[]> {
  const existing = new Set(await admin.listTopics())
  const missingSources = options.topics.filter((t) => !existing.has(t))
  if (missingSources.length > 0) {
    throw new LifelineError('LL_TOPIC_INVALID', `source topic(s) do not exist: ${missingSources.join(', ')}`, { details: { topics: missingSources } })
  }
  const sources = await describeListed(admin, options.topics)
  const retentionMs = options.deadLetter?.retentionMs ?? consumerDefaults.deadLetter.retentionMs
  const tierRetentionMs = options.retryTopics?.retentionMs ?? consumerDefaults.retryTopics.retentionMs
  const plan: Array<{ source: string; topic: string; partitions: number; role: 'dlq' | 'retry'; tier?: number; retentionMs: number }> = sources.flatMap((s) => [
    { source: s.topic, topic: dlqTopicName(options.service, s.topic, options.deadLetter?.topic), partitions: s.partitions.length, role: 'dlq' as const, retentionMs },
    ...(options.retryTopics?.delaysMs ?? []).map((_, i) => ({
      source: s.topic,
      topic: retryTopicName(options.service, s.topic, i + 1, options.retryTopics?.topic ?? consumerDefaults.retryTopics.topic),
      partitions: s.partitions.length,
      role: 'retry' as const,
      tier: i + 1,
      retentionMs: tierRetentionMs,
    })),
  ])

  const existingDlqs = plan.filter((p) => existing.has(p.topic))
  const actualPartitions = new Map<string, number>()
  if (options.checkOnly) {
    const missing = plan.filter((p) => !existing.has(p.topic)).map((p) => p.topic)
    if (missing.length > 0) {
      throw new LifelineError('LL_TOPIC_INVALID', `DLQ or retry topic(s) missing and provisioning is off: ${missing.join(', ')} (run \`lifeline topics ensure\`)`, { details: { topics: missing } })
    }
  }
  if (existingDlqs.length > 0) {
    const described = await describeListed(admin, existingDlqs.map((p) => p.topic))
    for (const d of described) {
      actualPartitions.set(d.topic, d.partitions.length)
      const want = plan.find((p) => p.topic === d.topic)!
      if (d.partitions.length < want.partitions) {
        throw new LifelineError(
          'LL_TOPIC_INVALID',
          `${want.role === 'dlq' ? 'DLQ' : 'retry'} topic ${d.topic} has ${d.partitions.length} partition(s) but its source ${want.source} has ${want.partitions}: a dead-lettered or retried record keeps its source partition number, so it needs at least as many (add partitions with kafka-topics --alter)`,
          { details: { topic: d.topic, partitions: d.partitions.length, required: want.partitions } },
        )
      }
    }
  }
  const created = new Set(
    await admin.createTopics(
      plan
        .filter((p) => !existing.has(p.topic))
        .map((p) => ({
          topic: p.topic,
          partitions: p.partitions,
          replicationFactor: options.deadLetter?.replicationFactor,
          // Tier records are stamped by the broker: a tier's due time is its append time plus the tier's delay,
          // one clock for every member (the origin's time travels in the failure headers).
          configs: { 'cleanup.policy': 'delete', 'retention.ms': String(p.retentionMs), ...(p.role === 'retry' ? { 'message.timestamp.type': 'LogAppendTime' } : {}) },
        })),
    ),
  )
  return plan.map((p) => ({ topic: p.topic, role: p.role, ...(p.tier === undefined ? {} : { tier: p.tier }), source: p.source, partitions: actualPartitions.get(p.topic) ?? p.partitions, created: created.has(p.topic) }))
}
