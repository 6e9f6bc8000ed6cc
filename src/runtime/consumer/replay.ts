/**
 * Work that runs in a key's lane on behalf of the key rather than one record: replaying a released key's
 * stored records in order, and applying a timed-out sequence gap's policy. Both run in the lane, so live
 * records of the key wait behind them (and are stored behind the key meanwhile, if it is still not free).
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { LifelineError } from '../../errors.js'
import { replayStep } from '../../ordering/key-rules.js'
import type { ParkedRecord } from '../../ordering/rows.js'
import { crashPoint } from '../../util/crash-points.js'
import type { ConsumedRecord } from '../../kafka/types.js'
import { schedulingKey } from '../key-scheduler.js'
import { processRecord } from './attempts.js'
import { emit, listened } from './events.js'
import { takeSlot } from './slots.js'
import { fencedWrite, withState } from './state-writes.js'
import { gapFilled, markReleased, refresh } from './parking.js'
import { CANCELLED, WorkItem, type ConsumerContext, type Item, type KeyEntry, type Outcome, type PartitionState } from './context.js'

/** A stored record as an item of its key's lane, replayed under the release `token`. */
function storedItem(state: PartitionState, row: ParkedRecord, token: string, extra: Partial<Item> = {}): Item {
  const record: ConsumedRecord = { topic: row.topic, partition: row.partition, offset: row.offset, key: row.key, value: row.value, headers: row.headers, timestamp: row.timestamp, size: row.key.length + (row.value?.length ?? 0) }
  const item = new WorkItem('record', state, record, undefined, row.key, record.size)
  item.parkedId = row.id
  item.token = token
  item.expect = { status: 'released', token }
  if (row.seq !== null) item.seq = row.seq
  return Object.assign(item, extra)
}

/** Runs a `replay` or `gap-expiry` item. */
export async function runKeyWork(ctx: ConsumerContext, item: Item): Promise<Outcome> {
  const entry = item.state.keys.get(item.schedulingKey!)
  if (!entry || entry.token !== item.token) {
    if (entry) entry.busy = false
    return 'done'
  }
  try {
    if (item.kind === 'replay') return entry.status === 'released' ? await replayKey(ctx, item.state, entry, item.token) : 'done'
    return entry.status === 'gap' ? await expireGap(ctx, item.state, entry, item.token) : 'done'
  } finally {
    entry.busy = false
    // The key's state was reloaded meanwhile (a write found the database ahead of this owner's memory): go on
    // from what the database holds — a release under another token replays now, a gap is checked again.
    const now = item.state.keys.get(item.schedulingKey!)
    if (now && now !== entry) {
      now.busy = false
      if (now.status === 'released') markReleased(ctx, item.state, now.key, now.token)
    }
  }
}

/**
 * A write of this lane item was refused because the key is no longer in the state this owner remembered
 * (rehearsal finding F5): reload it from the database, so the owner acts on what is there instead of
 * leaving its records waiting behind a state that no longer exists.
 */
async function reload(ctx: ConsumerContext, state: PartitionState, key: Buffer): Promise<Outcome> {
  return (await refresh(ctx, state, key)) === CANCELLED ? 'abandoned' : 'done'
}

/**
 * Replays a released key's stored records in order, each through the full attempt path. One that fails
 * becomes the key's new head (parked again, the rest stay behind it); with sequences, a missing sequence
 * turns the key into a gap key again. When none is left the key is forgotten and flows again.
 */
async function replayKey(ctx: ConsumerContext, state: PartitionState, entry: KeyEntry, token: string): Promise<Outcome> {
  const o = ctx.options
  const key = entry.key
  const sk = schedulingKey(key)!
  let replayed = 0
  for (;;) {
    const rows = await withState(ctx, state, 'reading stored records', () => ctx.store!.records(o.groupId, state.topic, key, 100))
    if (rows === CANCELLED) return 'abandoned'
    if (rows.length === 0) {
      const finished = await fencedWrite(ctx, state, 'finishing a release', (f) => ctx.store!.finishRelease(f, o.groupId, state.topic, key, token))
      if (finished === CANCELLED) return 'abandoned'
      if (finished === 'records-left') continue
      if (finished === 'conflict') return reload(ctx, state, key) // another release, head or gap took over
      state.keys.delete(sk)
      ctx.metrics.keyReleased(state.topic)
      ctx.log.info({ topic: state.topic, partition: state.partition, replayed }, 'parked key released')
      emit(ctx, 'released', { topic: state.topic, partition: state.partition, key, replayed })
      crashPoint('release.after-finish')
      return 'done'
    }
    for (const row of rows) {
      if (o.sequence && row.seq !== null) {
        const step = replayStep(row.seq, state.lastSeq.get(sk), { firstSequence: o.sequence.firstSequence })
        if (step.kind === 'duplicate') {
          const gone = await fencedWrite(ctx, state, 'dropping a duplicate stored record', (f) => ctx.store!.replayed(f, o.groupId, { topic: state.topic, partition: state.partition, key, id: row.id, releaseToken: token }))
          if (gone === CANCELLED) return 'abandoned'
          // Not released by this token any more (another release, head or gap took over): reading the rows
          // again would find the same one and loop; go on from the key's state in the database.
          if (gone === 'conflict') return reload(ctx, state, key)
          ctx.metrics.duplicateSkipped(state.topic)
          if (listened(ctx, 'duplicate')) emit(ctx, 'duplicate', { topic: state.topic, partition: state.partition, offset: row.offset, key, seq: row.seq })
          entry.records = Math.max(0, entry.records - 1)
          continue
        }
        if (step.kind === 'gap') {
          const gapToken = randomUUID()
          const reopened = await fencedWrite(ctx, state, 'reopening a sequence gap', (f) => ctx.store!.reopenGap(f, o.groupId, state.topic, key, token, gapToken, step.from))
          if (reopened === CANCELLED) return 'abandoned'
          if (reopened === 'conflict') return reload(ctx, state, key)
          Object.assign(entry, { status: 'gap', token: gapToken, headOffset: -1, gapFrom: step.from, gapSince: Date.now(), verified: true })
          delete entry.alertedAt
          ctx.log.info({ topic: state.topic, partition: state.partition, missing: step.from, replayed }, 'replay stopped at a sequence gap: the key waits for the missing sequence')
          return 'done'
        }
      }
      if (!(await takeSlot(ctx, state.waits.signal))) return 'abandoned'
      const outcome = await processRecord(ctx, storedItem(state, row, token))
      if (outcome === 'abandoned') return 'abandoned'
      replayed++
      // It failed again (the key's new head), or its removal found the key in another state (reloaded).
      if (state.keys.get(sk) !== entry || entry.status !== 'released' || entry.token !== token) return 'done'
      entry.records = Math.max(0, entry.records - 1)
    }
  }
}

/**
 * A gap waited `sequence.timeoutMs`: `hold` alerts (again every timeoutMs); `skip` records the missing
 * range as skipped and replays what waits; `dead-letter` sends the first stored record to the DLQ
 * (LL_SEQUENCE_GAP) and parks the key behind it, the rest waiting for an operator.
 */
async function expireGap(ctx: ConsumerContext, state: PartitionState, entry: KeyEntry, token: string): Promise<Outcome> {
  const seq = ctx.options.sequence!
  const key = entry.key
  const rows = await withState(ctx, state, 'reading a gap key\'s first stored record', () => ctx.store!.records(ctx.options.groupId, state.topic, key, 1))
  if (rows === CANCELLED) return 'abandoned'
  const first = rows[0]
  const from = entry.gapFrom ?? 0
  const lastSeq = state.lastSeq.get(schedulingKey(key)!)
  if (gapFilled(entry.gapFrom, lastSeq) || (first !== undefined && first.seq === from)) {
    // Rehearsal finding F5: the missing sequence was handled already, or is stored behind the key itself;
    // waiting would hold the key's records forever. Close the gap as filled and replay what waits, in order
    // (what is at or below the last handled sequence is dropped as a duplicate).
    const closed = await fencedWrite(ctx, state, 'closing a filled sequence gap', (f) => ctx.store!.closeGap(f, ctx.options.groupId, { topic: state.topic, partition: state.partition, key, token }))
    if (closed === CANCELLED) return 'abandoned'
    if (closed === 'conflict') return reload(ctx, state, key)
    ctx.log.warn({ topic: state.topic, partition: state.partition, key: key.toString('utf8'), missing: from, lastSeq, firstStored: first?.seq ?? null }, 'a sequence gap whose missing sequence was already handled or stored was closed; replaying what waits')
    Object.assign(entry, { status: 'released' })
    delete entry.gapFrom
    delete entry.gapSince
    return replayKey(ctx, state, entry, token)
  }
  // Queued only to be checked (an owner checks each gap once, at once): the policy waits for the timeout.
  const checkedEarly = entry.verified !== true && Date.now() - Math.max(entry.gapSince ?? 0, entry.alertedAt ?? 0) < seq.timeoutMs
  entry.verified = true
  if (checkedEarly) return 'done'
  const missing = [from, first?.seq === null || first?.seq === undefined ? from : first.seq - 1] as const
  const waitingMs = Date.now() - (entry.gapSince ?? Date.now())
  ctx.metrics.gap(state.topic, seq.policy)
  ctx.log.warn({ topic: state.topic, partition: state.partition, key: key.toString('utf8'), missing, policy: seq.policy, records: entry.records, waitingMs }, 'sequence gap timed out')
  emit(ctx, 'sequence-gap', { topic: state.topic, partition: state.partition, key, missing, policy: seq.policy, records: seq.policy === 'hold' ? 0 : entry.records, ...(seq.policy === 'hold' ? { waitingMs } : {}) })
  if (seq.policy === 'hold' || !first) {
    entry.alertedAt = Date.now()
    return 'done'
  }
  if (seq.policy === 'skip') {
    const closed = await fencedWrite(ctx, state, 'skipping a sequence gap', (f) => ctx.store!.closeGap(f, ctx.options.groupId, { topic: state.topic, partition: state.partition, key, token, skip: 'skip' }))
    if (closed === CANCELLED) return 'abandoned'
    if (closed === 'conflict') return reload(ctx, state, key)
    crashPoint('gap.after-expire')
    if (closed.firstStored !== null) state.lastSeq.set(schedulingKey(key)!, closed.firstStored - 1)
    // Released under the gap's token: this lane item goes on as the key's replay.
    Object.assign(entry, { status: 'released' })
    delete entry.gapFrom
    delete entry.gapSince
    return replayKey(ctx, state, entry, token)
  }
  // dead-letter: the first stored record becomes the key's head in the DLQ, written ahead like any head.
  const forced = new LifelineError('LL_SEQUENCE_GAP', `sequence ${missing[0]}..${missing[1]} of this key never arrived within ${seq.timeoutMs} ms; record seq ${first.seq} dead-lettered (policy dead-letter)`, { retriable: false })
  if (!(await takeSlot(ctx, state.waits.signal))) return 'abandoned'
  const outcome = await processRecord(ctx, storedItem(state, first, token, { forced, expect: { status: 'gap', token }, skip: { from: missing[0], to: missing[1], policy: 'dead-letter' } }))
  if (outcome === 'done') crashPoint('gap.after-expire')
  return outcome
}
