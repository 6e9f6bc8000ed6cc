/**
 * Crash recovery of a job's sends. Before a run sends anything, it notes the end offsets of its target
 * topics (`marks`); every item gets its replay id before it is sent (status `sending`). A run that takes
 * over an interrupted one settles the items left `sending`: acknowledged (its replay row has an offset: only
 * rows from before migration 0015, since an item's offset is written with its `sent` status) or found in the
 * target from the marks on (with `deps.kafka`) → sent; else pending again, keeping the replay id it is sent
 * with.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { createAdmin, createConsumer } from '../../kafka/index.js'
import type { ProduceAck } from '../../kafka/types.js'
import type { Logger } from '../../logger.js'
import { retryTopicName } from '../../failure/tier-record.js'
import { ReplayHeaders } from '../../failure/formats.js'
import { releaseAll } from './batch.js'
import { loadItems, pendingOriginTopics, recordBatch, replayTargets } from './batch-store.js'
import { readMarks, writeMarks } from './job-store.js'
import { withClearKey } from './plan.js'
import type { Acked, Marks, Run } from './run.js'
import { redriveDefaults, type RedriveDeps } from './types.js'

/** Finds replay ids in the target partitions from `marks` to their end (records a crashed run may have sent). */
async function findInTarget(deps: RedriveDeps, marks: Marks, topics: readonly string[], wanted: ReadonlySet<string>, log: Logger): Promise<Map<string, ProduceAck>> {
  const found = new Map<string, ProduceAck>()
  const kafka = deps.kafka
  if (!kafka || wanted.size === 0 || topics.length === 0) return found
  const admin = createAdmin({ brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config })
  const ends = new Map<string, number>()
  const starts = new Map<string, number>()
  try {
    for (const topic of topics) {
      for (const p of await admin.topicOffsets(topic)) {
        const start = Math.max(p.low, marks[topic]?.[String(p.partition)] ?? p.low)
        if (start < p.high) {
          ends.set(`${topic}:${p.partition}`, p.high)
          starts.set(`${topic}:${p.partition}`, start)
        }
      }
    }
  } finally {
    await admin.close()
  }
  if (ends.size === 0) return found
  const consumer = createConsumer({
    brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config, groupId: `lifeline-dlq-verify-${randomUUID()}`, fromBeginning: true, isolationLevel: 'read_uncommitted',
    rebalance: { onAssign: (parts) => parts.map((p) => ({ ...p, offset: starts.get(`${p.topic}:${p.partition}`) ?? ends.get(`${p.topic}:${p.partition}`) ?? 0 })) },
  })
  try {
    consumer.subscribe([...new Set([...ends.keys()].map((k) => k.slice(0, k.lastIndexOf(':'))))])
    await consumer.connect()
    const deadline = Date.now() + (kafka.timeoutMs ?? redriveDefaults.verifyTimeoutMs)
    while (ends.size > 0 && found.size < wanted.size && Date.now() < deadline) {
      for (const r of await consumer.poll(1000, 200)) {
        const id = r.headers.findLast((h) => h.key === ReplayHeaders.id)?.value?.toString('utf8')
        if (id !== undefined && wanted.has(id)) found.set(id, { topic: r.topic, partition: r.partition, offset: r.offset })
        const k = `${r.topic}:${r.partition}`
        if (r.offset + 1 >= (ends.get(k) ?? Infinity)) ends.delete(k)
      }
    }
    if (ends.size > 0 && found.size < wanted.size) log.warn({ partitions: [...ends.keys()] }, 'looking for interrupted sends timed out: the rest are sent again (same replay ids)')
  } finally {
    await consumer.close()
  }
  return found
}


/** Settles the items a crashed run left `sending`: acknowledged or found in the target → sent; else pending again. */
export async function recover(run: Run): Promise<void> {
  const items = await loadItems(run.deps.db, run.job.id, `i.status = 'sending'`, [])
  if (items.length === 0) return
  const ids = items.map((i) => i.replayId!)
  const known = await replayTargets(run.deps.db, ids)
  const acks = new Map<string, ProduceAck>()
  for (const [id, k] of known) if (k.offset !== null && k.partition !== null) acks.set(id, { topic: k.topic, partition: k.partition, offset: k.offset })
  const look = new Set(ids.filter((id) => !acks.has(id)))
  const topics = [...new Set([...known.values()].map((k) => k.topic))]
  for (const [id, ack] of await findInTarget(run.deps, await readMarks(run.deps.db, run.job.id), topics, look, run.log)) acks.set(id, ack)
  const acked: Acked[] = []
  const unsent: Array<{ seq: number; replayId: string; recordId: string }> = []
  for (const item of items) {
    const ack = acks.get(item.replayId!)
    if (ack) {
      let source = item.source
      let releasable = true
      try {
        source = withClearKey(item.source, run.deps.masker)
      } catch (err) {
        releasable = false // a masked key that does not decrypt names no parked key: nothing to release
        run.log.warn({ err, recordId: item.source.id }, 'the key of a recovered replay does not decrypt: its parked key (if any) is not released')
      }
      // A send back to the origin topic released nothing (a parked head carries its token and its consumer
      // releases the key; any other key is not parked behind it); a send elsewhere gave the head up.
      acked.push({ seq: item.seq, replayId: item.replayId!, ack, source, release: releasable && run.job.target.kind !== 'retry-tier' && ack.topic !== item.source.originTopic })
    }
    else unsent.push({ seq: item.seq, replayId: item.replayId!, recordId: item.source.id })
  }
  run.log.info({ jobId: run.job.id, sent: acked.length, resend: unsent.length }, 'recovered the sends of an interrupted run')
  await recordBatch(run, acked, [], unsent, [])
  await releaseAll(run, acked)
}

/** Sets the marks (end offsets) of the job's target topics that have none yet, before anything is sent. */
export async function markTargets(run: Run): Promise<void> {
  const kafka = run.deps.kafka
  if (!kafka) return
  const t = run.job.target
  let topics: string[]
  if (t.kind === 'topic') topics = [t.topic]
  else topics = (await pendingOriginTopics(run.deps.db, run.job.id)).map((o) => (t.kind === 'origin' ? o : retryTopicName(t.service, o, t.tier)))
  const marks = await readMarks(run.deps.db, run.job.id)
  const admin = createAdmin({ brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config })
  try {
    for (const topic of topics) {
      const parts = (marks[topic] ??= {})
      let offsets: Array<{ partition: number; high: number }>
      try {
        offsets = await admin.topicOffsets(topic)
      } catch (err) {
        run.log.warn({ err, topic }, 'could not read the end offsets of a target topic: a crash would resend its in-flight records')
        continue
      }
      for (const p of offsets) parts[String(p.partition)] ??= p.high
    }
  } finally {
    await admin.close()
  }
  await writeMarks(run.deps.db, run.job.id, marks)
}
