/**
 * One record's attempts: preflight (parked keys, sequences, stale copies), the handler with in-place
 * retries and backoff (holding a handler slot only while the handler runs), the breaker's gate, and —
 * when the attempts here are spent — leaving the main path.
 *
 * @module
 */
import { delayFor, outageBackoffMs, retryDecision } from '../../retry/backoff.js'
import { classifyError, isDatabaseOutage, type Classification } from '../../retry/classify.js'
import { wrapDecode } from '../decode.js'
import type { Attributes } from '@opentelemetry/api'
import { endFailed, otelContext, startProcessSpan, traceIdOf, type MessagingTarget } from '../../trace/tracing.js'
import { sleep } from '../../util/sleep.js'
import { admit, PermitHolder } from './breaker-gate.js'
import { emit, reportError } from './events.js'
import { leaveMainPath, message, type Failure } from './leave-main-path.js'
import { afterSuccess, preflight, preflightMayWait } from './parking.js'
import { releaseSlot, takeSlot } from './slots.js'
import { CANCELLED, type ConsumerContext, type Item, type Outcome } from './context.js'

/**
 * What pump() already did for a record it could not finish synchronously: the value failed to decode, or the
 * first attempt's handler ran and returned a promise (or threw, as a rejected one).
 */
export type FirstAttempt = { decodeError: unknown } | { value: unknown; startedAt: number; result: Promise<void>; traced?: ReturnType<typeof startProcessSpan> }

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== undefined && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}

export function classify(ctx: ConsumerContext, err: unknown): Classification {
  try {
    return classifyError(err, ctx.options.classify)
  } catch (classifierError) {
    reportError(ctx, classifierError, 'the classifier threw; falling back to the default classification')
    return classifyError(err, { permanentCodes: ctx.options.classify.permanentCodes })
  }
}

/** Metrics and the `processed` event for a successful attempt (shared by both paths). */
export function succeeded(ctx: ConsumerContext, item: Item, attempts: number, startedAt: number): void {
  const r = item.record
  const listened = ctx.emitter.listenerCount('processed') > 0
  if (!ctx.metrics.timed && !listened) return
  const seconds = (performance.now() - startedAt) / 1000
  ctx.metrics.handlerDuration(r.topic, 'success', seconds)
  ctx.metrics.processed(r.topic)
  if (listened) emit(ctx, 'processed', { topic: r.topic, partition: r.partition, offset: r.offset, attempts, durationMs: seconds * 1000 })
}

/**
 * The `process` span of one attempt: a child of the record's trace context (the producer's, or the send
 * span that wrote this retry-tier copy). Kept on the item: a copy it leaves the main path with is its child.
 */
export function processSpan(ctx: ConsumerContext, item: Item, attempt: number): ReturnType<typeof startProcessSpan> {
  const r = item.record
  const target: MessagingTarget = { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key, group: ctx.options.groupId }
  const extra: Attributes = { 'lifeline.attempt': attempt + (item.tier?.attempts ?? 0) }
  if (item.tier) extra['lifeline.retry.tier'] = item.tier.tier
  if (item.parkedId !== undefined) extra['lifeline.replayed'] = true
  const traced = startProcessSpan(target, r.headers, extra)
  item.trace = traced.context
  return traced
}

/**
 * Runs a record to its end: succeeded, skipped, stored behind its key, or left the main path ('done'), or
 * given up by a revocation, a fence or close() ('abandoned': uncommitted, the next owner reads it again).
 * The first attempt runs in the slot pump() reserved (`first` when pump() already started it); a record
 * that must wait (preflight, backoff, breaker) gives its slot back meanwhile.
 */
export async function processRecord(ctx: ConsumerContext, item: Item, first?: FirstAttempt): Promise<Outcome> {
  const o = ctx.options
  const r = item.record
  const state = item.state
  const resumedAttempt = first && 'result' in first ? first : undefined
  let value: unknown = resumedAttempt?.value
  let failure: Failure | undefined
  let hasSlot = true
  const giveUpSlot = () => {
    if (hasSlot) {
      hasSlot = false
      releaseSlot(ctx)
    }
  }
  if (!first) {
    // A check that waits for the database holds no handler slot (the loop below takes one to run).
    if (preflightMayWait(ctx, item)) giveUpSlot()
    const pre = await preflight(ctx, item)
    if (pre !== 'run') {
      giveUpSlot()
      return pre === CANCELLED ? 'abandoned' : 'done'
    }
  }
  if (item.forced !== undefined) failure = { classification: classify(ctx, item.forced), error: item.forced }
  else if (first && 'decodeError' in first) failure = { classification: classify(ctx, first.decodeError), error: first.decodeError }
  else if (!first && item.decoded) {
    if ('error' in item.decoded) failure = { classification: classify(ctx, item.decoded.error), error: item.decoded.error }
    else value = item.decoded.value
  } else if (!first) {
    try {
      value = wrapDecode(o.decoder, r.value)
    } catch (err) {
      failure = { classification: classify(ctx, err), error: err }
    }
  }
  // A retry-tier record gets one attempt per tier; a record in the main path retries in place first.
  const attemptsHere = item.tier ? 1 : o.maxAttempts
  const now = Date.now()
  let firstFailureAt = now
  let lastFailureAt = now
  let attempt = 0
  let outages = 0 // attempts failed by an unreachable database in a row (they do not count)
  let resumePending = resumedAttempt !== undefined // pump()'s attempt is awaited once, never again
  let delayMs = 0
  const signals = [state.waits.signal, state.handlers.signal]
  while (!failure) {
    let permit: PermitHolder | undefined
    if (ctx.breaker) {
      if (!ctx.breaker.canRun(Date.now())) giveUpSlot() // wait for the breaker without holding a slot
      const admitted = await admit(ctx, state.waits.signal)
      if (admitted === 'cancelled') {
        giveUpSlot()
        return 'abandoned' // close() or revocation while the breaker held it back
      }
      permit = new PermitHolder(ctx, admitted, signals)
    }
    if (!hasSlot) {
      if (!(await takeSlot(ctx, state.waits.signal))) {
        permit?.release()
        return 'abandoned'
      }
      hasSlot = true
    }
    attempt++
    const resumed = resumePending ? resumedAttempt : undefined
    resumePending = false
    const startedAt = resumed?.startedAt ?? performance.now()
    const traced = resumed ? resumed.traced : ctx.tracing ? processSpan(ctx, item, attempt) : undefined
    try {
      const pending = resumed ? resumed.result : traced ? otelContext.with(traced.context, () => o.handler(message(item, value, attempt))) : o.handler(message(item, value, attempt))
      // A synchronous handler costs no extra turn of the microtask queue.
      if (isThenable(pending)) await pending
      traced?.span.end()
      permit?.record('success')
      succeeded(ctx, item, attempt + (item.tier?.attempts ?? 0), startedAt)
      giveUpSlot()
      return (await afterSuccess(ctx, item)) ? 'done' : 'abandoned'
    } catch (err) {
      if (traced) endFailed(traced.span, err)
      ctx.metrics.handlerDuration(r.topic, 'failure', (performance.now() - startedAt) / 1000)
      // A handler stopped by a drain timeout, or whose partition is gone, is abandoned, never dead-lettered: it will be redelivered.
      if (state.handlers.signal.aborted || state.waits.signal.aborted) {
        permit?.release()
        return 'abandoned'
      }
      const classification = classify(ctx, err)
      ctx.metrics.failed(r.topic, classification.code)
      if (permit) {
        // Only transient failures say something about the downstream; a bad payload does not.
        if (classification.kind === 'retriable') permit.record('failure')
        else permit.release()
        if (classification.kind === 'retriable' && ctx.breaker!.state !== 'closed') {
          // An outage: this attempt does not count toward maxAttempts or the deadline; the record waits
          // at the breaker instead of walking towards the DLQ.
          attempt--
          ctx.metrics.retried(r.topic, classification.code)
          continue
        }
      }
      if (o.waitOutDatabaseOutages && classification.kind === 'retriable' && isDatabaseOutage(err)) {
        // The database is down, not the record: this attempt does not count; wait for the database instead.
        attempt--
        outages++
        delayMs = outageBackoffMs(outages - 1)
        ctx.metrics.retried(r.topic, classification.code)
        if (outages === 1) reportError(ctx, err, 'the database is unreachable; the attempt does not count, waiting for it')
        emit(ctx, 'retry', { topic: r.topic, partition: r.partition, offset: r.offset, attempt: attempt + 1, delayMs, error: err })
      } else {
        outages = 0
        lastFailureAt = Date.now()
        if (attempt === 1) firstFailureAt = lastFailureAt
        const decision = retryDecision({
          attempt,
          maxAttempts: attemptsHere,
          firstFailureAt,
          now: lastFailureAt,
          deadlineMs: o.deadlineMs,
          delayMs: classification.kind === 'permanent' ? 0 : delayFor(o.backoff, attempt, err),
          permanent: classification.kind === 'permanent',
        })
        if (!decision.retry) {
          failure = { classification, error: err }
          break
        }
        delayMs = decision.delayMs
        ctx.metrics.retried(r.topic, classification.code)
        emit(ctx, 'retry', { topic: r.topic, partition: r.partition, offset: r.offset, attempt, delayMs: decision.delayMs, error: err })
        ctx.log.debug({ topic: r.topic, partition: r.partition, offset: r.offset, attempt, delayMs: decision.delayMs, code: classification.code, traceId: traceIdOf(traced?.span) }, 'retrying record')
      }
    } finally {
      giveUpSlot()
    }
    // The record now waits out its backoff without a handler slot (released above, pumped deferred).
    try {
      await sleep(delayMs, state.waits.signal)
    } catch {
      return 'abandoned' // close() or revocation cancelled the backoff: the record stays uncommitted
    }
  }
  giveUpSlot() // the DLQ write needs no handler slot (an undecodable record never used its slot)
  return leaveMainPath(ctx, item, value, failure, Math.max(attempt, 1), firstFailureAt, lastFailureAt)
}
