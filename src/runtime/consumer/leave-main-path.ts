/**
 * A record whose attempts here failed leaves the main path: to the next retry tier when the failure is
 * retriable and a tier is left, else to the DLQ.
 *
 * With parking the move is write-ahead (docs/ordering.md, "The protocol"):
 * 1. the key is parked (or its head moved) with a **new token** and the outgoing copy stored as pending —
 *    a compare-and-set on the state the key was expected in, fenced by this member's epoch;
 * 2. the copy is produced (retried until acknowledged: nothing is skipped);
 * 3. the copy is marked placed;
 * 4. the record that left completes (its offset becomes committable).
 * A crash after 1 leaves the copy in the database (the partition's next owner produces it); a crash after
 * 2 can leave two copies with one token (whichever runs first moves the head; the other is stale). Copies of
 * earlier heads carry older tokens and are skipped. At most one copy of a head can ever run.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { LifelineError } from '../../errors.js'
import type { ProduceAck, ProduceRecord } from '../../kafka/types.js'
import type { OutgoingCopy, PendingCopy } from '../../ordering/protocol-store.js'
import { findRecord } from '../../kafka/scan.js'
import { contextFrom, endFailed, startSendSpan, traceIdOf, withTraceHeaders } from '../../trace/tracing.js'
import type { Span } from '@opentelemetry/api'
import { crashPoint } from '../../util/crash-points.js'
import { sleep } from '../../util/sleep.js'
import { MASKED_HEADER } from '../../failure/masking.js'
import { delayFor } from '../../retry/backoff.js'
import type { Classification } from '../../retry/classify.js'
import { deadLetterRecord, failureContext } from '../../failure/dead-letter.js'
import { decodeFailureHeaders } from '../../failure/headers.js'
import { schedulingKey } from '../key-scheduler.js'
import { Message } from '../message.js'
import type { LifelineMessage } from '../options.js'
import { RetryHeaders, tierRecord } from '../../failure/tier-record.js'
import { emit, reportError } from './events.js'
import { storeBehind } from './parking.js'
import { fencedWrite, retrying } from './state-writes.js'
import { batchesOf } from './state-batches.js'
import { CANCELLED, tpKey, type ConsumerContext, type Item, type Outcome, type PartitionState } from './context.js'

/** Stack frames from the runtime's own folder down are the runtime's, not the handler's (see userFrames). */
const RUNTIME_DIR = fileURLToPath(new URL('.', import.meta.url))

export interface Failure {
  classification: Classification
  error: unknown
}

/** The handler's message; a retry-tier record's attempt counts the attempts made before its tier. */
export function message(item: Item, value: unknown, attempt: number): LifelineMessage<unknown> {
  return new Message(item.record, value, attempt + (item.tier?.attempts ?? 0), item.state.handlers.signal)
}

export async function leaveMainPath(ctx: ConsumerContext, item: Item, value: unknown, failure: Failure, attemptsHere: number, firstFailureAt: number, lastFailureAt: number): Promise<Outcome> {
  const o = ctx.options
  const origin = item.record
  const state = item.state
  const attempts = (item.tier?.attempts ?? 0) + attemptsHere
  const nextTier = (item.tier?.tier ?? 0) + 1
  const toTier = o.tierDelays.length > 0 && failure.classification.kind === 'retriable' && nextTier <= o.tierDelays.length && !item.noPark
  // A tier record whose headers are unreadable keeps its own coordinates; it goes to its source's DLQ.
  const target = toTier ? o.tierTopic(origin.topic, nextTier) : o.dlqTopic(state.tierOf?.source ?? origin.topic)
  const location = toTier ? `retry:${nextTier}` : 'dlq'
  const context = failureContext(origin, o.groupId, o.service, { classification: failure.classification, attempts, firstFailureAt: item.tier?.firstFailureAt ?? firstFailureAt, lastFailureAt }, RUNTIME_DIR)
  const parks = ctx.parking && origin.key !== null && !item.noPark && item.expect !== undefined
  // With a state database every DLQ write is written ahead (a head's copy, or a dead letter of its own).
  const aheadOfDlq = !toTier && ctx.store !== undefined && state.epoch !== undefined && (parks || item.source !== undefined)
  const token = parks || aheadOfDlq ? randomUUID() : undefined
  const dueAt = Date.now() + (toTier ? (o.tierDelays[nextTier - 1] as number) : 0)
  const out = toTier ? copyOf(tierRecord(target, origin, context, nextTier, dueAt, token), origin.partition) : deadLetter(ctx, target, origin, context, token)
  // The copy's `send` span, a child of the last attempt's (its context travels on the copy).
  const send = ctx.tracing ? startSendSpan({ topic: out.topic, partition: out.partition, key: out.key }, item.trace ?? contextFrom(origin.headers), [], { 'lifeline.copy': location, 'lifeline.error.code': failure.classification.code }) : undefined
  if (send) out.headers = withTraceHeaders(out.headers, send)
  if (aheadOfDlq) {
    // Where a new owner looks for this copy if this member dies before confirming it.
    const from = await retrying(ctx, state, 'dead-letter', () => ctx.producer!.highWatermark(out.topic, out.partition), (err, tries) => new LifelineError('LL_DEAD_LETTER', `reading the high watermark of ${out.topic}[${out.partition}] failed (try ${tries}); retrying`, { cause: err }))
    if (from === CANCELLED) {
      send?.end()
      return 'abandoned'
    }
    out.from = from
  }
  const hook = toTier || !o.source.onDeadLetter ? undefined : () => runHook(ctx, item, value, failure.error)
  let pending: PendingCopy
  if (parks) {
    const parked = await park(ctx, item, failure, token!, location, out)
    if (parked !== 'parked') {
      send?.setAttribute('lifeline.not-sent', parked === 'done' ? 'the key moved on' : 'cancelled')
      send?.end()
      return parked
    }
    pending = { topic: origin.topic, key: origin.key, token: token!, location, copy: out }
  } else if (aheadOfDlq) {
    const src = item.source!
    const at = { topic: src.topic, partition: src.partition, offset: src.offset }
    const begun = await fencedWrite(ctx, state, 'writing a dead letter ahead', (f) => ctx.store!.beginDeadLetter(f, o.groupId, at, token!, out))
    if (begun === CANCELLED || begun === 'placed') {
      send?.setAttribute('lifeline.not-sent', begun === 'placed' ? 'dead-lettered already' : 'cancelled')
      send?.end()
    }
    if (begun === CANCELLED) return 'abandoned'
    if (begun === 'placed') {
      ctx.log.info({ topic: at.topic, partition: at.partition, offset: at.offset }, 'record delivered again after it was dead-lettered; skipped')
      return 'done'
    }
    // A former owner's unfinished dead letter of this record is completed with its own token and copy.
    pending = begun === 'started' ? { topic: at.topic, key: null, token: token!, location, copy: out, deadLetter: { partition: at.partition, offset: at.offset } } : begun
  } else {
    pending = { topic: origin.topic, key: null, token: token ?? '', location, copy: out }
  }
  // Completing a former owner's pending dead letter: it may be in the DLQ already.
  const written = await writeCopy(ctx, state, pending, parks || aheadOfDlq, hook, pending.token !== token, send)
  if (written === CANCELLED) return 'abandoned'
  if (toTier) {
    ctx.metrics.tierForwarded(origin.topic, nextTier)
    emit(ctx, 'retry-tier', { topic: origin.topic, partition: origin.partition, offset: origin.offset, tier: nextTier, retryTopic: target, dueAt, attempts, errorCode: failure.classification.code })
    ctx.log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, retryTopic: target, dueAt: new Date(dueAt).toISOString(), code: failure.classification.code, attempts, traceId: traceIdOf(send) }, 'record moved to a retry tier')
  }
  return 'done'
}

/**
 * Steps 2-4 of a copy written ahead (or, without `confirm`, a plain produce): produce it unless `scan` finds
 * it already in its topic, run the dead-letter hook, then mark it placed. Shared by a live move and by a
 * new owner completing a former owner's pending copy. CANCELLED when cancelled or fenced.
 */
export async function writeCopy(ctx: ConsumerContext, state: PartitionState, pending: PendingCopy, confirm: boolean, hook: (() => Promise<void>) | undefined, scan = false, span?: Span): Promise<ProduceAck | undefined | typeof CANCELLED> {
  const written = await writeCopySteps(ctx, state, pending, confirm, hook, scan, span)
  if (span) {
    if (written === CANCELLED) endFailed(span, new LifelineError('LL_ABORTED', 'the write was cancelled (revocation, fence or close)'))
    else span.end()
  }
  return written
}

async function writeCopySteps(ctx: ConsumerContext, state: PartitionState, pending: PendingCopy, confirm: boolean, hook: (() => Promise<void>) | undefined, scan: boolean, span: Span | undefined): Promise<ProduceAck | undefined | typeof CANCELLED> {
  const o = ctx.options
  const c = pending.copy
  const dlq = pending.location === 'dlq'
  let ack: ProduceAck | undefined
  if (scan && c.from !== undefined) {
    const found = await retrying(ctx, state, 'dead-letter', () => findRecord({ brokers: o.brokers, config: o.source.kafkaConfig }, { topic: c.topic, partition: c.partition, from: c.from! }, (r) => r.headers.some((h) => h.key === RetryHeaders.token && h.value?.toString('utf8') === pending.token)), (err, tries) => new LifelineError('LL_DEAD_LETTER', `looking for a pending copy in ${c.topic}[${c.partition}] failed (try ${tries}); retrying`, { cause: err }))
    if (found === CANCELLED) return CANCELLED
    if (found) ack = { topic: found.topic, partition: found.partition, offset: found.offset }
  }
  if (!ack) {
    const where = `${c.topic}[${c.partition}]`
    const acks = await retrying(ctx, state, dlq ? 'dead-letter' : 'retry-tier', () => ctx.producer!.send([c]), (err, tries) =>
      dlq ? new LifelineError('LL_DEAD_LETTER', `writing a dead letter to ${where} failed (try ${tries}); retrying`, { cause: err }) : new LifelineError('LL_RETRY_TIER', `writing a record to retry tier ${where} failed (try ${tries}); retrying`, { cause: err }),
    )
    if (acks === CANCELLED) return CANCELLED
    ack = acks[0]!
    span?.setAttribute('messaging.kafka.offset', ack.offset)
  }
  if (confirm) crashPoint(scan ? 'recover.after-produce' : pending.key === null ? 'dlq.after-produce' : 'park.after-produce')
  else if (dlq) crashPoint('dlq.after-produce')
  if (dlq) {
    const failure = decodeFailureHeaders(c.headers)
    ctx.metrics.deadLettered(pending.topic, failure?.errorCode ?? 'UNKNOWN')
    emit(ctx, 'dead-letter', { topic: pending.topic, partition: failure?.originPartition ?? c.partition, offset: failure?.originOffset ?? -1, dlqTopic: c.topic, dlqOffset: ack.offset, errorCode: failure?.errorCode ?? 'UNKNOWN', attempts: failure?.attempts ?? 0 })
    ctx.log.info({ topic: pending.topic, partition: failure?.originPartition, offset: failure?.originOffset, dlqTopic: c.topic, code: failure?.errorCode, attempts: failure?.attempts, traceId: traceIdOf(span) }, 'record dead-lettered')
    if (hook) await hook()
  }
  if (!confirm) return ack
  const at = pending.deadLetter
  // A head's mark goes with the other marks of this partition in flight (crash point park.after-placed, once per batch).
  const placed = await fencedWrite(ctx, state, 'marking a copy placed', (f) => (at ? ctx.store!.deadLetterPlaced(f, o.groupId, { topic: pending.topic, ...at }, pending.token) : batchesOf(ctx, state).placed.submit({ topic: pending.topic, key: pending.key!, token: pending.token })))
  if (placed === CANCELLED) return CANCELLED
  return ack
}

/**
 * Step 1: parks the key behind this record (or moves its head here) with the copy stored as pending.
 * 'parked' to go on and produce; 'done' when the record needs nothing more (a stale tier copy, or stored
 * behind a key that got another head meanwhile); 'abandoned' when cancelled or fenced.
 */
async function park(ctx: ConsumerContext, item: Item, failure: Failure, token: string, location: string, out: OutgoingCopy): Promise<'parked' | 'done' | 'abandoned'> {
  const origin = item.record
  // With the other head moves of this partition in flight, in one statement (crash point park.after-state, once per batch).
  const moved = await fencedWrite(ctx, item.state, 'parking a key', () =>
    batchesOf(ctx, item.state).moves.submit({
      topic: origin.topic, partition: origin.partition, key: origin.key!, expect: item.expect!, token, headOffset: origin.offset, location,
      errorCode: failure.classification.code, errorMessage: failure.classification.message, copy: out,
      ...(item.parkedId === undefined ? {} : { fromParkedRecord: item.parkedId }),
      ...(item.seq === undefined ? {} : { seq: item.seq }),
      ...(item.skip === undefined ? {} : { skip: item.skip }),
    }),
  )
  if (moved === CANCELLED) return 'abandoned'
  if (moved === 'conflict') {
    if (item.tier) {
      // Released or moved on while this copy ran (an operator's release, a stale copy): its outcome is moot.
      ctx.metrics.staleRetry(origin.topic)
      ctx.log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, tier: item.tier.tier }, 'retry-tier head failed after its key moved on; its outcome is dropped')
      return 'done'
    }
    if (item.parkedId !== undefined) return 'abandoned' // the release this replay ran under is over: the row stays
    // The key got state meanwhile: keep the record behind it.
    const stored = await storeBehind(ctx, item, undefined)
    return stored === 'done' ? 'done' : 'abandoned'
  }
  // The owner of the key's partition (this member, unless the head moved in a tier) learns the new head.
  const owner = ctx.partitions.get(tpKey(origin.topic, origin.partition))
  if (owner && !owner.tierOf) {
    const sk = schedulingKey(origin.key)!
    const entry = owner.keys.get(sk)
    if (item.seq !== undefined) owner.lastSeq.set(sk, Math.max(owner.lastSeq.get(sk) ?? -1, item.seq))
    if (entry) {
      entry.status = 'parked'
      entry.token = token
      entry.headOffset = origin.offset
      delete entry.gapFrom
      delete entry.gapSince
      if (item.parkedId !== undefined) entry.records = Math.max(0, entry.records - 1)
    } else {
      owner.keys.set(sk, { key: origin.key!, status: 'parked', token, headOffset: origin.offset, records: 0, parkedAt: Date.now(), busy: false })
      ctx.metrics.keyParked(origin.topic)
    }
  }
  const again = item.tier !== undefined || item.parkedId !== undefined || item.expect?.status !== 'none'
  ctx.log.info({ topic: origin.topic, partition: origin.partition, offset: origin.offset, location }, again ? 'parked key: head moved' : 'key parked')
  emit(ctx, 'parked', { topic: origin.topic, partition: origin.partition, key: origin.key!, offset: origin.offset, location })
  return 'parked'
}

/** The DLQ record, with the masking policy applied to its value, error message, stack and headers, and the head's park token. */
function deadLetter(ctx: ConsumerContext, target: string, origin: Item['record'], context: ReturnType<typeof failureContext>, token: string | undefined): OutgoingCopy {
  const spring = ctx.options.springHeaders
  const masker = ctx.options.masker
  let out
  let masked = false
  if (!masker?.covers(origin.topic)) out = deadLetterRecord(target, origin, context, { spring })
  else {
    // The key too, under a policy's `key: 'encrypt'` (deterministic: the processor decrypts it to replay and release).
    const m = masker.mask(origin.topic, { value: origin.value, errorMessage: context.errorMessage, errorStack: context.errorStack, headers: origin.headers, key: origin.key })
    out = deadLetterRecord(target, { ...origin, key: m.key === undefined ? origin.key : m.key, value: m.value, headers: m.headers }, { ...context, errorMessage: m.errorMessage, errorStack: m.errorStack }, { spring })
    masked = m.masked
  }
  const copy = copyOf(out, origin.partition)
  if (masked) copy.headers.push({ key: MASKED_HEADER, value: Buffer.from('v1') })
  if (token !== undefined) copy.headers.push({ key: RetryHeaders.token, value: Buffer.from(token) })
  return copy
}

/** A tier or DLQ record as the copy stored ahead of its produce (Buffers, an explicit partition). */
function copyOf(r: ProduceRecord, partition: number): OutgoingCopy {
  const bytes = (v: Buffer | string | null | undefined) => (v === null || v === undefined ? null : typeof v === 'string' ? Buffer.from(v) : v)
  return { topic: r.topic, partition: r.partition ?? partition, key: bytes(r.key), value: bytes(r.value), headers: [...(r.headers ?? [])], ...(r.timestamp === undefined ? {} : { timestamp: r.timestamp }) }
}

/** Runs `onDeadLetter` after the DLQ write, retried up to maxAttempts; the record is safe in the DLQ either way. */
async function runHook(ctx: ConsumerContext, item: Item, value: unknown, error: unknown): Promise<void> {
  const hook = ctx.options.source.onDeadLetter!
  for (let attempt = 1; ; attempt++) {
    try {
      await hook(message(item, value, attempt), error)
      return
    } catch (err) {
      if (attempt >= ctx.options.maxAttempts) {
        reportError(ctx, new LifelineError('LL_DEAD_LETTER', `onDeadLetter failed ${attempt} times for ${item.record.topic}[${item.record.partition}]@${item.record.offset}; giving up on the hook (the record is in the DLQ)`, { cause: err }), 'onDeadLetter hook failed')
        return
      }
      try {
        await sleep(delayFor(ctx.options.backoff, attempt, err), item.state.waits.signal)
      } catch {
        return
      }
    }
  }
}
