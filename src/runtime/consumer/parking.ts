/**
 * Parked keys and sequence gaps in the runtime: what happens to a record before its handler (preflight),
 * what a success does to its key, releases (noticed or made here), replaying a released key's records,
 * recovering pending copies, and gap expiry. Every state write goes through the fenced protocol store
 * (src/ordering/protocol-store.ts); docs/ordering.md states the protocol and the invariant of each step.
 *
 * The owner of a source partition is the only writer of its keys' transitions out of `released` and `gap`
 * and into `parked` from the main path, and it runs them in the key's lane, so its in-memory view of a key
 * is never behind in the direction that matters: a key it thinks parked may have been released elsewhere
 * (noticed by the release poll), never the other way round.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { LifelineError } from '../../errors.js'
import type { KeyRow } from '../../ordering/protocol-store.js'
import { decide, type KeyView } from '../../ordering/key-rules.js'
import { crashPoint } from '../../util/crash-points.js'
import { schedulingKey } from '../key-scheduler.js'
import { RetryHeaders } from '../../failure/tier-record.js'
import { emit, listened, reportError } from './events.js'
import { enqueue, isCurrent, sourceStates } from './partitions.js'
import { noteSequence, sequenceOf } from './sequencing.js'
import { fencedWrite, retrying } from './state-writes.js'
import { batchesOf } from './state-batches.js'
import { CANCELLED, tpKey, WorkItem, type ConsumerContext, type Item, type KeyEntry, type PartitionState } from './context.js'

/** Header the DLQ processor's redrive sets; with `lifeline.park.token` it marks a redriven head. */
const REPLAY_ID_HEADER = 'lifeline.replay.id'

export function entryFrom(row: KeyRow): KeyEntry {
  return {
    key: row.key,
    status: row.status,
    token: row.token,
    headOffset: row.headOffset,
    records: row.records,
    parkedAt: row.parkedAt.getTime(),
    ...(row.gapFrom === null ? {} : { gapFrom: row.gapFrom }),
    ...(row.gapSince === null ? {} : { gapSince: row.gapSince.getTime() }),
    busy: false,
  }
}

const view = (e: KeyEntry | undefined): KeyView | undefined => e && { status: e.status, token: e.token, headOffset: e.headOffset, ...(e.gapFrom === undefined ? {} : { gapFrom: e.gapFrom }) }

/** Whether the record's key can be parked at all: parking is on, it has a key (`record.key!` past this check), and nothing exempted it. */
const parksKey = (ctx: ConsumerContext, item: Item): boolean => ctx.parking && item.record.key !== null && !item.noPark

function headerText(item: Item, name: string): string | undefined {
  const headers = item.record.headers
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]!.key === name) return headers[i]!.value?.toString('utf8')
  return undefined
}

/** The park token of a record the DLQ processor redrove to its origin topic (a head coming back). */
function redriveToken(item: Item): string | undefined {
  if (item.tier || item.parkedId !== undefined || headerText(item, REPLAY_ID_HEADER) === undefined) return undefined
  return headerText(item, RetryHeaders.token)
}

/** Reloads a key's state from the database into its owner's memory (a write found it in another state). */
export async function refresh(ctx: ConsumerContext, state: PartitionState, key: Buffer): Promise<KeyEntry | undefined | typeof CANCELLED> {
  const row = await retrying(ctx, state, 'state', () => ctx.store!.keyRow(ctx.options.groupId, state.topic, key), (err, tries) => new LifelineError('LL_STATE', `reading the state of a key failed (try ${tries}); retrying`, { cause: err }))
  if (row === CANCELLED) return CANCELLED
  const sk = schedulingKey(key)!
  if (!row) {
    state.keys.delete(sk)
    return undefined
  }
  const entry = { ...entryFrom(row), busy: state.keys.get(sk)?.busy ?? false }
  state.keys.set(sk, entry)
  return entry
}

/**
 * What happens to a record before its handler. 'run' (with `item.expect` / `item.onSuccess` set for what a
 * failure or a success does to its key), 'done' (skipped or stored: its offset completes), or CANCELLED.
 */
export async function preflight(ctx: ConsumerContext, item: Item): Promise<'run' | 'done' | typeof CANCELLED> {
  const r = item.record
  if (!parksKey(ctx, item)) return 'run'
  if (item.tier) return tierPreflight(ctx, item)
  if (item.parkedId !== undefined) return 'run' // a replay: its expectation was set by the replay
  const state = item.state
  const sk = item.schedulingKey!
  const token = redriveToken(item)
  // A record whose sequence is unreadable (forced to the DLQ) is placed by its offset, like an unsequenced one.
  const seq = item.forced === undefined ? sequenceOf(ctx, item) : undefined
  for (let fresh = false; ; fresh = true) {
    let entry = state.keys.get(sk)
    if (!fresh && token !== undefined && entry && entry.token !== token) {
      // The head moved in a retry tier on another member since this owner last looked.
      const row = await refresh(ctx, state, r.key!)
      if (row === CANCELLED) return CANCELLED
      entry = row
    }
    const sequenced = seq !== undefined && item.forced === undefined
    const verdict = decide(view(entry), { offset: r.offset, ...(token === undefined ? {} : { redriveToken: token }), ...(sequenced ? { seq } : {}) }, state.lastSeq.get(sk), { firstSequence: ctx.options.sequence?.firstSequence })
    switch (verdict.kind) {
      case 'run':
        item.expect = { status: 'none' }
        return 'run'
      case 'fills-gap':
        item.expect = { status: 'gap', token: entry!.token }
        item.onSuccess = { kind: 'close-gap', token: entry!.token }
        return 'run'
      case 'run-as-head':
        item.expect = { status: 'parked', token: entry!.token }
        item.onSuccess = { kind: 'release-head', token: entry!.token }
        log(ctx, item, "redriven head: running it as its key's head")
        return 'run'
      case 'skip':
        if (verdict.why !== 'ran-before-head') ctx.metrics.staleRetry(r.topic)
        log(ctx, item, verdict.why === 'redelivered-head' ? 'head delivered again: its copy in the retry tier or the DLQ is the runnable one; skipped' : verdict.why === 'released-head' ? 'redriven head delivered again after its key was released; skipped' : 'record below its parked head delivered again; skipped')
        return 'done'
      case 'duplicate':
        return duplicateOrStraggler(ctx, item, seq!)
      case 'store':
      case 'open-gap': {
        const stored = await storeBehind(ctx, item, verdict.kind === 'open-gap' ? { from: verdict.from, token: randomUUID() } : undefined)
        if (stored !== 'again') return stored
        // The key's state in the database differs from what its owner remembered: it was reloaded, decide again.
        if (fresh) return CANCELLED
      }
    }
  }
}

function log(ctx: ConsumerContext, item: Item, message: string): void {
  const r = item.record
  ctx.log.info({ topic: r.topic, partition: r.partition, offset: r.offset, seq: item.seq }, message)
}

/**
 * Whether preflight may wait for the state database: a retry-tier copy's head check, a key with state (a
 * store behind its head, a refresh), a redriven head's token, a sequence gap to open. The caller gives its
 * handler slot back meanwhile, so records of other keys run while these wait on a round trip.
 */
export function preflightMayWait(ctx: ConsumerContext, item: Item): boolean {
  if (!parksKey(ctx, item) || item.parkedId !== undefined) return false
  if (item.tier) return item.tier.token !== undefined
  return ctx.options.sequence !== undefined || item.state.keys.has(item.schedulingKey!) || redriveToken(item) !== undefined
}

/** A tier copy runs only while it is its key's parked head; any other copy is stale. */
async function tierPreflight(ctx: ConsumerContext, item: Item): Promise<'run' | 'done' | typeof CANCELLED> {
  const r = item.record
  const token = item.tier!.token
  if (token === undefined) return 'run' // written without parking (ordering 'none')
  const current = await retrying(ctx, item.state, 'state', () => batchesOf(ctx, item.state).heads.submit({ topic: r.topic, key: r.key!, token }), (err, tries) => new LifelineError('LL_STATE', `checking a retry record against its parked key failed (try ${tries}); retrying`, { cause: err }))
  if (current === CANCELLED) return CANCELLED
  if (current) {
    item.expect = { status: 'parked', token }
    item.onSuccess = { kind: 'release-head', token }
    return 'run'
  }
  ctx.metrics.staleRetry(r.topic)
  ctx.log.info({ topic: item.source?.topic, partition: r.partition, offset: r.offset, tier: item.tier!.tier }, 'stale retry-tier record skipped: its key is no longer parked behind it')
  return 'done'
}

/** At or below the key's last handled sequence: a duplicate, or a late straggler of a range a gap policy skipped. */
async function duplicateOrStraggler(ctx: ConsumerContext, item: Item, seq: number): Promise<'run' | 'done' | typeof CANCELLED> {
  const r = item.record
  const skipped = await retrying(ctx, item.state, 'state', () => ctx.store!.isSkipped(ctx.options.groupId, r.topic, r.key!, seq), (err, tries) => new LifelineError('LL_STATE', `looking up skipped sequences failed (try ${tries}); retrying`, { cause: err }))
  if (skipped === CANCELLED) return CANCELLED
  if (skipped) {
    // Never dropped silently: it goes to the DLQ (without parking its key: the key moved past it long ago).
    item.forced = new LifelineError('LL_SEQUENCE_LATE', `sequence ${seq} of this key arrived after its gap was skipped; dead-lettered (applying it now would break the key's order)`, { retriable: false })
    item.noPark = true
    ctx.metrics.straggler(r.topic)
    return 'run'
  }
  countDuplicate(ctx, item, seq)
  return 'done'
}

function countDuplicate(ctx: ConsumerContext, item: Item, seq: number): void {
  const r = item.record
  ctx.metrics.duplicateSkipped(r.topic)
  ctx.log.debug({ topic: r.topic, partition: r.partition, offset: r.offset, seq }, 'duplicate sequence skipped')
  if (listened(ctx, 'duplicate')) emit(ctx, 'duplicate', { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key!, seq })
}

/**
 * Stores the record behind its key (opening a gap first with `openGap`); its offset then completes.
 * 'again' when the database holds another state for the key than its owner remembered (reloaded: decide again).
 */
export async function storeBehind(ctx: ConsumerContext, item: Item, openGap: { from: number; token: string } | undefined): Promise<'done' | 'again' | typeof CANCELLED> {
  const r = item.record
  const state = item.state
  const sk = item.schedulingKey!
  const stored = await fencedWrite(ctx, state, 'storing a record behind its key', (f) =>
    ctx.store!.store(f, ctx.options.groupId, { topic: r.topic, partition: r.partition, key: r.key!, offset: r.offset, seq: item.seq, value: r.value, headers: r.headers, timestamp: r.timestamp }, openGap),
  )
  if (stored === CANCELLED) return CANCELLED
  if (stored === 'conflict') {
    const fresh = await refresh(ctx, state, r.key!)
    return fresh === CANCELLED ? CANCELLED : 'again'
  }
  if (stored === 'duplicate') {
    countDuplicate(ctx, item, item.seq!)
    return 'done'
  }
  let entry = state.keys.get(sk)
  if (!entry && openGap) {
    entry = { key: r.key!, status: 'gap', token: openGap.token, headOffset: -1, records: 0, parkedAt: Date.now(), gapFrom: openGap.from, gapSince: Date.now(), busy: false, verified: true }
    state.keys.set(sk, entry)
    ctx.log.info({ topic: r.topic, partition: r.partition, offset: r.offset, seq: item.seq, missing: openGap.from }, 'sequence gap: record stored until the missing sequence arrives')
  }
  if (stored === 'stored') {
    if (entry) entry.records++
    ctx.metrics.recordParked(r.topic)
  }
  // Also when it was stored already: a former owner may have stored it and died before saying so.
  if (listened(ctx, 'record-parked')) emit(ctx, 'record-parked', { topic: r.topic, partition: r.partition, key: r.key!, offset: r.offset, again: stored === 'exists' })
  crashPoint(openGap ? 'gap.after-hold' : 'follow.after-store')
  return 'done'
}

/**
 * After a successful attempt: a replayed record leaves the database, a head releases its key, the missing
 * sequence of a gap closes it. False when cancelled (the record stays unfinished).
 */
export async function afterSuccess(ctx: ConsumerContext, item: Item): Promise<boolean> {
  const r = item.record
  const state = item.state
  if (item.seq !== undefined && !state.tierOf && r.key !== null) noteSequence(state, item.schedulingKey!, r.key, item.seq)
  if (item.parkedId !== undefined) {
    crashPoint('replay.after-handler')
    const done = await fencedWrite(ctx, state, 'removing a replayed record', (f) =>
      ctx.store!.replayed(f, ctx.options.groupId, { topic: r.topic, partition: r.partition, key: r.key!, id: item.parkedId!, releaseToken: item.token!, ...(item.seq === undefined ? {} : { seq: item.seq }) }),
    )
    if (done === CANCELLED) return false
    // Not released by the replay's token any more: reload the key (its replay stops and goes on from there).
    if (done === 'conflict' && (await refresh(ctx, state, r.key!)) === CANCELLED) return false
    crashPoint('replay.after-delete')
    return true
  }
  const effect = item.onSuccess
  if (!effect || r.key === null) return true
  if (effect.kind === 'release-head') {
    if (item.tier) crashPoint('tier.after-handler')
    const released = await fencedWrite(ctx, state, 'releasing a key whose head succeeded', (f) => ctx.store!.releaseHead(f, ctx.options.groupId, r.topic, r.key!, effect.token, item.tier ? 'head-succeeded' : 'redriven-head-succeeded'))
    if (released === CANCELLED) return false
    if (item.tier) crashPoint('tier.after-release')
    if (released !== 'stale') {
      const owner = ctx.partitions.get(tpKey(r.topic, released.partition))
      if (owner && owner.ready && !owner.revoking) markReleased(ctx, owner, r.key, effect.token)
    }
    return true
  }
  const closed = await fencedWrite(ctx, state, 'closing a sequence gap', (f) => ctx.store!.closeGap(f, ctx.options.groupId, { topic: r.topic, partition: r.partition, key: r.key!, token: effect.token }))
  if (closed === CANCELLED) return false
  if (closed !== 'conflict') markReleased(ctx, state, r.key, effect.token)
  return true
}

/** The key was released (its head succeeded, was redriven or discarded, its gap closed): replay what waits, in its lane. */
export function markReleased(ctx: ConsumerContext, state: PartitionState, key: Buffer, token: string): void {
  const sk = schedulingKey(key)!
  let entry = state.keys.get(sk)
  if (!entry) {
    entry = { key, status: 'released', token, headOffset: -1, records: 0, parkedAt: Date.now(), busy: false }
    state.keys.set(sk, entry)
  }
  entry.status = 'released'
  entry.token = token
  delete entry.gapFrom
  delete entry.gapSince
  if (entry.busy) return
  entry.busy = true
  enqueue(ctx, laneItem(state, key, 'replay', token))
  ctx.pump()
}

/** A replay or gap-expiry item: runs in the key's lane, so it is serialised with the key's records. */
export function laneItem(state: PartitionState, key: Buffer, kind: 'replay' | 'gap-expiry', token: string): Item {
  const item = new WorkItem(kind, state, { topic: state.topic, partition: state.partition, offset: -1, key, value: null, headers: [], timestamp: 0, size: 0 }, undefined, key, 0)
  item.token = token
  return item
}

/** Looks for keys released elsewhere (a retry tier on another member, an operator) in the assigned partitions. */
export async function pollReleases(ctx: ConsumerContext): Promise<void> {
  const byTopic = new Map<string, number[]>()
  for (const s of sourceStates(ctx)) if (s.ready && !s.revoking) byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s.partition])
  for (const [topic, parts] of byTopic) {
    for (const { partition, key, token } of await ctx.store!.releasedKeys(ctx.options.groupId, topic, parts)) {
      const s = ctx.partitions.get(tpKey(topic, partition))
      if (s && s.ready && !s.revoking && !s.keys.get(schedulingKey(key)!)?.busy) markReleased(ctx, s, key, token)
    }
  }
}

/** A gap from `gapFrom` is filled already when its missing sequence is at or below the key's last handled one. */
export const gapFilled = (gapFrom: number | undefined, lastSeq: number | undefined): boolean => gapFrom !== undefined && lastSeq !== undefined && gapFrom <= lastSeq

/**
 * Queues a gap-expiry item for every gap key of the assigned partitions whose wait reached `timeoutMs` (and,
 * under `hold`, whose last alert is that old): the policy is applied in the key's lane.
 */
export function expireGaps(ctx: ConsumerContext): void {
  const seq = ctx.options.sequence
  if (!seq) return
  const now = Date.now()
  for (const state of sourceStates(ctx)) {
    if (!state.ready || state.revoking) continue
    for (const [sk, entry] of state.keys) {
      if (entry.status !== 'gap' || entry.busy || entry.gapSince === undefined) continue
      // A gap whose missing sequence was handled already (rehearsal finding F5) waits for nothing: at once.
      // A gap this owner has not checked yet against its stored records is checked at once too.
      if (entry.verified === true && !gapFilled(entry.gapFrom, state.lastSeq.get(sk)) && now - Math.max(entry.gapSince, entry.alertedAt ?? 0) < seq.timeoutMs) continue
      entry.busy = true
      enqueue(ctx, laneItem(state, entry.key, 'gap-expiry', entry.token))
    }
  }
  ctx.pump()
}

/** Drops a key from its owner's memory once it has no state left (drained). */
export function forget(ctx: ConsumerContext, state: PartitionState, key: Buffer): void {
  if (isCurrent(ctx, state)) state.keys.delete(schedulingKey(key)!)
}

export function reportPollFailure(ctx: ConsumerContext, err: unknown): void {
  reportError(ctx, new LifelineError('LL_STATE', 'looking for released keys failed; retrying at the next poll', { cause: err }), 'release poll failed')
}
