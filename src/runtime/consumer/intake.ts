/**
 * Intake: polled records become items (a source record, a retry-tier copy seen at its origin, or a tier
 * record with unreadable headers to dead-letter as it is), tier copies wait until due, and everything
 * else goes to its key's lane. At-most-once commits a batch before any of it runs.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { ConsumedRecord } from '../../kafka/types.js'
import { tracingActive } from '../../trace/tracing.js'
import { sleep } from '../../util/sleep.js'
import { dueTime, originView, readTierRecord } from '../../failure/tier-record.js'
import { commit } from './commits.js'
import { reportError } from './events.js'
import { applyBackpressure, enqueue, pause, resume } from './partitions.js'
import { runNow } from './dispatcher.js'
import { tpKey, WorkItem, type ConsumerContext, type Item, type PartitionState } from './context.js'

function accept(ctx: ConsumerContext, record: ConsumedRecord, state: PartitionState | undefined): Item | undefined {
  // Not ours (any more): its new owner reads it again from the committed offset.
  if (!state || state.revoking) return undefined
  if (!state.ready) {
    // The partition is still being claimed (state loading): keep the record, untracked, until it is ready.
    state.stash.push(record)
    state.stashBytes += record.size
    ctx.bufferedBytes += record.size
    return undefined
  }
  if (!state.offsets.track(record.offset)) return undefined
  if (!state.tierOf) return new WorkItem('record', state, record, record, record.key, record.size)
  const tier = readTierRecord(record)
  if (tier) {
    const delay = ctx.options.tierDelays[tier.tier - 1] ?? 0
    const item = new WorkItem('record', state, originView(record, tier), record, record.key, record.size)
    item.tier = { ...tier, dueAt: dueTime(tier, record.timestamp, delay, Date.now()) }
    return item
  }
  // Not a record this runtime wrote (or its headers were damaged): dead-letter it as it is, at its own
  // coordinates, parking nothing (its origin is unknown, so no key of the source may be held behind it).
  const item = new WorkItem('record', state, record, record, record.key, record.size)
  item.forced = new LifelineError('LL_RETRY_TIER', `${record.topic}[${record.partition}]@${record.offset} has no readable retry-tier headers (lifeline.retry.tier, lifeline.retry.due, lifeline.origin.*); dead-lettering it`, { retriable: false })
  item.noPark = true
  return item
}

/** Sends an accepted item on: a retry-tier record waits until due, anything else to its lane. */
function route(ctx: ConsumerContext, item: Item): void {
  const state = item.state
  if (state.tierOf && item.tier && (state.delayed.length > 0 || item.tier.dueAt > Date.now())) {
    state.delayed.push(item)
    pause(ctx, state, 'retry-delay')
    armDelay(ctx, state)
    return
  }
  releaseDue(ctx, item)
}

function releaseDue(ctx: ConsumerContext, item: Item): void {
  if (item.tier) ctx.metrics.dueLag(item.tier.tier, Math.max(0, Date.now() - item.tier.dueAt) / 1000)
  enqueue(ctx, item)
}

function armDelay(ctx: ConsumerContext, state: PartitionState): void {
  if (state.delayTimer || state.delayed.length === 0) return
  const head = state.delayed[0]!
  state.delayTimer = setTimeout(() => {
    state.delayTimer = undefined
    if (state.revoking) return
    const now = Date.now()
    while (state.delayed.length > 0 && state.delayed[0]!.tier!.dueAt <= now) releaseDue(ctx, state.delayed.shift()!)
    if (state.delayed.length === 0) resume(ctx, state, 'retry-delay')
    else armDelay(ctx, state)
    ctx.pump()
  }, Math.max(0, head.tier!.dueAt - Date.now()))
}

/** Dispatches a polled batch (or records stashed while their partition was claimed). */
export async function dispatch(ctx: ConsumerContext, records: ConsumedRecord[]): Promise<void> {
  ctx.tracing = ctx.options.tracing && tracingActive()
  const items: Item[] = []
  // A batch comes partition by partition: look a partition up once per run of its records.
  let state: PartitionState | undefined
  for (const r of records) {
    if (state === undefined || state.partition !== r.partition || state.topic !== r.topic) state = ctx.partitions.get(tpKey(r.topic, r.partition))
    const item = accept(ctx, r, state)
    if (item) items.push(item)
  }
  if (ctx.options.atMostOnce && items.length > 0 && !(await preCommit(ctx, items))) return
  for (const item of items) if (!runNow(ctx, item)) route(ctx, item)
  ctx.pump()
  if (items.length === 0) return
  // Backpressure is judged once the batch had its chance to run (fast handlers finish within this
  // turn), so only records that really wait pause their partition. A pause makes librdkafka drop its
  // prefetched records, so pausing for a backlog that drains in microseconds would cost throughput.
  await new Promise<void>((resolve) => setImmediate(resolve))
  for (const state of new Set(items.map((i) => i.state))) applyBackpressure(ctx, state)
}

/** The records a claimed partition stashed while its state loaded: dispatched in order. */
export function dispatchStash(ctx: ConsumerContext, state: PartitionState): void {
  if (state.stash.length === 0) return
  const stashed = state.stash
  ctx.bufferedBytes -= state.stashBytes
  state.stash = []
  state.stashBytes = 0
  void dispatch(ctx, stashed).catch((err: unknown) => reportError(ctx, err, 'dispatching records held during the state load failed'))
}

/**
 * At-most-once: the batch's offsets are committed before any of it runs. False when close() interrupted
 * the pre-commit: the batch stays uncommitted (close() commits what is complete), read again by the next owner.
 */
async function preCommit(ctx: ConsumerContext, items: Item[]): Promise<boolean> {
  for (const item of items) item.state.offsets.complete(item.source!.offset)
  // Never run a record before its offset is committed; keep trying (polling goes on meanwhile only
  // through librdkafka's own background threads, which is all the group membership needs).
  for (let tries = 1; !ctx.stopping.signal.aborted; tries++) {
    try {
      await commit(ctx)
      return true
    } catch (err) {
      reportError(ctx, err, 'at-most-once pre-commit failed; retrying before any handler runs')
      await sleep(Math.min(5_000, 100 * 2 ** tries), ctx.stopping.signal).catch(() => undefined)
    }
  }
  const lowest = new Map<PartitionState, number>()
  for (const item of items) lowest.set(item.state, Math.min(lowest.get(item.state) ?? Number.POSITIVE_INFINITY, item.source!.offset))
  for (const [state, offset] of lowest) state.offsets.reset(offset)
  return false
}
