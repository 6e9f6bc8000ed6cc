import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isLifelineError } from '../../src/errors.js'
import { delayFor, exponential, exponentialDefaults, fixed, retryDecision, type Jitter } from '../../src/retry/backoff.js'

const randomArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
const attemptArb = fc.integer({ min: 1, max: 2000 })
const policyArb = fc.record({
  baseMs: fc.integer({ min: 0, max: 10_000 }),
  factor: fc.double({ min: 1, max: 10, noNaN: true }),
  maxMs: fc.integer({ min: 0, max: 600_000 }),
  jitter: fc.constantFrom<Jitter>('full', 'equal', 'none'),
})

const cap = (p: { baseMs: number; factor: number; maxMs: number }, attempt: number): number =>
  delayFor(exponential({ ...p, jitter: 'none' }), attempt, undefined)

test('exponential without jitter: base * factor^(attempt-1), capped at maxMs', () => {
  const p = exponential({ baseMs: 100, maxMs: 1000, jitter: 'none' })
  assert.deepEqual([1, 2, 3, 4, 5, 6, 1000].map((a) => delayFor(p, a, undefined)), [100, 200, 400, 800, 1000, 1000, 1000])
  const slow = exponential({ baseMs: 100, factor: 1.5, maxMs: 10_000, jitter: 'none' })
  assert.deepEqual([1, 2, 3].map((a) => delayFor(slow, a, undefined)), [100, 150, 225])
})

test('defaults: factor 2, full jitter; policies are frozen', () => {
  const p = exponential({ baseMs: 100, maxMs: 1000 })
  assert.equal(p.factor, exponentialDefaults.factor)
  assert.equal(p.jitter, 'full')
  assert.ok(Object.isFrozen(p))
  assert.ok(Object.isFrozen(fixed(5)))
})

test('caps are monotone in the attempt and never exceed maxMs, even where the power overflows', () => {
  fc.assert(
    fc.property(policyArb, attemptArb, (p, attempt) => {
      const c = cap(p, attempt)
      assert.ok(Number.isInteger(c) && c >= 0 && c <= p.maxMs)
      assert.ok(cap(p, attempt + 1) >= c)
    }),
  )
  assert.equal(cap({ baseMs: 1, factor: 10, maxMs: 5000 }, 100_000), 5000)
  assert.equal(cap({ baseMs: 0, factor: 10, maxMs: 5000 }, 100_000), 0, '0 * Infinity must not become maxMs')
})

test('jittered delays are integers within [0, cap] (full) and [cap/2, cap] (equal)', () => {
  fc.assert(
    fc.property(policyArb, attemptArb, randomArb, (p, attempt, r) => {
      const c = cap(p, attempt)
      const d = delayFor(exponential(p), attempt, undefined, () => r)
      assert.ok(Number.isInteger(d) && d >= 0 && d <= c, `${d} outside [0, ${c}]`)
      if (p.jitter === 'equal') assert.ok(d >= Math.floor(c / 2))
      if (p.jitter === 'none') assert.equal(d, c)
    }),
  )
})

test('jitter is deterministic under an injected random and hits both ends', () => {
  const full = exponential({ baseMs: 1000, maxMs: 1000, jitter: 'full' })
  const equal = exponential({ baseMs: 1000, maxMs: 1000, jitter: 'equal' })
  assert.equal(delayFor(full, 1, undefined, () => 0), 0)
  assert.equal(delayFor(full, 1, undefined, () => 0.5), 500)
  assert.equal(delayFor(full, 1, undefined, () => 0.999999), 999)
  assert.equal(delayFor(equal, 1, undefined, () => 0), 500)
  assert.equal(delayFor(equal, 1, undefined, () => 0.999999), 999)
})

test('a misbehaving random() cannot push a delay outside its bounds', () => {
  const full = exponential({ baseMs: 1000, maxMs: 1000, jitter: 'full' })
  for (const r of [-1, 2, Number.NaN, Infinity]) {
    const d = delayFor(full, 1, undefined, () => r)
    assert.ok(d >= 0 && d <= 1000, `random ${r} gave ${d}`)
  }
})

test('fixed and custom policies', () => {
  assert.equal(delayFor(fixed(250), 1, undefined), 250)
  assert.equal(delayFor(fixed(250), 99, undefined), 250)
  assert.equal(delayFor(fixed(2.7), 1, undefined), 2)
  const seen: unknown[] = []
  const custom = (attempt: number, error: unknown): number => {
    seen.push(error)
    return attempt * 10.9
  }
  const error = new Error('boom')
  assert.equal(delayFor(custom, 3, error), 32)
  assert.deepEqual(seen, [error])
})

test('a custom function returning a bad delay throws LL_OPTIONS_INVALID', () => {
  for (const bad of [-1, Number.NaN, Infinity, '5' as unknown as number]) {
    assert.throws(() => delayFor(() => bad, 1, undefined), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID'))
  }
})

test('invalid attempts throw LL_ARGUMENT_INVALID', () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => delayFor(fixed(1), bad, undefined), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
  }
})

test('invalid options throw LL_OPTIONS_INVALID naming the option', () => {
  const cases: Array<[() => unknown, string]> = [
    [() => exponential({ baseMs: -1, maxMs: 10 }), 'backoff.baseMs'],
    [() => exponential({ baseMs: Number.NaN, maxMs: 10 }), 'backoff.baseMs'],
    [() => exponential({ baseMs: 1, maxMs: Infinity }), 'backoff.maxMs'],
    [() => exponential({ baseMs: 1, maxMs: 10, factor: 0.5 }), 'backoff.factor'],
    [() => exponential({ baseMs: 1, maxMs: 10, jitter: 'half' as Jitter }), 'backoff.jitter'],
    [() => fixed(-5), 'backoff.ms'],
  ]
  for (const [fn, path] of cases) {
    assert.throws(fn, (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.message.startsWith(`${path}:`), path)
  }
})

test('retryDecision: permanent, then max attempts, then deadline', () => {
  const base = { attempt: 1, maxAttempts: 3, firstFailureAt: 1000, now: 1000, deadlineMs: 10_000, delayMs: 100 }
  assert.deepEqual(retryDecision(base), { retry: true, delayMs: 100 })
  assert.deepEqual(retryDecision({ ...base, permanent: true }), { retry: false, reason: 'permanent' })
  assert.deepEqual(retryDecision({ ...base, permanent: true, attempt: 3 }), { retry: false, reason: 'permanent' })
  assert.deepEqual(retryDecision({ ...base, attempt: 3 }), { retry: false, reason: 'max-attempts' })
  assert.deepEqual(retryDecision({ ...base, attempt: 3, now: 99_999 }), { retry: false, reason: 'max-attempts' })
  // The deadline is firstFailureAt + deadlineMs = 11_000.
  assert.deepEqual(retryDecision({ ...base, now: 10_900, delayMs: 100 }), { retry: true, delayMs: 100 }, 'lands exactly on it')
  assert.deepEqual(retryDecision({ ...base, now: 10_900, delayMs: 101 }), { retry: false, reason: 'deadline' }, 'would cross it')
  assert.deepEqual(retryDecision({ ...base, now: 11_001, delayMs: 0 }), { retry: false, reason: 'deadline' }, 'already past')
  assert.deepEqual(retryDecision({ ...base, deadlineMs: undefined, now: 1e12 }), { retry: true, delayMs: 100 }, 'no deadline')
  assert.deepEqual(retryDecision({ ...base, maxAttempts: Infinity, attempt: 1e9 }), { retry: true, delayMs: 100 })
})

test('retryDecision never schedules an attempt past the deadline or beyond maxAttempts', () => {
  fc.assert(
    fc.property(
      fc.record({
        attempt: fc.integer({ min: 1, max: 20 }),
        maxAttempts: fc.integer({ min: 1, max: 20 }),
        firstFailureAt: fc.integer({ min: 0, max: 1e12 }),
        elapsed: fc.integer({ min: 0, max: 1e6 }),
        deadlineMs: fc.option(fc.integer({ min: 0, max: 1e6 }), { nil: undefined }),
        delayMs: fc.integer({ min: 0, max: 1e6 }),
        permanent: fc.boolean(),
      }),
      ({ elapsed, ...input }) => {
        const now = input.firstFailureAt + elapsed
        const decision = retryDecision({ ...input, now })
        if (decision.retry) {
          assert.equal(input.permanent, false)
          assert.ok(input.attempt < input.maxAttempts)
          if (input.deadlineMs !== undefined) assert.ok(now + decision.delayMs <= input.firstFailureAt + input.deadlineMs)
          assert.equal(decision.delayMs, input.delayMs)
        } else if (decision.reason === 'deadline') {
          assert.ok(input.deadlineMs !== undefined && now + input.delayMs > input.firstFailureAt + input.deadlineMs)
        }
      },
    ),
  )
})
