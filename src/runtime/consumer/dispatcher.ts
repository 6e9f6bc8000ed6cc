/**
 * The dispatcher: takes runnable items from the key scheduler while handler slots are free, runs a plain
 * record's first attempt synchronously when it can (no promise at all for a handler that returns without
 * one), and runs everything else on the async path until it is finished or abandoned.
 *
 * @module
 */
import { decide } from '../../ordering/key-rules.js'
import { sleep } from '../../util/sleep.js'
import { wrapDecode } from '../decode.js'
import { otelContext } from '../../trace/tracing.js'
import { isThenable, processRecord, processSpan, succeeded, type FirstAttempt } from './attempts.js'
import { reportError } from './events.js'
import { message } from './leave-main-path.js'
import { isCurrent, relieve } from './partitions.js'
import { runKeyWork } from './replay.js'
import { noteSequence, sequenceOf } from './sequencing.js'
import type { ConsumerContext, Item, Outcome } from './context.js'

export function pump(ctx: ConsumerContext): void {
  while (ctx.running < ctx.options.concurrency && ctx.slotWaiters.length === 0 && !ctx.stopping.signal.aborted) {
    const item = ctx.scheduler.next()
    if (!item) return
    item.state.buffered--
    ctx.bufferedBytes -= item.size
    if (item.kind !== 'record') {
      void execute(ctx, item, undefined) // holds the key's lane; a replayed record takes a slot of its own
      continue
    }
    ctx.running++ // the slot for its first attempt, reserved now so this loop never over-dispatches
    // Draining only ever resumes here; pausing is judged by the poll loop (see intake.ts).
    if (item.state.pausedFor.size > 0 || ctx.memoryPaused) relieve(ctx, item.state)
    const first = runSynchronously(ctx, item)
    if (first !== 'done') void execute(ctx, item, first)
  }
}

/**
 * Runs an accepted record at once, without queueing it, when nothing is queued or in flight (so no order
 * can be broken) and a slot is free: a fast handler's record then costs no scheduler entry and no key
 * string. A record whose attempt goes on asynchronously is adopted by the scheduler as in flight, so the
 * records behind it queue as usual. False: the caller queues the record.
 */
export function runNow(ctx: ConsumerContext, item: Item): boolean {
  if (item.kind !== 'record' || item.tier !== undefined || !ctx.scheduler.idle || ctx.running >= ctx.options.concurrency) return false
  if (ctx.slotWaiters.length > 0 || ctx.stopping.signal.aborted || item.state.pausedFor.size > 0 || ctx.memoryPaused) return false
  ctx.running++
  const first = runSynchronously(ctx, item)
  if (first !== 'done') {
    ctx.scheduler.adopt(item)
    void execute(ctx, item, first)
  }
  return true
}

/** Whether the record can skip preflight: nothing about its key or sequence needs the database. */
function plain(ctx: ConsumerContext, item: Item): boolean {
  if (ctx.breaker || item.tier || item.parkedId !== undefined || item.forced !== undefined) return false
  const key = item.record.key
  if (!ctx.parking || key === null) return true
  const state = item.state
  if (state.keys.size > 0 && state.keys.has(item.schedulingKey!)) return false
  // A key without state may still carry a redriven head's token: the async path looks at it.
  if (item.record.headers.length > 0 && item.record.headers.some((h) => h.key === 'lifeline.replay.id')) return false
  if (!ctx.options.sequence) {
    item.expect = { status: 'none' }
    return true
  }
  const seq = sequenceOf(ctx, item)
  if (item.forced !== undefined) return false
  if (seq === undefined) {
    item.expect = { status: 'none' }
    return true
  }
  const verdict = decide(undefined, { offset: item.record.offset, seq }, state.lastSeq.get(item.schedulingKey!), { firstSequence: ctx.options.sequence.firstSequence })
  if (verdict.kind !== 'run') return false
  item.expect = { status: 'none' }
  return true
}

/**
 * The first attempt, run in place: a record whose value decodes and whose handler returns without a promise
 * finishes here with no promise at all (the common case for cheap handlers). Anything else — a decode
 * failure, a thrown error, a returned promise, a key with state — continues on the async path with what
 * happened so far, so the handler never runs twice for one attempt.
 */
function runSynchronously(ctx: ConsumerContext, item: Item): FirstAttempt | 'done' | undefined {
  if (!plain(ctx, item)) return undefined
  let value: unknown
  const decoded = item.decoded
  if (decoded && 'error' in decoded) return { decodeError: decoded.error }
  if (decoded) value = decoded.value
  else {
    try {
      value = wrapDecode(ctx.options.decoder, item.record.value)
    } catch (decodeError) {
      return { decodeError } // dead-lettered on the async path
    }
  }
  // Timed only when something records it (succeeded() reads the clock again only then).
  const startedAt = ctx.metrics.timed || ctx.emitter.listenerCount('processed') > 0 ? performance.now() : 0
  let result: unknown
  const traced = ctx.tracing ? processSpan(ctx, item, 1) : undefined
  try {
    result = traced ? otelContext.with(traced.context, () => ctx.options.handler(message(item, value, 1))) : ctx.options.handler(message(item, value, 1))
  } catch (error) {
    return { value, startedAt, result: Promise.reject(error), traced }
  }
  if (isThenable(result)) return { value, startedAt, result: result as Promise<void>, traced }
  traced?.span.end()
  succeeded(ctx, item, 1, startedAt)
  if (item.seq !== undefined) noteSequence(item.state, item.schedulingKey!, item.record.key!, item.seq)
  ctx.running--
  finish(ctx, item, 'done')
  return 'done'
}

/** Bookkeeping once an item is finished or abandoned (shared by both paths). */
function finish(ctx: ConsumerContext, item: Item, outcome: Outcome): void {
  const state = item.state
  if (state.pausedFor.has('backpressure')) relieve(ctx, state)
  if (outcome === 'done' && item.source && isCurrent(ctx, state) && !state.fenced) state.offsets.complete(item.source.offset)
  ctx.scheduler.done(item)
  for (const wake of ctx.drainWaiters) wake()
}

async function execute(ctx: ConsumerContext, item: Item, first: FirstAttempt | undefined): Promise<void> {
  const state = item.state
  state.running.add(item)
  ctx.inFlight++
  let outcome: Outcome = 'abandoned'
  try {
    for (let tries = 1; ; tries++) {
      try {
        outcome = item.kind === 'record' ? await processRecord(ctx, item, tries === 1 ? first : undefined) : await runKeyWork(ctx, item)
        break
      } catch (err) {
        // processRecord handles handler and DLQ failures itself; this is a failing user function (a backoff
        // or DLQ-topic function) or a bug. The record keeps its key and its offset until it succeeds.
        reportError(ctx, err, 'record processing failed unexpectedly; retrying it')
        try {
          await sleep(Math.min(30_000, 500 * 2 ** Math.min(tries, 6)), state.waits.signal)
        } catch {
          break // revoked or closing: left uncommitted, redelivered to the next owner
        }
      }
    }
  } finally {
    state.running.delete(item)
    ctx.inFlight--
    finish(ctx, item, outcome)
    ctx.pump()
  }
}

