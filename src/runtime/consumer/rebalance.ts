/**
 * Rebalances. On assignment every partition is claimed (with parking): its epoch is bumped in the database
 * — refusing any later write of a former owner — and, in the same transaction, its keys' state, last
 * sequences and the pending copies a former owner left are loaded; its records wait (the partition
 * paused) until then. On revocation or loss the partition stops taking records, its in-flight handlers
 * drain (bounded by drainTimeoutMs), it commits (not when lost: another member may own it already), and
 * every pause reason is undone in the client.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { TopicPartition, TopicPartitionOffset } from '../../kafka/types.js'
import { sleep } from '../../util/sleep.js'
import { schedulingKey } from '../key-scheduler.js'
import { pauseIfBreakerOpen } from './breaker-gate.js'
import { commit } from './commits.js'
import { emit, reportError } from './events.js'
import { dispatchStash } from './intake.js'
import { entryFrom, markReleased } from './parking.js'
import { recoverPending } from './recovery.js'
import { newPartitionState, pause, resume, stopPartitions, syncClientPause } from './partitions.js'
import { tpKey, type ConsumerContext, type PartitionState } from './context.js'

/** How long onAssign waits for claims before letting the assignment apply (the partitions stay paused until claimed). */
const CLAIM_WAIT_MS = 10_000

export async function onAssign(ctx: ConsumerContext, parts: TopicPartition[]): Promise<TopicPartitionOffset[] | undefined> {
  const states = parts.map((p) => {
    const state = newPartitionState(ctx, p)
    ctx.partitions.set(tpKey(p.topic, p.partition), state)
    return state
  })
  // Announced before the claims: the client may deliver records of a partition claimed quickly while another
  // is still being claimed, and a listener must never see a record of a partition it was not told of
  // (rehearsal finding F7: a member killed while recovering one partition had run records of another).
  ctx.log.info({ partitions: parts }, 'partitions assigned')
  emit(ctx, 'partitions-assigned', parts)
  // The assignment takes effect when this returns: wait (bounded) for the claims, so nothing is fetched before them.
  const claiming = states.filter((s) => !s.ready).map((s) => claim(ctx, s))
  if (claiming.length > 0) {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(claiming), new Promise<void>((resolve) => (timer = setTimeout(resolve, CLAIM_WAIT_MS)))])
    clearTimeout(timer)
  }
  // Once the assignment is applied (right after this hook returns): a partition still being claimed stays
  // paused; during an outage partitions start paused like the others; and the client's pause flags are set
  // to exactly what the reasons say (it may hold one from an earlier assignment of this member).
  setImmediate(() => {
    for (const s of states) if (!s.ready && !s.revoking) pause(ctx, s, 'state')
    pauseIfBreakerOpen(ctx, states)
    syncClientPause(ctx, states)
  })
  return ctx.options.source.startOffsets ? storedStarts(ctx, parts) : undefined
}

/** Claims a partition (its epoch, its state, pending copies to recover); until then its records wait. */
async function claim(ctx: ConsumerContext, state: PartitionState): Promise<void> {
  let pending: Awaited<ReturnType<NonNullable<ConsumerContext['store']>['claim']>>['pending'] = []
  for (let tries = 1; ; tries++) {
    if (state.revoking || ctx.stopping.signal.aborted) return
    try {
      const claimed = await ctx.store!.claim(ctx.options.groupId, state.topic, state.partition, ctx.member, !state.tierOf)
      if (state.revoking) return
      state.epoch = claimed.epoch
      for (const k of claimed.keys) state.keys.set(schedulingKey(k.key)!, entryFrom(k))
      for (const q of claimed.sequences) state.lastSeq.set(schedulingKey(q.key)!, q.lastSeq)
      pending = claimed.pending
      break
    } catch (err) {
      reportError(ctx, new LifelineError('LL_STATE', `claiming ${state.topic}[${state.partition}] (epoch and ordering state) failed (try ${tries}); its records wait`, { cause: err }), 'state load failed')
      // Paused once the assignment is applied (right after onAssign returns); records fetched before wait in the stash.
      setImmediate(() => {
        if (!state.ready && !state.revoking) pause(ctx, state, 'state')
      })
      try {
        await sleep(Math.min(30_000, 250 * 2 ** Math.min(tries, 7)), state.waits.signal)
      } catch {
        return
      }
    }
  }
  // Copies a former owner wrote ahead and never confirmed are completed before any record runs, so a
  // redelivered record finds them confirmed (its records wait, the partition paused, meanwhile).
  if (pending.length > 0) {
    try {
      await recoverPending(ctx, state, pending)
    } catch (err) {
      reportError(ctx, err, 'completing copies left by a former owner failed; the partition is given up to be claimed again')
      return
    }
    if (state.revoking) return
  }
  state.ready = true
  resume(ctx, state, 'state')
  dispatchStash(ctx, state)
  for (const entry of state.keys.values()) if (entry.status === 'released') markReleased(ctx, state, entry.key, entry.token)
}

/** Stored positions ahead of the group's committed offsets (a failure to read them falls back to the committed ones). */
async function storedStarts(ctx: ConsumerContext, parts: TopicPartition[]): Promise<TopicPartitionOffset[] | undefined> {
  const sources = parts.filter((p) => !ctx.options.tierTopics.has(p.topic))
  const kafka = ctx.kafka
  if (sources.length === 0 || !kafka) return undefined
  try {
    const [stored, committed] = await Promise.all([ctx.options.source.startOffsets!(sources), kafka.committed(sources, 10_000)])
    const at = new Map(committed.map((c) => [tpKey(c.topic, c.partition), c.offset]))
    const starts = stored.filter((s) => s.offset > (at.get(tpKey(s.topic, s.partition)) ?? -1))
    if (starts.length > 0) ctx.log.info({ starts }, 'starting partitions at positions stored with the effects')
    return starts
  } catch (err) {
    reportError(ctx, err, 'reading stored start offsets failed; starting at the committed offsets (the inbox still skips applied events)')
    return undefined
  }
}

/** Waits (bounded by drainTimeoutMs) for the partitions' in-flight items; then aborts their handlers. */
export async function drainInFlight(ctx: ConsumerContext, states: readonly PartitionState[]): Promise<void> {
  const busy = () => states.some((s) => s.running.size > 0)
  if (!busy()) return
  const deadline = Date.now() + ctx.options.drainTimeoutMs
  while (busy()) {
    const left = deadline - Date.now()
    if (left <= 0) {
      for (const s of states) s.handlers.abort(new LifelineError('LL_ABORTED', 'drain timeout: the partition is being released'))
      ctx.log.warn({ drainTimeoutMs: ctx.options.drainTimeoutMs }, 'in-flight handlers overran the drain timeout; their records stay uncommitted')
      return
    }
    await new Promise<void>((resolve) => {
      const wake = () => {
        ctx.drainWaiters.delete(wake)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(wake, Math.min(left, 100))
      ctx.drainWaiters.add(wake)
    })
  }
}

export async function onRevoke(ctx: ConsumerContext, parts: TopicPartition[], lost: boolean): Promise<void> {
  const states = parts.flatMap((p) => ctx.partitions.get(tpKey(p.topic, p.partition)) ?? [])
  stopPartitions(ctx, states)
  await drainInFlight(ctx, states)
  if (!lost) await commit(ctx, (s) => states.includes(s)).catch((err: unknown) => reportError(ctx, err, 'commit on revocation failed'))
  for (const s of states) {
    ctx.partitions.delete(tpKey(s.topic, s.partition))
    s.detached = true
  }
  ctx.log.info({ partitions: parts, lost }, 'partitions revoked')
  emit(ctx, 'partitions-revoked', parts, lost)
}
