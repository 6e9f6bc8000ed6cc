/**
 * Assigned partitions: their state, pausing by reason, and backpressure.
 *
 * A partition is paused in the Kafka client while at least one reason holds (backpressure, memory, a
 * failing write, a retry-tier delay, the breaker, a state load). Every reason is undone on every exit: a
 * revoked, lost or fenced partition is resumed in the client before it is given back (librdkafka keeps a
 * partition's pause flag across an unassign and a later assign), and a newly assigned partition is set in
 * the client to exactly what its reasons say ({@link syncClientPause}).
 *
 * @module
 */
import { setMaxListeners } from 'node:events'
import type { TopicPartition } from '../../kafka/types.js'
import { PartitionOffsets } from '../offset-tracker.js'
import { emit } from './events.js'
import { type ConsumerContext, type Item, type PartitionState } from './context.js'

/** Every record in backoff listens on its partition's signal: hundreds of listeners are normal here. */
export function unboundedController(): AbortController {
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  return controller
}

export function newPartitionState(ctx: ConsumerContext, p: TopicPartition): PartitionState {
  const tierOf = ctx.options.tierTopics.get(p.topic)
  return {
    topic: p.topic, partition: p.partition, offsets: new PartitionOffsets(), pausedFor: new Set(), running: new Set(), waits: unboundedController(), handlers: unboundedController(),
    buffered: 0, failing: new Map(), revoking: false, fenced: false, detached: false, tierOf, ready: !ctx.parking, stash: [], stashBytes: 0, epoch: undefined,
    keys: new Map(), lastSeq: new Map(), dirtySeq: new Map(), delayed: [], delayTimer: undefined,
  }
}

/** The partition's current state object, if `state` is still it (a revoked and re-assigned partition gets a new one). */
export const isCurrent = (_ctx: ConsumerContext, state: PartitionState): boolean => !state.detached

/** Assigned source (non-tier) partitions. */
export function sourceStates(ctx: ConsumerContext): PartitionState[] {
  return [...ctx.partitions.values()].filter((s) => !s.tierOf)
}

export function pause(ctx: ConsumerContext, state: PartitionState, reason: string): void {
  if (state.pausedFor.has(reason)) return
  state.pausedFor.add(reason)
  if (state.pausedFor.size === 1 && !state.revoking) ctx.kafka?.pause([{ topic: state.topic, partition: state.partition }])
  emit(ctx, 'paused', { topic: state.topic, partition: state.partition }, reason)
}

export function resume(ctx: ConsumerContext, state: PartitionState, reason: string): void {
  if (!state.pausedFor.delete(reason) || state.pausedFor.size > 0) return
  if (!state.revoking && isCurrent(ctx, state)) ctx.kafka?.resume([{ topic: state.topic, partition: state.partition }])
  emit(ctx, 'resumed', { topic: state.topic, partition: state.partition })
}

/**
 * Sets the client's pause flag of assigned partitions to what their reasons say. Called once an assignment
 * is applied: the client may still hold a partition paused from an earlier assignment of this member.
 */
export function syncClientPause(ctx: ConsumerContext, states: readonly PartitionState[]): void {
  const live = states.filter((s) => !s.revoking && isCurrent(ctx, s))
  const paused = live.filter((s) => s.pausedFor.size > 0).map((s) => ({ topic: s.topic, partition: s.partition }))
  const running = live.filter((s) => s.pausedFor.size === 0).map((s) => ({ topic: s.topic, partition: s.partition }))
  if (running.length > 0) ctx.kafka?.resume(running)
  if (paused.length > 0) ctx.kafka?.pause(paused)
}

/**
 * A partition's load: records queued, records started and not finished (running, in backoff, at the
 * breaker, being dead-lettered), and records fetched while its state loads. All count, so neither failing
 * keys nor a slow state load can pile records up without bound.
 */
const load = (state: PartitionState) => state.buffered + state.running.size + state.stash.length

/** Pauses a partition whose load is at its limit, or every partition when buffered bytes are. */
export function applyBackpressure(ctx: ConsumerContext, state: PartitionState): void {
  if (load(state) >= ctx.options.maxPerPartition) pause(ctx, state, 'backpressure')
  if (!ctx.memoryPaused && ctx.bufferedBytes >= ctx.options.maxBytes) {
    ctx.memoryPaused = true
    for (const s of ctx.partitions.values()) pause(ctx, s, 'memory')
  }
  relieve(ctx, state)
}

/** Resumes once a backlog drained to half its limit (hysteresis: no pause/resume flapping). */
export function relieve(ctx: ConsumerContext, state: PartitionState): void {
  if (load(state) <= ctx.options.maxPerPartition / 2) resume(ctx, state, 'backpressure')
  if (ctx.memoryPaused && ctx.bufferedBytes <= ctx.options.maxBytes / 2) {
    ctx.memoryPaused = false
    for (const s of ctx.partitions.values()) resume(ctx, s, 'memory')
  }
}

/** Queues an item in its lane. */
export function enqueue(ctx: ConsumerContext, item: Item): void {
  ctx.scheduler.enqueue(item)
  item.state.buffered++
  ctx.bufferedBytes += item.size
}

/**
 * Stops a partition taking or starting anything (revocation, loss, a fence, close): queued, delayed and
 * stashed records are dropped (uncommitted: the next owner reads them again), waits are cancelled, and the
 * client's pause flag is cleared so a later assignment of the partition starts unpaused.
 */
export function stopPartitions(ctx: ConsumerContext, states: readonly PartitionState[]): void {
  const wasPaused: TopicPartition[] = []
  for (const s of states) {
    if (s.pausedFor.size > 0 && !s.revoking) wasPaused.push({ topic: s.topic, partition: s.partition })
    s.revoking = true
    const dropped = ctx.scheduler.removePartition(s.topic, s.partition)
    s.buffered -= dropped.length
    for (const d of dropped) ctx.bufferedBytes -= d.size
    clearTimeout(s.delayTimer)
    s.delayTimer = undefined
    s.delayed = []
    ctx.bufferedBytes -= s.stashBytes
    s.stash = []
    s.stashBytes = 0
    s.waits.abort()
  }
  if (wasPaused.length > 0) ctx.kafka?.resume(wasPaused)
}
