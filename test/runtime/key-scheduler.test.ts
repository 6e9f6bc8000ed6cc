import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isLifelineError } from '../../src/errors.js'
import { KeyScheduler, schedulingKey, type Ordering, type SchedulableItem } from '../../src/runtime/key-scheduler.js'

interface Item extends SchedulableItem {
  readonly id: number
}

let nextId = 0
function item(topic: string, partition: number, key: string | null, size = 1): Item {
  return { id: nextId++, topic, partition, schedulingKey: key, size }
}

/** The ordering unit of an item, as the specification defines it. */
function laneOf(ordering: Ordering, it: Item): string {
  if (ordering === 'partition') return `p/${it.topic}/${it.partition}`
  if (ordering === 'key' && it.schedulingKey !== null) return `k/${it.topic}/${JSON.stringify(it.schedulingKey)}`
  return `u/${it.id}`
}

/**
 * A declarative O(n) specification: a lane is ready when it has queued items and nothing in flight; next()
 * serves the lane that became ready first, and within a lane the oldest item.
 */
class Model {
  queued: Item[] = []
  running = new Set<Item>()
  busy = new Set<string>()
  readySince = new Map<string, number>()
  clock = 0

  constructor(
    readonly ordering: Ordering,
    readonly concurrency: number,
  ) {}

  hasQueued(lane: string): boolean {
    return this.queued.some((q) => laneOf(this.ordering, q) === lane)
  }

  enqueue(it: Item): void {
    const lane = laneOf(this.ordering, it)
    if (!this.busy.has(lane) && !this.readySince.has(lane)) this.readySince.set(lane, this.clock++)
    this.queued.push(it)
  }

  next(): Item | undefined {
    if (this.running.size >= this.concurrency || this.readySince.size === 0) return undefined
    const [lane] = [...this.readySince].reduce((a, b) => (b[1] < a[1] ? b : a))
    this.readySince.delete(lane)
    const index = this.queued.findIndex((q) => laneOf(this.ordering, q) === lane)
    const [it] = this.queued.splice(index, 1) as [Item]
    this.busy.add(lane)
    this.running.add(it)
    return it
  }

  done(it: Item): void {
    const lane = laneOf(this.ordering, it)
    this.running.delete(it)
    this.busy.delete(lane)
    if (this.hasQueued(lane)) this.readySince.set(lane, this.clock++)
  }

  removePartition(topic: string, partition: number): Item[] {
    const dropped = this.queued.filter((q) => q.topic === topic && q.partition === partition)
    this.queued = this.queued.filter((q) => !(q.topic === topic && q.partition === partition))
    for (const lane of [...this.readySince.keys()]) if (!this.hasQueued(lane)) this.readySince.delete(lane)
    return dropped
  }
}

type Op =
  | { op: 'enqueue'; topic: string; partition: number; key: string | null; size: number }
  | { op: 'next' }
  | { op: 'done'; pick: number }
  | { op: 'remove'; topic: string; partition: number }

const topicArb = fc.constantFrom('a', 'b')
const partitionArb = fc.integer({ min: 0, max: 2 })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('enqueue' as const),
      topic: topicArb,
      partition: partitionArb,
      // '\u0000' keys check that key bytes cannot forge another lane id.
      key: fc.constantFrom(null, 'k1', 'k2', 'k3', '\u0000', 'a\u0000k1'),
      size: fc.integer({ min: 0, max: 1000 }),
    }),
  },
  { weight: 5, arbitrary: fc.constant({ op: 'next' as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('done' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), topic: topicArb, partition: partitionArb }) },
)

test('agrees with the specification model under random enqueue/next/done/removePartition interleavings', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<Ordering>('key', 'partition', 'none'),
      fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(Infinity)),
      fc.array(opArb, { maxLength: 300, size: 'max' }),
      (ordering, concurrency, ops) => {
        const scheduler = new KeyScheduler<Item>({ ordering, concurrency })
        const model = new Model(ordering, concurrency)
        const enqueued: Item[] = []
        const dispatched: Item[] = []
        const dropped: Item[] = []
        const lastSeqOfLane = new Map<string, number>()

        const check = (): void => {
          assert.equal(scheduler.queued, model.queued.length)
          assert.equal(scheduler.inFlight, model.running.size)
          assert.equal(scheduler.queuedBytes, model.queued.reduce((sum, q) => sum + q.size, 0))
          assert.equal(scheduler.inFlightBytes, [...model.running].reduce((sum, q) => sum + q.size, 0))
          // Independent of the model: the ordering and concurrency guarantees.
          assert.ok(scheduler.inFlight <= concurrency)
          const lanes = [...model.running].map((r) => laneOf(ordering, r))
          assert.equal(new Set(lanes).size, lanes.length, 'two items of one lane in flight')
        }
        const takeNext = (): Item | undefined => {
          const got = scheduler.next()
          assert.equal(got, model.next())
          if (got === undefined) {
            // Work-conserving: nothing runnable was held back.
            const runnable = model.queued.some((q) => !model.busy.has(laneOf(ordering, q)))
            assert.ok(model.running.size >= concurrency || !runnable, 'next() idled with runnable work')
          } else {
            dispatched.push(got)
            const lane = laneOf(ordering, got)
            assert.ok((lastSeqOfLane.get(lane) ?? -1) < got.id, 'lane order broken')
            lastSeqOfLane.set(lane, got.id)
          }
          return got
        }

        for (const o of ops) {
          if (o.op === 'enqueue') {
            const it = item(o.topic, o.partition, o.key, o.size)
            enqueued.push(it)
            scheduler.enqueue(it)
            model.enqueue(it)
          } else if (o.op === 'next') {
            takeNext()
          } else if (o.op === 'done') {
            const running = [...model.running]
            if (running.length === 0) {
              assert.equal(scheduler.done(item('a', 0, null)), false)
            } else {
              const it = running[o.pick % running.length] as Item
              assert.equal(scheduler.done(it), true)
              assert.equal(scheduler.done(it), false, 'double done')
              model.done(it)
            }
          } else {
            const got = scheduler.removePartition(o.topic, o.partition)
            assert.deepEqual(got, model.removePartition(o.topic, o.partition))
            dropped.push(...got)
          }
          check()
        }

        // Drain: every item ends up dispatched or dropped, exactly once.
        for (;;) {
          for (const r of [...model.running]) {
            scheduler.done(r)
            model.done(r)
          }
          if (takeNext() === undefined && model.running.size === 0) break
          check()
        }
        assert.equal(scheduler.queued, 0)
        assert.equal(scheduler.queuedBytes, 0)
        const seen = [...dispatched, ...dropped].map((d) => d.id).sort((x, y) => x - y)
        assert.deepEqual(seen, enqueued.map((e) => e.id))
      },
    ),
    { numRuns: 300 },
  )
})

test("'key' mode: one in flight per key, keys interleave fairly, null keys run independently", () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 10 })
  const a1 = item('t', 0, 'A')
  const a2 = item('t', 0, 'A')
  const a3 = item('t', 1, 'A') // same key, other partition: still ordered after a1, a2
  const b1 = item('t', 0, 'B')
  const n1 = item('t', 0, null)
  const n2 = item('t', 0, null)
  for (const it of [a1, a2, a3, b1, n1, n2]) s.enqueue(it)
  assert.deepEqual([s.next(), s.next(), s.next(), s.next(), s.next()], [a1, b1, n1, n2, undefined])
  s.done(a1)
  assert.equal(s.next(), a2)
  s.done(a2)
  assert.equal(s.next(), a3)
})

test("'key' mode keys are per topic: the same key in two topics runs concurrently", () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 10 })
  const x = item('orders', 0, 'K')
  const y = item('payments', 0, 'K')
  s.enqueue(x)
  s.enqueue(y)
  assert.deepEqual([s.next(), s.next()], [x, y])
})

test("'partition' mode orders null-key records of a partition too", () => {
  const s = new KeyScheduler<Item>({ ordering: 'partition', concurrency: 10 })
  const p0a = item('t', 0, null)
  const p0b = item('t', 0, 'X')
  const p1 = item('t', 1, null)
  for (const it of [p0a, p0b, p1]) s.enqueue(it)
  assert.deepEqual([s.next(), s.next(), s.next()], [p0a, p1, undefined])
  s.done(p0a)
  assert.equal(s.next(), p0b)
})

test("'none' mode runs in enqueue order up to the concurrency limit", () => {
  const s = new KeyScheduler<Item>({ ordering: 'none', concurrency: 2 })
  const items = [item('t', 0, 'A'), item('t', 0, 'A'), item('t', 0, 'A')]
  for (const it of items) s.enqueue(it)
  assert.deepEqual([s.next(), s.next(), s.next()], [items[0], items[1], undefined])
  s.done(items[1] as Item)
  assert.equal(s.next(), items[2])
})

test('a busy key cannot starve others: lanes take turns (regression: FIFO over ready keys)', () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 1 })
  for (let i = 0; i < 3; i++) s.enqueue(item('t', 0, 'hot'))
  const cold = item('t', 0, 'cold')
  s.enqueue(cold)
  const first = s.next() as Item
  assert.equal(first.schedulingKey, 'hot')
  s.done(first)
  assert.equal(s.next(), cold, 'the cold key runs before the hot key’s second item')
})

test('removePartition drops queued items in enqueue order and leaves in-flight ones running', () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 10 })
  const running = item('t', 0, 'A', 10)
  const q1 = item('t', 0, 'A', 20)
  const other = item('t', 1, 'A', 30)
  const q2 = item('t', 0, 'B', 40)
  s.enqueue(running)
  assert.equal(s.next(), running)
  for (const it of [q1, other, q2]) s.enqueue(it)
  assert.equal(s.queuedBytes, 90)
  assert.deepEqual(s.removePartition('t', 0), [q1, q2])
  assert.equal(s.queued, 1)
  assert.equal(s.queuedBytes, 30)
  assert.equal(s.inFlight, 1)
  assert.equal(s.inFlightBytes, 10)
  assert.equal(s.next(), undefined, "key A's lane is still busy with the revoked partition's in-flight item")
  assert.equal(s.done(running), true)
  assert.equal(s.next(), other)
  assert.deepEqual(s.removePartition('t', 0), [])
})

test('an item cannot be enqueued twice while queued or in flight (re-enqueue after done is fine), nor with a bad size', () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 1 })
  const it = item('t', 0, 'A')
  s.enqueue(it)
  assert.throws(() => s.enqueue(it), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
  s.next()
  assert.throws(() => s.enqueue(it), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
  s.done(it)
  s.enqueue(it)
  assert.equal(s.next(), it)
  for (const size of [-1, Number.NaN, Infinity]) {
    assert.throws(() => s.enqueue(item('t', 0, 'A', size)), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && /size/.test(err.message))
  }
  assert.equal(s.queued, 0, 'a rejected item is not queued')
})

test('adopt(): only an idle scheduler takes a running item, and later items of its lane wait for its done()', () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 2 })
  assert.equal(s.idle, true)
  const first = item('t', 0, 'A', 4)
  s.adopt(first)
  assert.equal(s.idle, false)
  assert.equal(s.inFlight, 1)
  assert.equal(s.inFlightBytes, 4)
  assert.throws(() => s.adopt(item('t', 0, 'B')), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && /idle/.test(err.message))
  const second = item('t', 0, 'A')
  const other = item('t', 0, 'B')
  s.enqueue(second)
  s.enqueue(other)
  assert.equal(s.next(), other, "A's lane is busy with the adopted item; B runs")
  assert.equal(s.next(), undefined)
  assert.equal(s.done(first), true)
  assert.equal(s.next(), second, 'the adopted item finished: its lane goes on')
  assert.equal(s.done(first), false, 'done twice is refused')
  s.done(second)
  s.done(other)
  assert.equal(s.idle, true)
  const again = item('t', 0, 'C')
  s.adopt(again)
  assert.throws(() => { s.done(again); s.adopt(again); s.adopt(again) }, (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && /already/.test(err.message))
})

test('options are validated with the option path in the message', () => {
  for (const concurrency of [0, -1, 1.5, Number.NaN]) {
    assert.throws(
      () => new KeyScheduler({ concurrency }),
      (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.message.startsWith('concurrency:'),
    )
  }
  assert.throws(
    () => new KeyScheduler({ ordering: 'offset' as Ordering }),
    (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.message.startsWith('ordering:'),
  )
  const s = new KeyScheduler()
  assert.equal(s.ordering, 'key')
  assert.equal(s.concurrency, 1)
  assert.equal(new KeyScheduler({ concurrency: Infinity }).concurrency, Infinity)
})

test('schedulingKey maps key bytes one-to-one (latin1) and keeps null', () => {
  assert.equal(schedulingKey(null), null)
  assert.equal(schedulingKey(Buffer.from([0x00, 0xff, 0x41])), '\u0000\u00ffA')
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 16 }), (a, b) => {
      const same = Buffer.from(a).equals(Buffer.from(b))
      assert.equal(schedulingKey(Buffer.from(a)) === schedulingKey(Buffer.from(b)), same)
    }),
  )
})

test('100k items over 1k keys schedule in amortized O(1) (regression: quadratic next())', () => {
  const s = new KeyScheduler<Item>({ ordering: 'key', concurrency: 64 })
  const n = 100_000
  const started = performance.now()
  for (let i = 0; i < n; i++) s.enqueue(item('t', i % 12, `key-${i % 1000}`))
  let completed = 0
  const running: Item[] = []
  while (completed < n) {
    for (let it = s.next(); it !== undefined; it = s.next()) running.push(it)
    const it = running.shift() as Item
    s.done(it)
    completed++
  }
  const elapsed = performance.now() - started
  assert.equal(s.queued + s.inFlight, 0)
  assert.ok(elapsed < 5_000, `took ${elapsed.toFixed(0)} ms`)
})
