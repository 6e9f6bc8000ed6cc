import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isLifelineError } from '../../src/errors.js'
import { PartitionOffsets } from '../../src/runtime/offset-tracker.js'

/** The obvious O(n) specification the tracker must agree with. */
class Model {
  tracked: Array<{ offset: number; done: boolean }> = []
  lastTracked: number | undefined
  committed: number | undefined

  track(offset: number): boolean {
    if (this.lastTracked !== undefined && offset <= this.lastTracked) return false
    this.tracked.push({ offset, done: false })
    this.lastTracked = offset
    return true
  }

  complete(offset: number): boolean {
    const entry = this.tracked.find((e) => e.offset === offset && !e.done)
    if (entry === undefined) return false
    entry.done = true
    return true
  }

  get lowestUnfinished(): number | undefined {
    return this.tracked.find((e) => !e.done)?.offset
  }

  get inFlight(): number {
    return this.tracked.filter((e) => !e.done).length
  }

  committable(): number | undefined {
    const candidate = this.lowestUnfinished ?? (this.lastTracked === undefined ? undefined : this.lastTracked + 1)
    if (candidate === undefined || (this.committed !== undefined && candidate <= this.committed)) return undefined
    return candidate
  }

  markCommitted(offset: number): boolean {
    if (this.committed !== undefined && offset <= this.committed) return false
    this.committed = offset
    return true
  }

  reset(from: number): void {
    this.tracked = []
    this.lastTracked = from - 1
    this.committed = from
  }
}

type Op =
  | { op: 'track'; gap: number }
  | { op: 'stale'; back: number }
  | { op: 'complete'; pick: number }
  | { op: 'complete-unknown'; offset: number }
  | { op: 'commit' }
  | { op: 'commit-any'; offset: number }
  | { op: 'reset'; offset: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('track' as const), gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('stale' as const), back: fc.integer({ min: 0, max: 5 }) }) },
  { weight: 10, arbitrary: fc.record({ op: fc.constant('complete' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('complete-unknown' as const), offset: fc.nat({ max: 500 }) }) },
  { weight: 3, arbitrary: fc.constant({ op: 'commit' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('commit-any' as const), offset: fc.nat({ max: 500 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const), offset: fc.nat({ max: 500 }) }) },
)

test('agrees with the model under random completion orders, commits and resets', () => {
  fc.assert(
    fc.property(fc.option(fc.nat({ max: 100 }), { nil: undefined }), fc.array(opArb, { maxLength: 400, size: 'max' }), (start, ops) => {
      const tracker = new PartitionOffsets(start)
      const model = new Model()
      if (start !== undefined) model.reset(start)
      let lastCommittable: number | undefined
      for (const o of ops) {
        switch (o.op) {
          case 'track': {
            const offset = (model.lastTracked ?? 0) + 1 + o.gap
            assert.equal(tracker.track(offset), model.track(offset))
            break
          }
          case 'stale': {
            const offset = Math.max(0, (model.lastTracked ?? 0) - o.back)
            assert.equal(tracker.track(offset), model.track(offset))
            break
          }
          case 'complete': {
            if (model.tracked.length === 0) break
            const offset = (model.tracked[o.pick % model.tracked.length] as { offset: number }).offset
            assert.equal(tracker.complete(offset), model.complete(offset))
            break
          }
          case 'complete-unknown':
            assert.equal(tracker.complete(o.offset), model.complete(o.offset))
            break
          case 'commit': {
            const offset = tracker.committable()
            if (offset !== undefined) assert.equal(tracker.markCommitted(offset), model.markCommitted(offset))
            break
          }
          case 'commit-any': {
            const before = tracker.committed
            assert.equal(tracker.markCommitted(o.offset), model.markCommitted(o.offset))
            // Never goes backwards: a lower or equal commit is ignored.
            if (before !== undefined) assert.ok((tracker.committed as number) >= before)
            break
          }
          case 'reset':
            tracker.reset(o.offset)
            model.reset(o.offset)
            lastCommittable = undefined
            break
        }
        const committable = tracker.committable()
        assert.equal(committable, model.committable())
        assert.equal(tracker.inFlight, model.inFlight)
        assert.equal(tracker.lowestUnfinished, model.lowestUnfinished)
        assert.equal(tracker.lastTracked, model.lastTracked)
        assert.equal(tracker.committed, model.committed)
        if (committable !== undefined) {
          // Never passes an unfinished offset.
          for (const e of model.tracked) if (!e.done) assert.ok(e.offset >= committable, `${committable} passes unfinished ${e.offset}`)
          // Never goes backwards (between resets) and is always news.
          if (lastCommittable !== undefined) assert.ok(committable >= lastCommittable)
          if (tracker.committed !== undefined) assert.ok(committable > tracker.committed)
          lastCommittable = committable
        }
      }
    }),
    { numRuns: 300 },
  )
})

test('the module example: out-of-order completion with gaps', () => {
  const offsets = new PartitionOffsets(100)
  assert.equal(offsets.committable(), undefined, 'nothing new right after the start position')
  offsets.track(100)
  offsets.track(101)
  offsets.track(105) // 102–104: compacted away or transaction markers
  assert.equal(offsets.complete(101), true)
  assert.equal(offsets.committable(), undefined, '100 is unfinished and 100 is already the committed position')
  assert.equal(offsets.complete(100), true)
  assert.equal(offsets.committable(), 105)
  assert.equal(offsets.lowestUnfinished, 105)
  assert.equal(offsets.complete(105), true)
  assert.equal(offsets.committable(), 106, 'all done: last tracked + 1, across the gap')
  assert.equal(offsets.markCommitted(106), true)
  assert.equal(offsets.committable(), undefined)
  assert.equal(offsets.inFlight, 0)
  assert.equal(offsets.lowestUnfinished, undefined)
})

test('without a start position the first tracked offset may be committed as the position', () => {
  const offsets = new PartitionOffsets()
  assert.equal(offsets.committable(), undefined)
  assert.equal(offsets.committed, undefined)
  offsets.track(42)
  assert.equal(offsets.committable(), 42)
  offsets.complete(42)
  assert.equal(offsets.committable(), 43)
})

test('stale and duplicate deliveries, double and unknown completions are refused', () => {
  const offsets = new PartitionOffsets(10)
  assert.equal(offsets.track(9), false, 'below the start position')
  assert.equal(offsets.track(10), true)
  assert.equal(offsets.track(10), false, 'duplicate')
  assert.equal(offsets.complete(11), false, 'never tracked')
  assert.equal(offsets.complete(10), true)
  assert.equal(offsets.complete(10), false, 'already completed')
  assert.equal(offsets.inFlight, 0)
})

test('a late acknowledgement of an older commit is ignored', () => {
  const offsets = new PartitionOffsets(0)
  assert.equal(offsets.markCommitted(50), true)
  assert.equal(offsets.markCommitted(40), false)
  assert.equal(offsets.markCommitted(50), false)
  assert.equal(offsets.committed, 50)
})

test('reset drops in-flight offsets and may move the position back (seek)', () => {
  const offsets = new PartitionOffsets(100)
  offsets.track(100)
  offsets.track(101)
  offsets.complete(100)
  offsets.markCommitted(101)
  offsets.reset(50)
  assert.equal(offsets.inFlight, 0)
  assert.equal(offsets.committed, 50)
  assert.equal(offsets.lastTracked, 49)
  assert.equal(offsets.complete(101), false, 'a straggler from before the reset')
  assert.equal(offsets.committable(), undefined)
  offsets.track(50)
  offsets.complete(50)
  assert.equal(offsets.committable(), 51)
})

test('a commit acknowledged after a reset cannot move the new position (regression: stale ack after seek)', () => {
  const offsets = new PartitionOffsets(100)
  offsets.track(100)
  offsets.complete(100)
  const sent = { offset: offsets.committable() as number, generation: offsets.generation }
  offsets.reset(50) // seek back to replay
  assert.equal(offsets.generation, sent.generation + 1)
  assert.equal(offsets.markCommitted(sent.offset, sent.generation), false)
  assert.equal(offsets.committed, 50)
  offsets.track(50)
  offsets.complete(50)
  assert.equal(offsets.committable(), 51)
  assert.equal(offsets.markCommitted(51, offsets.generation), true)
})

test('invalid offsets throw LL_ARGUMENT_INVALID', () => {
  const offsets = new PartitionOffsets()
  for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
    assert.throws(() => offsets.track(bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    assert.throws(() => offsets.complete(bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    assert.throws(() => offsets.markCommitted(bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    assert.throws(() => offsets.reset(bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    assert.throws(() => new PartitionOffsets(bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
  }
})

test('100k in-flight offsets completed in random order stay fast and exact (regression: quadratic completion)', () => {
  const n = 100_000
  const offsets = new PartitionOffsets()
  for (let i = 0; i < n; i++) offsets.track(i * 2) // gaps everywhere
  // Deterministic shuffle (LCG) so the test is reproducible.
  const order = Array.from({ length: n }, (_, i) => i)
  let seed = 12345
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    const j = seed % (i + 1)
    ;[order[i], order[j]] = [order[j] as number, order[i] as number]
  }
  const done = new Uint8Array(n)
  let low = 0
  const started = performance.now()
  for (const i of order) {
    assert.equal(offsets.complete(i * 2), true)
    done[i] = 1
    while (low < n && done[low] === 1) low++
    if (i % 997 === 0) assert.equal(offsets.committable(), low < n ? low * 2 : (n - 1) * 2 + 1)
  }
  const elapsed = performance.now() - started
  assert.equal(offsets.inFlight, 0)
  assert.equal(offsets.committable(), (n - 1) * 2 + 1)
  assert.ok(elapsed < 5_000, `100k completions took ${elapsed.toFixed(0)} ms`)
})
