import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isLifelineError } from '../../src/errors.js'
import {
  CircuitBreaker,
  circuitBreakerDefaults,
  type BreakerState,
  type CircuitBreakerOptions,
  type Outcome,
  type Permit,
} from '../../src/retry/circuit-breaker.js'

/** Starts a call at `now` and records its outcome at once. */
function call(breaker: CircuitBreaker, outcome: Outcome, now: number): boolean {
  return breaker.record(outcome, now, breaker.started(now))
}

function calls(breaker: CircuitBreaker, outcome: Outcome, count: number, now: number): void {
  for (let i = 0; i < count; i++) call(breaker, outcome, now)
}

const small = { windowMs: 1000, minimumCalls: 4, failureRateThreshold: 0.5, openMs: 100, halfOpenProbes: 2, successesToClose: 3 }

test('defaults, and options validated with the option path in the message', () => {
  assert.deepEqual(new CircuitBreaker().options, circuitBreakerDefaults)
  assert.ok(Object.isFrozen(new CircuitBreaker().options))
  const bad: Array<[CircuitBreakerOptions, string]> = [
    [{ windowMs: 0 }, 'windowMs:'],
    [{ windowMs: Infinity }, 'windowMs:'],
    [{ minimumCalls: 0 }, 'minimumCalls:'],
    [{ failureRateThreshold: 0 }, 'failureRateThreshold:'],
    [{ failureRateThreshold: 1.5 }, 'failureRateThreshold:'],
    [{ openMs: -1 }, 'openMs:'],
    [{ halfOpenProbes: 1.5 }, 'halfOpenProbes:'],
    [{ successesToClose: Number.NaN }, 'successesToClose:'],
  ]
  for (const [options, prefix] of bad) {
    assert.throws(() => new CircuitBreaker(options), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.message.startsWith(prefix))
  }
  const breaker = new CircuitBreaker()
  const argument = (err: unknown): boolean => isLifelineError(err, 'LL_ARGUMENT_INVALID')
  assert.throws(() => breaker.canRun(Number.NaN), argument)
  assert.throws(() => breaker.record('timeout' as Outcome, 0, breaker.started(0)), argument)
})

test('state transitions', () => {
  const table: Array<{ name: string; steps: (b: CircuitBreaker) => void; state: BreakerState; canRunAt?: number }> = [
    { name: 'closed below minimumCalls, even at 100% failures', steps: (b) => calls(b, 'failure', 3, 0), state: 'closed' },
    { name: 'open at minimumCalls and the threshold', steps: (b) => calls(b, 'failure', 4, 0), state: 'open' },
    {
      name: 'closed while the rate stays below the threshold',
      steps: (b) => {
        calls(b, 'success', 6, 0)
        calls(b, 'failure', 5, 0)
      },
      state: 'closed',
    },
    {
      name: 'open once the rate reaches the threshold exactly',
      steps: (b) => {
        calls(b, 'success', 6, 0)
        calls(b, 'failure', 6, 0)
      },
      state: 'open',
    },
    { name: 'half-open after openMs', steps: (b) => calls(b, 'failure', 4, 0), state: 'half-open', canRunAt: 100 },
    { name: 'still open just before openMs', steps: (b) => calls(b, 'failure', 4, 0), state: 'open', canRunAt: 99 },
    {
      name: 'open again after a probe failure',
      steps: (b) => {
        calls(b, 'failure', 4, 0)
        call(b, 'failure', 100)
      },
      state: 'open',
    },
    {
      name: 'closed after successesToClose probe successes',
      steps: (b) => {
        calls(b, 'failure', 4, 0)
        calls(b, 'success', 3, 100)
      },
      state: 'closed',
    },
    {
      name: 'half-open after fewer successes',
      steps: (b) => {
        calls(b, 'failure', 4, 0)
        calls(b, 'success', 2, 100)
      },
      state: 'half-open',
    },
  ]
  for (const { name, steps, state, canRunAt } of table) {
    const b = new CircuitBreaker(small)
    steps(b)
    if (canRunAt !== undefined) b.canRun(canRunAt)
    assert.equal(b.state, state, name)
  }
})

test('old failures fall out of the window', () => {
  const b = new CircuitBreaker(small) // 10 buckets of 100 ms
  calls(b, 'failure', 2, 50)
  call(b, 'success', 950)
  assert.deepEqual(b.snapshot(999), { state: 'closed', failureRate: 2 / 3, calls: 3, failures: 2, probesInFlight: 0 })
  assert.deepEqual(b.snapshot(1000), { state: 'closed', failureRate: 0, calls: 1, failures: 0, probesInFlight: 0 }, 'bucket [0, 100) left')
  call(b, 'failure', 1000)
  calls(b, 'success', 2, 1000)
  assert.equal(b.state, 'closed', 'with the old failures, 3 of 6 would have opened it')
})

test('half-open: never more than halfOpenProbes probes at once; release frees a slot without counting', () => {
  const b = new CircuitBreaker(small)
  calls(b, 'failure', 4, 0)
  assert.equal(b.canRun(50), false)
  assert.throws(() => b.started(50), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && /open/.test(err.message))
  assert.equal(b.nextProbeAt(), 100)
  const p1 = b.started(100)
  const p2 = b.started(100)
  assert.deepEqual([p1.probe, p2.probe, b.probesInFlight, b.canRun(100)], [true, true, 2, false])
  assert.throws(() => b.started(100), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
  assert.equal(b.release(p1), true)
  assert.equal(b.release(p1), false, 'a permit settles once')
  assert.equal(b.canRun(100), true)
  assert.equal(b.record('success', 110, p2), true)
  assert.equal(b.record('success', 110, p2), false, 'a permit settles once')
  assert.equal(b.snapshot(110).probesInFlight, 0)
  assert.equal(b.state, 'half-open', 'one success of three')
})

test('a probe failure re-opens with a fresh openMs; stale outcomes are ignored', () => {
  const b = new CircuitBreaker(small)
  const straggler = b.started(0)
  calls(b, 'failure', 4, 0)
  assert.equal(b.record('failure', 1, straggler), false, 'started before the breaker opened')
  const [probe, other] = [b.started(200), b.started(200)] as [Permit, Permit]
  assert.equal(b.record('failure', 250, probe), true)
  assert.deepEqual([b.state, b.nextProbeAt(), b.canRun(349), b.probesInFlight], ['open', 350, false, 0])
  assert.equal(b.record('success', 260, other), false, 'a probe of the previous half-open period')
  assert.equal(b.canRun(350), true)
})

test('closes after successesToClose probe successes with an empty window; transitions are reported once', () => {
  const b = new CircuitBreaker({ ...small, halfOpenProbes: 1 })
  calls(b, 'success', 2, 0)
  calls(b, 'failure', 2, 10)
  for (let t = 110; t < 400; t += 100) {
    assert.equal(b.canRun(t), true)
    call(b, 'success', t)
  }
  assert.deepEqual(b.snapshot(310), { state: 'closed', failureRate: 0, calls: 0, failures: 0, probesInFlight: 0 })
  assert.deepEqual(b.takeTransitions(), [
    { from: 'closed', to: 'open', at: 10, failureRate: 0.5 },
    { from: 'open', to: 'half-open', at: 110, failureRate: 0.5 },
    { from: 'half-open', to: 'closed', at: 310, failureRate: 0 },
  ])
  assert.deepEqual(b.takeTransitions(), [])
  calls(b, 'failure', 3, 300)
  assert.equal(b.state, 'closed', 'the window restarted empty: 3 calls are below minimumCalls')
})

test('time never goes back; the transition log keeps the last 100', () => {
  const b = new CircuitBreaker({ ...small, openMs: 0, successesToClose: 1 })
  calls(b, 'failure', 4, 500)
  assert.equal(b.canRun(0), true, 'an earlier now counts as 500: openMs 0 has passed')
  for (let i = 0; i < 60; i++) {
    call(b, 'success', 500) // half-open → closed
    calls(b, 'failure', 4, 500) // closed → open
    b.canRun(500) // open → half-open
  }
  const log = b.takeTransitions()
  assert.equal(log.length, 100)
  assert.deepEqual(log.at(-1), { from: 'open', to: 'half-open', at: 500, failureRate: 1 })
})

type Op = { op: 'start' } | { op: 'settle'; pick: number; outcome: Outcome | 'release' } | { op: 'advance'; ms: number }
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ op: 'start' as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat(), outcome: fc.constantFrom<Outcome | 'release'>('success', 'failure', 'failure', 'release') }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.nat(60) }) },
)

test('property: never more than halfOpenProbes probes; never closes without successesToClose probe successes; agrees with a window model', () => {
  const windowMs = 200
  const bucket = (at: number): number => Math.floor(at / (windowMs / 10))
  fc.assert(
    fc.property(
      fc.record({
        minimumCalls: fc.integer({ min: 1, max: 6 }),
        failureRateThreshold: fc.double({ min: 0.1, max: 1, noNaN: true }),
        openMs: fc.nat(100),
        halfOpenProbes: fc.integer({ min: 1, max: 3 }),
        successesToClose: fc.integer({ min: 1, max: 4 }),
      }),
      fc.array(opArb, { maxLength: 300 }),
      (options, ops) => {
        const b = new CircuitBreaker({ ...options, windowMs })
        let now = 0
        let state = 'closed' as BreakerState // widened: sync() assigns it in a closure
        let version = 0 // bumped by every transition
        let openedAt = 0
        let probeSuccesses = 0 // counted since the last transition
        let events: Array<{ at: number; failure: boolean }> = [] // counted closed-state outcomes since the last close
        const outstanding: Array<{ permit: Permit; state: BreakerState; version: number }> = []
        const windowed = (): { calls: number; failures: number } => {
          const inWindow = events.filter((e) => bucket(e.at) > bucket(now) - 10)
          return { calls: inWindow.length, failures: inWindow.filter((e) => e.failure).length }
        }
        const shouldOpen = (): boolean => {
          const { calls, failures } = windowed()
          return calls >= options.minimumCalls && failures / calls >= options.failureRateThreshold
        }
        const sync = (): void => {
          for (const t of b.takeTransitions()) {
            assert.equal(t.from, state, 'transitions chain')
            assert.equal(t.at, now)
            if (t.to === 'closed') {
              assert.ok(probeSuccesses >= options.successesToClose, 'closed without enough probe successes')
              events = []
            } else if (t.to === 'open') {
              openedAt = t.at
              if (t.from === 'closed') assert.ok(shouldOpen(), 'opened without cause')
            } else assert.ok(now >= openedAt + options.openMs, 'half-open too early')
            state = t.to
            version++
            probeSuccesses = 0
          }
          assert.equal(b.state, state)
          assert.ok(b.probesInFlight <= options.halfOpenProbes, 'too many probes')
        }
        for (const o of ops) {
          if (o.op === 'advance') {
            now += o.ms
          } else if (o.op === 'start') {
            const allowed = b.canRun(now)
            sync()
            if (state === 'open') assert.ok(now < openedAt + options.openMs, 'canRun kept it open after openMs')
            const probes = outstanding.filter((e) => e.version === version && e.state === 'half-open').length
            assert.equal(allowed, state === 'closed' || (state === 'half-open' && probes < options.halfOpenProbes))
            if (allowed) {
              const permit = b.started(now)
              assert.equal(permit.probe, state === 'half-open')
              outstanding.push({ permit, state, version })
            }
          } else if (outstanding.length > 0) {
            const [entry] = outstanding.splice(o.pick % outstanding.length, 1) as [(typeof outstanding)[number]]
            const counted = o.outcome === 'release' ? b.release(entry.permit) : b.record(o.outcome, now, entry.permit)
            // record() may first turn an open breaker half-open: the permit is stale either way.
            const fresh = entry.version === version && !(state === 'open' && now >= openedAt + options.openMs)
            assert.equal(counted, fresh, 'only permits of the current state count')
            if (counted && o.outcome === 'success' && entry.state === 'half-open') probeSuccesses++
            if (counted && o.outcome !== 'release' && entry.state === 'closed') {
              events.push({ at: now, failure: o.outcome === 'failure' })
              const opens = shouldOpen()
              sync()
              assert.equal(state, opens ? 'open' : 'closed')
            }
          }
          sync()
          if (state === 'closed') {
            const snapshot = b.snapshot(now)
            assert.deepEqual({ calls: snapshot.calls, failures: snapshot.failures }, windowed())
          }
        }
      },
    ),
    { numRuns: 500 },
  )
})
