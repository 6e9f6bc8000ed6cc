/**
 * A circuit breaker for the dependency a handler writes to: when most recent calls fail, stop calling
 * (the runtime pauses instead of burning retries), then let a few probes through to test recovery.
 * Pure state: no I/O, no timers; time is passed in as `now` (ms) and never goes back (an earlier `now`
 * counts as the latest one seen).
 *
 * - `closed`: every call may run. Outcomes go into a sliding window of 10 time buckets (O(1) memory); it
 *   opens when the window holds at least `minimumCalls` outcomes and failures / calls >= the threshold.
 *   An outcome leaves the window between `windowMs - windowMs/10` and `windowMs` after it was recorded.
 * - `open`: no call may run until `openMs` has passed ({@link CircuitBreaker.nextProbeAt}, for one timer);
 *   the next `canRun`/`started`/`snapshot` then moves it to `half-open`.
 * - `half-open`: at most `halfOpenProbes` probes run at once. A probe failure re-opens it (a fresh
 *   `openMs`); `successesToClose` probe successes close it with an empty window.
 *
 * The caller decides what to record: only failures it classifies as transient (timeouts, connection
 * errors, throttling) are `'failure'`. A permanent error (a bad payload, a schema violation) says nothing
 * about the dependency and must not open the breaker: `release` its permit instead. Every permit from
 * `started` must end in exactly one `record` or `release`, or its probe slot stays taken. Outcomes of
 * calls started before the last state change are stale and ignored (e.g. the stragglers of a burst that
 * opened the breaker must not count as probes).
 *
 * @module
 * @example
 * const breaker = new CircuitBreaker({ minimumCalls: 20, failureRateThreshold: 0.5 })
 * if (!breaker.canRun(now)) return pauseUntil(breaker.nextProbeAt())
 * const permit = breaker.started(now)
 * // ...after the handler settles:
 * if (ok) breaker.record('success', later, permit)
 * else if (transient) breaker.record('failure', later, permit)
 * else breaker.release(permit)
 */
import { LifelineError } from '../errors.js'

export type BreakerState = 'closed' | 'open' | 'half-open'
export type Outcome = 'success' | 'failure'

export interface CircuitBreakerOptions {
  /** Length of the sliding window of outcomes, ms (> 0; default 30 000). */
  windowMs?: number
  /** Outcomes the window must hold before the breaker may open (positive integer; default 20). */
  minimumCalls?: number
  /** Failure rate at or above which the breaker opens: a number in (0, 1] (default 0.5). */
  failureRateThreshold?: number
  /** Time an open breaker waits before allowing a probe, ms (>= 0; default 10 000). */
  openMs?: number
  /** Most probes running at once in half-open (positive integer; default 1). */
  halfOpenProbes?: number
  /** Probe successes in half-open that close the breaker (positive integer; default 3). */
  successesToClose?: number
}

/** Defaults of {@link CircuitBreakerOptions}. */
export const circuitBreakerDefaults = {
  windowMs: 30_000,
  minimumCalls: 20,
  failureRateThreshold: 0.5,
  openMs: 10_000,
  halfOpenProbes: 1,
  successesToClose: 3,
} as const satisfies Required<CircuitBreakerOptions>

/** Proof that a call was allowed to start; hand it back to `record` or `release`. Compared by identity. */
export interface Permit {
  /** Whether the call is a half-open probe. */
  readonly probe: boolean
}

/**
 * A state change. `failureRate` is the rate behind it: the window's for closed → open, the probes' for
 * half-open → open/closed, and the rate that opened the breaker for open → half-open.
 */
export interface Transition {
  readonly from: BreakerState
  readonly to: BreakerState
  readonly at: number
  readonly failureRate: number
}

export interface BreakerSnapshot {
  readonly state: BreakerState
  /** Failures / calls in the window (0 when empty). */
  readonly failureRate: number
  /** Outcomes in the window. */
  readonly calls: number
  readonly failures: number
  readonly probesInFlight: number
}

const BUCKETS = 10
/** Transitions kept until `takeTransitions`; the oldest are dropped beyond this (a caller that never reads). */
const MAX_TRANSITIONS = 100

interface Bucket {
  index: number
  calls: number
  failures: number
}

function invalidOption(path: string, expected: string, value: unknown): LifelineError {
  return new LifelineError('LL_OPTIONS_INVALID', `${path}: expected ${expected}, got ${String(value)}`, { details: { path, value } })
}

function validate(options: CircuitBreakerOptions): Readonly<Required<CircuitBreakerOptions>> {
  const o = { ...circuitBreakerDefaults, ...options }
  const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
  const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 1
  if (!(isNumber(o.windowMs) && o.windowMs > 0)) throw invalidOption('windowMs', 'a finite number > 0', o.windowMs)
  if (!isCount(o.minimumCalls)) throw invalidOption('minimumCalls', 'a positive integer', o.minimumCalls)
  const rate = o.failureRateThreshold
  if (!(isNumber(rate) && rate > 0 && rate <= 1)) throw invalidOption('failureRateThreshold', 'a number in (0, 1]', rate)
  if (!(isNumber(o.openMs) && o.openMs >= 0)) throw invalidOption('openMs', 'a finite number >= 0', o.openMs)
  if (!isCount(o.halfOpenProbes)) throw invalidOption('halfOpenProbes', 'a positive integer', o.halfOpenProbes)
  if (!isCount(o.successesToClose)) throw invalidOption('successesToClose', 'a positive integer', o.successesToClose)
  return Object.freeze(o)
}

function checkNow(method: string, now: number): void {
  if (!Number.isFinite(now)) {
    throw new LifelineError('LL_ARGUMENT_INVALID', `${method}(now): expected a finite time in ms, got ${String(now)}`)
  }
}

/** A failure-rate circuit breaker; see the module documentation for the states and the caller's duties. */
export class CircuitBreaker {
  /** The validated, frozen options. */
  readonly options: Readonly<Required<CircuitBreakerOptions>>
  readonly #bucketMs: number
  readonly #buckets: Bucket[] = Array.from({ length: BUCKETS }, () => ({ index: -Infinity, calls: 0, failures: 0 }))
  #state: BreakerState = 'closed'
  /** Bumped by every transition: permits issued in an earlier epoch are stale. */
  #epoch = 0
  #clock = -Infinity
  #openedAt = 0
  #openRate = 0
  /** Outstanding permits → the epoch they were issued in. */
  readonly #permits = new WeakMap<Permit, number>()
  readonly #probes = new Set<Permit>()
  #probeSuccesses = 0
  #probeFailures = 0
  #transitions: Transition[] = []

  /** @throws LifelineError `LL_OPTIONS_INVALID` naming the bad option. */
  constructor(options: CircuitBreakerOptions = {}) {
    this.options = validate(options)
    this.#bucketMs = this.options.windowMs / BUCKETS
  }

  /** The state as of the last call that passed `now` (an open breaker turns half-open lazily). */
  get state(): BreakerState {
    return this.#state
  }

  /** Half-open probes started and not yet recorded or released. */
  get probesInFlight(): number {
    return this.#probes.size
  }

  /**
   * Whether one more call may start now: always when closed, never while open (until `openMs` has passed,
   * when it turns half-open), and in half-open while fewer than `halfOpenProbes` probes run.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `now` is not finite.
   */
  canRun(now: number): boolean {
    checkNow('canRun', now)
    this.#tick(now)
    return this.#state === 'closed' || (this.#state === 'half-open' && this.#probes.size < this.options.halfOpenProbes)
  }

  /**
   * Starts a call (a probe in half-open). Ask {@link CircuitBreaker.canRun} first.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when no call may start now (a bug in the caller), or `now` is not finite.
   */
  started(now: number): Permit {
    if (!this.canRun(now)) {
      throw new LifelineError('LL_ARGUMENT_INVALID', `started(): the ${this.#state} breaker allows no call now; ask canRun(now) first`, {
        details: { state: this.#state, probesInFlight: this.#probes.size },
      })
    }
    const permit: Permit = Object.freeze({ probe: this.#state === 'half-open' })
    this.#permits.set(permit, this.#epoch)
    if (permit.probe) this.#probes.add(permit)
    return permit
  }

  /**
   * Records how the call of `permit` ended (a transient failure or a success; see the module documentation).
   *
   * @returns false when the outcome was ignored: the permit was already settled, or is stale (issued before
   *   the last state change).
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `outcome` is unknown or `now` is not finite.
   */
  record(outcome: Outcome, now: number, permit: Permit): boolean {
    if (outcome !== 'success' && outcome !== 'failure') {
      throw new LifelineError('LL_ARGUMENT_INVALID', `record(outcome): expected 'success' or 'failure', got ${String(outcome)}`)
    }
    checkNow('record', now)
    const at = this.#tick(now)
    if (!this.#settle(permit)) return false
    if (permit.probe) {
      if (outcome === 'failure') this.#probeFailures++
      else this.#probeSuccesses++
      const rate = this.#probeFailures / (this.#probeFailures + this.#probeSuccesses)
      if (outcome === 'failure') this.#open(at, rate)
      else if (this.#probeSuccesses >= this.options.successesToClose) this.#close(at, rate)
      return true
    }
    const index = Math.floor(at / this.#bucketMs)
    const bucket = this.#buckets[((index % BUCKETS) + BUCKETS) % BUCKETS] as Bucket
    if (bucket.index !== index) Object.assign(bucket, { index, calls: 0, failures: 0 })
    bucket.calls++
    if (outcome === 'failure') bucket.failures++
    const { calls, failures } = this.#window(at)
    if (calls >= this.options.minimumCalls && failures / calls >= this.options.failureRateThreshold) this.#open(at, failures / calls)
    return true
  }

  /**
   * Ends the call of `permit` without an outcome (a permanent error, or the record was revoked), freeing its
   * probe slot. @returns false when the permit was already settled or is stale.
   */
  release(permit: Permit): boolean {
    return this.#settle(permit)
  }

  /** When an open breaker will allow a probe; undefined unless open. */
  nextProbeAt(): number | undefined {
    return this.#state === 'open' ? this.#openedAt + this.options.openMs : undefined
  }

  /** The state changes since the last call, oldest first (at most the last 100), and forgets them. */
  takeTransitions(): Transition[] {
    const taken = this.#transitions
    this.#transitions = []
    return taken
  }

  /**
   * The state and the window as of `now`.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `now` is not finite.
   */
  snapshot(now: number): BreakerSnapshot {
    checkNow('snapshot', now)
    const { calls, failures } = this.#window(this.#tick(now))
    return { state: this.#state, failureRate: calls === 0 ? 0 : failures / calls, calls, failures, probesInFlight: this.#probes.size }
  }

  /** Advances the clock (never back) and turns an open breaker half-open once `openMs` has passed. */
  #tick(now: number): number {
    this.#clock = Math.max(this.#clock, now)
    if (this.#state === 'open' && this.#clock >= this.#openedAt + this.options.openMs) {
      this.#transition('half-open', this.#clock, this.#openRate)
    }
    return this.#clock
  }

  /** Forgets an outstanding permit. @returns whether it was outstanding and issued in the current epoch. */
  #settle(permit: Permit): boolean {
    const epoch = this.#permits.get(permit)
    if (epoch === undefined) return false
    this.#permits.delete(permit)
    this.#probes.delete(permit)
    return epoch === this.#epoch
  }

  #window(at: number): { calls: number; failures: number } {
    const current = Math.floor(at / this.#bucketMs)
    let calls = 0
    let failures = 0
    for (const bucket of this.#buckets) {
      if (bucket.index <= current - BUCKETS) continue
      calls += bucket.calls
      failures += bucket.failures
    }
    return { calls, failures }
  }

  #open(at: number, failureRate: number): void {
    this.#openedAt = at
    this.#openRate = failureRate
    this.#transition('open', at, failureRate)
  }

  #close(at: number, failureRate: number): void {
    for (const bucket of this.#buckets) Object.assign(bucket, { index: -Infinity, calls: 0, failures: 0 })
    this.#transition('closed', at, failureRate)
  }

  #transition(to: BreakerState, at: number, failureRate: number): void {
    this.#transitions.push({ from: this.#state, to, at, failureRate })
    if (this.#transitions.length > MAX_TRANSITIONS) this.#transitions.shift()
    this.#state = to
    this.#epoch++
    this.#probes.clear()
    this.#probeSuccesses = 0
    this.#probeFailures = 0
  }
}
