/**
 * Pure retry backoff: how long to wait before the next attempt, and whether to retry at all.
 *
 * Jitter follows "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015): `full` draws from
 * [0, cap], `equal` from [cap/2, cap]; both spread a burst of failures so retries do not hit the
 * recovering dependency in lockstep. Randomness is injected (`random`), so every function here is
 * deterministic under test.
 *
 * Attempt numbering: `attempt` is the number of attempts already made (all failed). After the first
 * failure `attempt` is 1 and `delayFor` gives the wait before the second attempt.
 *
 * @module
 * @example
 * const policy = exponential({ baseMs: 100, maxMs: 30_000, jitter: 'equal' })
 * const delayMs = delayFor(policy, attempt, error)
 * const decision = retryDecision({ attempt, maxAttempts: 10, firstFailureAt, now: Date.now(), deadlineMs: 600_000, delayMs })
 */
import { LifelineError } from '../errors.js'

/** How a delay is randomised below its cap. */
export type Jitter = 'full' | 'equal' | 'none'

/** `min(maxMs, baseMs * factor^(attempt-1))`, then jittered. */
export interface ExponentialBackoff {
  readonly type: 'exponential'
  /** Delay cap of the first retry, ms. */
  readonly baseMs: number
  /** Growth per attempt (>= 1). */
  readonly factor: number
  /** Upper bound of every delay, ms. */
  readonly maxMs: number
  readonly jitter: Jitter
}

/** The same delay before every retry. */
export interface FixedBackoff {
  readonly type: 'fixed'
  /** Delay, ms. */
  readonly ms: number
}

/** A user function: the delay in ms (finite, >= 0) before the retry that follows `attempt` failed attempts. */
export type BackoffFunction = (attempt: number, error: unknown) => number

/** A backoff policy: a built-in one or a {@link BackoffFunction}. */
export type BackoffPolicy = ExponentialBackoff | FixedBackoff | BackoffFunction

/** Options of {@link exponential}. */
export interface ExponentialBackoffOptions {
  /** Delay cap of the first retry, ms. */
  baseMs: number
  /** Growth per attempt, >= 1 (default 2). */
  factor?: number
  /** Upper bound of every delay, ms (>= 0). */
  maxMs: number
  /** Jitter mode (default `'full'`). */
  jitter?: Jitter
}

/** Defaults of {@link ExponentialBackoffOptions}. */
export const exponentialDefaults = { factor: 2, jitter: 'full' } as const satisfies Partial<ExponentialBackoffOptions>

function invalidOption(path: string, expected: string, value: unknown): LifelineError {
  return new LifelineError('LL_OPTIONS_INVALID', `${path}: expected ${expected}, got ${String(value)}`, {
    details: { path, value },
  })
}

function isMs(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
}

/**
 * An exponential policy, validated and frozen.
 *
 * @throws LifelineError `LL_OPTIONS_INVALID` naming the bad option (`backoff.baseMs`, ...).
 */
export function exponential(options: ExponentialBackoffOptions): ExponentialBackoff {
  const factor = options.factor ?? exponentialDefaults.factor
  const jitter = options.jitter ?? exponentialDefaults.jitter
  if (!isMs(options.baseMs)) throw invalidOption('backoff.baseMs', 'a finite number >= 0', options.baseMs)
  if (!isMs(options.maxMs)) throw invalidOption('backoff.maxMs', 'a finite number >= 0', options.maxMs)
  if (!(Number.isFinite(factor) && factor >= 1)) throw invalidOption('backoff.factor', 'a finite number >= 1', factor)
  if (jitter !== 'full' && jitter !== 'equal' && jitter !== 'none') {
    throw invalidOption('backoff.jitter', "'full', 'equal' or 'none'", jitter)
  }
  return Object.freeze({ type: 'exponential', baseMs: options.baseMs, factor, maxMs: options.maxMs, jitter })
}

/**
 * A fixed policy, validated and frozen.
 *
 * @throws LifelineError `LL_OPTIONS_INVALID` when `ms` is not a finite number >= 0.
 */
export function fixed(ms: number): FixedBackoff {
  if (!isMs(ms)) throw invalidOption('backoff.ms', 'a finite number >= 0', ms)
  return Object.freeze({ type: 'fixed', ms })
}

/** Clamps an injected random value into [0, 1] so a bad generator cannot push a delay outside its bounds. */
function unit(random: () => number): number {
  const r = random()
  return r >= 0 ? Math.min(r, 1) : 0 // NaN → 0
}

/**
 * The delay, in whole ms, before the retry that follows `attempt` failed attempts.
 *
 * @param attempt failed attempts so far (>= 1)
 * @param error the failure, passed to a custom function
 * @param random a uniform [0, 1) generator (default `Math.random`)
 * @returns an integer in [0, cap] (exponential), exactly `ms` floored (fixed), or the custom function's
 *   answer floored
 * @throws LifelineError `LL_ARGUMENT_INVALID` when `attempt` is not a positive safe integer;
 *   `LL_OPTIONS_INVALID` when a custom function returns anything but a finite number >= 0.
 */
export function delayFor(policy: BackoffPolicy, attempt: number, error: unknown, random: () => number = Math.random): number {
  if (!Number.isSafeInteger(attempt) || attempt < 1) {
    throw new LifelineError('LL_ARGUMENT_INVALID', `delayFor(attempt): expected a positive integer, got ${String(attempt)}`)
  }
  if (typeof policy === 'function') {
    const ms = policy(attempt, error)
    if (!isMs(ms)) throw invalidOption('backoff (custom function result)', 'a finite number >= 0', ms)
    return Math.floor(ms)
  }
  if (policy.type === 'fixed') return Math.floor(policy.ms)
  // Far past maxMs the power overflows to Infinity (and 0 * Infinity is NaN): the checks keep the cap.
  const raw = policy.baseMs === 0 ? 0 : policy.baseMs * policy.factor ** (attempt - 1)
  const cap = Math.floor(Number.isFinite(raw) ? Math.min(raw, policy.maxMs) : policy.maxMs)
  switch (policy.jitter) {
    case 'none':
      return cap
    case 'full':
      return Math.floor(unit(random) * cap)
    case 'equal':
      return Math.floor(cap / 2 + (unit(random) * cap) / 2)
  }
}

/** Why a failed record is not retried. */
export type StopReason = 'max-attempts' | 'deadline' | 'permanent'

/** The outcome of {@link retryDecision}. */
export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: StopReason }

/** Input of {@link retryDecision}. All times are ms since the epoch; durations are ms. */
export interface RetryDecisionInput {
  /** Attempts made so far, all failed (>= 1). */
  attempt: number
  /** Total attempts allowed, the first included (`Infinity` = no limit). */
  maxAttempts: number
  /** When the first attempt failed. */
  firstFailureAt: number
  /** The current time. */
  now: number
  /** Retry budget measured from `firstFailureAt`; undefined = no deadline. */
  deadlineMs?: number
  /** The delay the policy chose for the next attempt. */
  delayMs: number
  /** The failure was classified permanent: never retry. */
  permanent?: boolean
}

/**
 * Whether to retry, checked in order: a permanent failure stops; then the attempt limit; then the
 * deadline, which stops when the next attempt would start after it (`now + delayMs >
 * firstFailureAt + deadlineMs`): waiting only to find the budget spent would delay the dead letter.
 */
export function retryDecision(input: RetryDecisionInput): RetryDecision {
  if (input.permanent === true) return { retry: false, reason: 'permanent' }
  if (input.attempt >= input.maxAttempts) return { retry: false, reason: 'max-attempts' }
  if (input.deadlineMs !== undefined && input.now + input.delayMs > input.firstFailureAt + input.deadlineMs) {
    return { retry: false, reason: 'deadline' }
  }
  return { retry: true, delayMs: input.delayMs }
}

/**
 * The wait before try `n` (0-based) of something that waits out an outage rather than a record's fault (a
 * state write, an attempt that met an unreachable database): 250 ms doubling, capped at 30 s.
 */
export function outageBackoffMs(n: number): number {
  return Math.min(30_000, 250 * 2 ** Math.min(n, 7))
}
