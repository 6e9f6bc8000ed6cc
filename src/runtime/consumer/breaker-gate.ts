/**
 * The circuit breaker in the runtime: records wait at the gate (holding no slot) while it is open, every
 * partition is paused while it is open, and every permit handed out ends in exactly one outcome or
 * release — also when its record is abandoned by a revocation, a loss or close(), so an abandoned probe
 * never wedges the breaker half-open, and an aborted probe never counts as a success.
 *
 * @module
 */
import type { Permit } from '../../retry/circuit-breaker.js'
import { sleep } from '../../util/sleep.js'
import { emit } from './events.js'
import { pause, resume } from './partitions.js'
import type { ConsumerContext, PartitionState } from './context.js'

/** Applies the breaker's state changes: events, logs, and pausing every partition while not closed. */
export function breakerTransitions(ctx: ConsumerContext): void {
  const breaker = ctx.breaker
  if (!breaker) return
  for (const t of breaker.takeTransitions()) {
    ctx.log.warn({ from: t.from, to: t.to, failureRate: t.failureRate }, `circuit breaker ${t.to}`)
    ctx.metrics.breakerTransition(t.to)
    emit(ctx, 'breaker', t)
    // Paused only while open: in half-open records must arrive to be admitted as probes (the gate lets
    // `halfOpenProbes` through; the others wait there without a slot, bounded by backpressure).
    for (const s of ctx.partitions.values()) {
      if (t.to === 'open') pause(ctx, s, 'breaker')
      else resume(ctx, s, 'breaker')
    }
  }
}

/** Pauses partitions assigned while the breaker is open, like the others. */
export function pauseIfBreakerOpen(ctx: ConsumerContext, states: readonly PartitionState[]): void {
  if (!ctx.breaker || ctx.breaker.state !== 'open') return
  for (const s of states) pause(ctx, s, 'breaker')
}

/** Waits (holding no slot) until the breaker lets one more attempt start; 'cancelled' on revoke/close. */
export async function admit(ctx: ConsumerContext, signal: AbortSignal): Promise<Permit | 'cancelled'> {
  const b = ctx.breaker!
  for (;;) {
    if (signal.aborted) return 'cancelled'
    const now = Date.now()
    if (b.canRun(now)) {
      const permit = b.started(now)
      breakerTransitions(ctx)
      return permit
    }
    breakerTransitions(ctx)
    const wait = Math.max(10, Math.min(1000, (b.nextProbeAt() ?? now + 100) - now))
    try {
      await sleep(wait, signal)
    } catch {
      return 'cancelled'
    }
  }
}

/**
 * Holds a permit for one attempt and settles it exactly once: with the attempt's outcome, or released when
 * the attempt is abandoned (its partition revoked, lost or fenced, or close()) — at that moment, even while
 * the handler still runs, so a hanging abandoned probe cannot keep the breaker's probe slot.
 */
export class PermitHolder {
  #settled = false
  readonly #onAbort: () => void
  constructor(private readonly ctx: ConsumerContext, readonly permit: Permit, private readonly signals: readonly AbortSignal[]) {
    this.#onAbort = () => this.release()
    for (const s of signals) s.addEventListener('abort', this.#onAbort, { once: true })
  }

  /** Whether the attempt was abandoned (so its outcome must not count). */
  get abandoned(): boolean {
    return this.signals.some((s) => s.aborted)
  }

  record(outcome: 'success' | 'failure'): void {
    if (this.abandoned) return this.release()
    if (this.#settle()) {
      this.ctx.breaker!.record(outcome, Date.now(), this.permit)
      breakerTransitions(this.ctx)
    }
  }

  release(): void {
    if (this.#settle()) {
      this.ctx.breaker!.release(this.permit)
      breakerTransitions(this.ctx)
    }
  }

  #settle(): boolean {
    if (this.#settled) return false
    this.#settled = true
    for (const s of this.signals) s.removeEventListener('abort', this.#onAbort)
    return true
  }
}
