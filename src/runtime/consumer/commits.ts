/**
 * Offset commits: per partition up to the lowest unfinished offset, one commit at a time and in order, the
 * last handled sequences they cover saved first. A fenced partition commits nothing.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import { schedulingKey } from '../key-scheduler.js'
import { crashPoint } from '../../util/crash-points.js'
import { emit } from './events.js'
import { fence } from './state-writes.js'
import type { ConsumerContext, PartitionState } from './context.js'

/** Commits what is committable now for the partitions `filter` keeps (every one by default). */
export function commit(ctx: ConsumerContext, filter?: (s: PartitionState) => boolean): Promise<void> {
  const run = async () => {
    const kafka = ctx.kafka
    if (!kafka) return
    const batch = [...ctx.partitions.values()]
      .filter((s) => !s.fenced && (!filter || filter(s)))
      .flatMap((s) => {
        const offset = s.offsets.committable()
        return offset === undefined ? [] : [{ state: s, offset, generation: s.offsets.generation }]
      })
    if (batch.length === 0) return
    // Sequences first: everything the offsets below cover was noted before they were computed.
    const fenced = await saveSequences(ctx, batch.map((b) => b.state))
    const kept = batch.filter((b) => !fenced.has(b.state))
    if (kept.length === 0) return
    const offsets = kept.map((b) => ({ topic: b.state.topic, partition: b.state.partition, offset: b.offset }))
    crashPoint('commit.before')
    await kafka.commit(offsets)
    crashPoint('commit.after')
    for (const b of kept) b.state.offsets.markCommitted(b.offset, b.generation)
    emit(ctx, 'commit', offsets)
  }
  // One commit at a time, in order: a late answer can never move a position back.
  const next = ctx.commitChain.then(run)
  ctx.commitChain = next.catch(() => undefined)
  return next
}

/**
 * Saves the last handled sequences noted so far; a failed save keeps them noted and fails the commit.
 * Returns the partitions whose save was refused by a newer epoch (fenced now: nothing of them is committed).
 */
async function saveSequences(ctx: ConsumerContext, states: PartitionState[]): Promise<Set<PartitionState>> {
  const fenced = new Set<PartitionState>()
  for (const s of states) {
    if (s.dirtySeq.size === 0 || !ctx.store || s.epoch === undefined) continue
    const entries = [...s.dirtySeq.values()]
    s.dirtySeq.clear()
    try {
      const result = await ctx.store.saveSequences({ topic: s.topic, partition: s.partition, epoch: s.epoch }, ctx.options.groupId, s.topic, s.partition, entries.map((e) => [e.key, e.seq] as const))
      if (result === 'fenced') {
        fence(ctx, s, 'saving last sequences')
        fenced.add(s)
      }
    } catch (err) {
      for (const e of entries) {
        const sk = schedulingKey(e.key)!
        const now = s.dirtySeq.get(sk)
        if (!now || now.seq < e.seq) s.dirtySeq.set(sk, e)
      }
      throw new LifelineError('LL_STATE', `saving last sequences of ${s.topic}[${s.partition}] failed; offsets not committed`, { cause: err })
    }
  }
  return fenced
}
