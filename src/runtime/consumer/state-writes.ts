/**
 * Writes that must not be skipped (a DLQ or retry-tier produce, an ordering-state statement): retried with
 * backoff while they fail, the partition paused meanwhile, cancelled only by a revocation, a fence or
 * close(). A state write refused by a newer epoch fences the partition: another member owns it now.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { WriteResult } from '../../ordering/protocol-store.js'
import { outageBackoffMs } from '../../retry/backoff.js'
import { sleep } from '../../util/sleep.js'
import { emit, reportError } from './events.js'
import { pause, resume, stopPartitions } from './partitions.js'
import { CANCELLED, type ConsumerContext, type PartitionState } from './context.js'

/**
 * Runs `step` until it succeeds. While it fails the partition is paused under `reason` (nothing after it
 * is fetched) and the step is retried with backoff: a record is never skipped because a write failed.
 */
export async function retrying<T>(ctx: ConsumerContext, state: PartitionState, reason: string, step: () => Promise<T>, describe: (err: unknown, tries: number) => LifelineError): Promise<T | typeof CANCELLED> {
  let failing = false
  try {
    for (let tries = 1; ; tries++) {
      try {
        return await step()
      } catch (err) {
        if (!failing) {
          failing = true
          state.failing.set(reason, (state.failing.get(reason) ?? 0) + 1)
          pause(ctx, state, reason)
        }
        reportError(ctx, describe(err, tries), `${reason} write failed`)
        try {
          await sleep(outageBackoffMs(tries), state.waits.signal)
        } catch {
          return CANCELLED
        }
      }
    }
  } finally {
    if (failing) {
      const left = (state.failing.get(reason) ?? 1) - 1
      state.failing.set(reason, left)
      if (left === 0) resume(ctx, state, reason)
    }
  }
}

/** Runs an ordering-state step, pausing the partition and retrying while it fails; CANCELLED on revoke/close. */
export function withState<T>(ctx: ConsumerContext, state: PartitionState, what: string, step: () => Promise<T>): Promise<T | typeof CANCELLED> {
  return retrying(ctx, state, 'state', step, (err, tries) => new LifelineError('LL_STATE', `${what} failed (try ${tries}); retrying`, { cause: err }))
}

/**
 * Another member took the partition (its epoch is newer than ours): stop everything of it, commit nothing
 * of it, and leave it to its owner. The client's revocation follows when the group catches up.
 */
export function fence(ctx: ConsumerContext, state: PartitionState, what: string): void {
  if (state.fenced) return
  state.fenced = true
  ctx.metrics.fenced(state.topic)
  ctx.log.warn({ topic: state.topic, partition: state.partition, epoch: state.epoch, what }, 'state write refused: another member owns this partition now (its epoch is newer); stopping the partition')
  emit(ctx, 'fenced', { topic: state.topic, partition: state.partition, epoch: state.epoch ?? 0 })
  stopPartitions(ctx, [state])
}

/**
 * A fenced state write through `state`'s partition and epoch: retried while it fails, and a refusal by a
 * newer epoch fences the partition. CANCELLED when cancelled or fenced.
 */
export async function fencedWrite<R extends string | object>(ctx: ConsumerContext, state: PartitionState, what: string, step: (f: { topic: string; partition: number; epoch: number }) => Promise<R | 'fenced'>): Promise<Exclude<R, 'fenced'> | typeof CANCELLED> {
  if (state.epoch === undefined) throw new LifelineError('LL_STATE', `${what}: ${state.topic}[${state.partition}] has no epoch (not claimed)`)
  const f = { topic: state.topic, partition: state.partition, epoch: state.epoch }
  const result = await withState(ctx, state, what, () => step(f))
  if (result === CANCELLED) return CANCELLED
  if (result === 'fenced') {
    fence(ctx, state, what)
    return CANCELLED
  }
  return result as Exclude<R, 'fenced'>
}

export type { WriteResult }
