import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isLifelineError } from '../../src/errors.js'
import { SequenceBuffer, type GapPolicy, type SequenceBufferOptions } from '../../src/ordering/sequence-buffer.js'

interface Item {
  readonly id: number
  readonly key: string
  readonly seq: number
}

let nextId = 0
const rec = (key: string, seq: number): Item => ({ id: nextId++, key, seq })
const seqs = (items: readonly Item[]): number[] => items.map((i) => i.seq)
const buffer = (options: Partial<SequenceBufferOptions> = {}): SequenceBuffer<Item> =>
  new SequenceBuffer<Item>({ maxPerKey: 100, maxTotal: 1000, timeoutMs: 1000, policy: 'skip', ...options })

/** Offers `key`/`seq` at `now` and returns the verdict with items shown as sequences. */
function offer(b: SequenceBuffer<Item>, key: string, seq: number, now = 0): unknown {
  const v = b.offer(key, seq, rec(key, seq), now)
  if (v.kind === 'apply') return { kind: 'apply', seqs: seqs(v.items) }
  if (v.kind === 'overflow') return { kind: 'overflow', seq: v.item.seq, reason: v.reason }
  return v
}

test('verdicts: apply (with contiguous successors), buffered, duplicate (applied or held)', () => {
  const b = buffer()
  assert.deepEqual(offer(b, 'k', 5), { kind: 'apply', seqs: [5] }, 'the first sequence seen of a key is its start')
  assert.deepEqual(offer(b, 'k', 8), { kind: 'buffered' })
  assert.deepEqual(offer(b, 'k', 7), { kind: 'buffered' })
  assert.deepEqual(offer(b, 'k', 8), { kind: 'duplicate' }, 'a duplicate of a held sequence')
  assert.deepEqual(offer(b, 'k', 5), { kind: 'duplicate' })
  assert.deepEqual(offer(b, 'k', 2), { kind: 'duplicate' })
  assert.equal(b.buffered, 2)
  assert.deepEqual(offer(b, 'k', 6), { kind: 'apply', seqs: [6, 7, 8] })
  assert.deepEqual(offer(b, 'other', 0), { kind: 'apply', seqs: [0] }, 'keys are independent')
  assert.equal(b.lastApplied('k'), 8)
  assert.equal(b.duplicatesSkipped, 3)
  assert.deepEqual([b.buffered, b.gaps, b.keys], [0, 0, 2])
})

test('firstSequence: a new key must start there', () => {
  const b = buffer({ firstSequence: 1 })
  assert.deepEqual(offer(b, 'k', 0), { kind: 'duplicate' })
  assert.deepEqual(offer(b, 'k', 2), { kind: 'buffered' })
  assert.equal(b.lastApplied('k'), 0)
  assert.deepEqual(offer(b, 'k', 1), { kind: 'apply', seqs: [1, 2] })
})

test('overflow stores nothing, names the full limit, and never blocks the next expected sequence', () => {
  const b = buffer({ maxPerKey: 2, maxTotal: 3 })
  offer(b, 'a', 0)
  offer(b, 'b', 0)
  assert.deepEqual(offer(b, 'a', 2), { kind: 'buffered' })
  assert.deepEqual(offer(b, 'a', 3), { kind: 'buffered' })
  assert.deepEqual(offer(b, 'a', 4), { kind: 'overflow', seq: 4, reason: 'key' })
  assert.deepEqual(offer(b, 'b', 5), { kind: 'buffered' })
  assert.deepEqual(offer(b, 'b', 6), { kind: 'overflow', seq: 6, reason: 'total' })
  assert.equal(b.buffered, 3, 'the overflowed items were not stored')
  assert.deepEqual(offer(b, 'a', 2), { kind: 'duplicate' }, 'a duplicate is reported even when full')
  assert.deepEqual(offer(b, 'a', 1), { kind: 'apply', seqs: [1, 2, 3] }, 'the missing sequence needs no room')
  assert.deepEqual(offer(b, 'a', 4), { kind: 'apply', seqs: [4] }, 'offered again later, it goes through')
})

test("'skip' expiry applies the run after the gap, with the missing range; a late straggler is a duplicate", () => {
  const b = buffer({ timeoutMs: 100, policy: 'skip' })
  offer(b, 'k', 1, 0)
  offer(b, 'k', 4, 10)
  offer(b, 'k', 5, 20)
  assert.equal(b.nextDeadline(), 110)
  assert.deepEqual(b.expire(109), [])
  const [expiry, ...rest] = b.expire(110)
  assert.deepEqual(rest, [])
  assert.ok(expiry?.kind === 'skip')
  assert.deepEqual({ ...expiry, items: seqs(expiry.items) }, { key: 'k', kind: 'skip', missing: [2, 3], items: [4, 5] })
  assert.deepEqual([b.lastApplied('k'), b.gapsSkipped, b.buffered, b.gaps, b.nextDeadline()], [5, 1, 0, 0, undefined])
  assert.deepEqual(offer(b, 'k', 3, 200), { kind: 'duplicate' })
  assert.deepEqual(offer(b, 'k', 6, 200), { kind: 'apply', seqs: [6] })
})

test('each gap gets its full timeout, counted from the first arrival behind it (regression: one clock per key)', () => {
  const b = buffer({ timeoutMs: 100, policy: 'skip' })
  offer(b, 'k', 0, 0)
  offer(b, 'k', 2, 0) // gap [1] visible from t=0
  offer(b, 'k', 5, 50) // gap [3, 4] visible from t=50
  offer(b, 'k', 9, 30) // an out-of-order clock: gap [6, 8] visible from t=30
  assert.equal(b.nextDeadline(), 100)
  assert.deepEqual(b.expire(100).map((e) => e.missing), [[1, 1]])
  // Gap [3, 4] is behind item 5 (t=50) and item 9 (t=30): it has been visible since t=30.
  assert.equal(b.nextDeadline(), 130)
  assert.deepEqual(offer(b, 'k', 4, 120), { kind: 'buffered' })
  assert.deepEqual(b.expire(130).map((e) => e.missing), [[3, 3], [6, 8]], 'both due gaps go in one call, lowest first')
  assert.equal(b.lastApplied('k'), 9)
})

test("'dead-letter' expiry hands the held run out in order and moves last applied past it", () => {
  const b = buffer({ timeoutMs: 100, policy: 'dead-letter' })
  offer(b, 'k', 0, 0)
  offer(b, 'k', 3, 0)
  offer(b, 'k', 2, 5)
  offer(b, 'k', 6, 5)
  const expiries = b.expire(200).map((e) => ('items' in e ? { ...e, items: seqs(e.items) } : e))
  assert.deepEqual(expiries, [
    { key: 'k', kind: 'dead-letter', missing: [1, 1], items: [2, 3] },
    { key: 'k', kind: 'dead-letter', missing: [4, 5], items: [6] },
  ])
  assert.deepEqual(offer(b, 'k', 7, 200), { kind: 'apply', seqs: [7] }, 'later records of the key flow')
  assert.equal(b.gapsSkipped, 2)
})

test("'hold' releases nothing, reports on every call, and re-arms the timer instead of spinning", () => {
  const b = buffer({ timeoutMs: 100, policy: 'hold' })
  offer(b, 'k', 0, 0)
  offer(b, 'k', 4, 10)
  offer(b, 'k', 3, 20)
  assert.deepEqual(b.expire(110), [{ key: 'k', kind: 'hold', waitingMs: 100, missing: [1, 2] }])
  assert.deepEqual(b.expire(150), [{ key: 'k', kind: 'hold', waitingMs: 140, missing: [1, 2] }])
  assert.equal(b.nextDeadline(), 250, 'the next re-alert, one timeout after the last report')
  assert.deepEqual([b.buffered, b.gaps, b.oldestGapAgeMs(150)], [2, 1, 140])
  assert.deepEqual(offer(b, 'k', 1, 160), { kind: 'apply', seqs: [1] })
  assert.deepEqual(b.expire(170), [{ key: 'k', kind: 'hold', waitingMs: 160, missing: [2, 2] }], 'the next gap has waited as long')
  assert.deepEqual(offer(b, 'k', 2, 180), { kind: 'apply', seqs: [2, 3, 4] })
  assert.deepEqual([b.expire(1000), b.nextDeadline(), b.oldestGapAgeMs(1000)], [[], undefined, 0])
})

test('an infinite timeout never expires and sets no deadline', () => {
  const b = buffer({ timeoutMs: Infinity })
  offer(b, 'k', 0, 0)
  offer(b, 'k', 2, 0)
  assert.deepEqual([b.expire(Number.MAX_SAFE_INTEGER), b.nextDeadline(), b.oldestGapAgeMs(50)], [[], undefined, 50])
})

test('markApplied moves forward only; restore may move back; both give back held items', () => {
  const b = buffer()
  offer(b, 'k', 0)
  for (const s of [2, 3, 5, 7]) offer(b, 'k', s)
  const marked = b.markApplied('k', 4)
  assert.deepEqual({ apply: seqs(marked.apply), duplicates: seqs(marked.duplicates) }, { apply: [5], duplicates: [2, 3] })
  assert.deepEqual(b.markApplied('k', 1), { apply: [], duplicates: [] })
  assert.equal(b.lastApplied('k'), 5)
  assert.deepEqual(b.restore('k', 1), { apply: [], duplicates: [] })
  assert.equal(b.lastApplied('k'), 1)
  assert.deepEqual(offer(b, 'k', 2), { kind: 'apply', seqs: [2] })
  const restored = b.restore('k', 6)
  assert.deepEqual({ apply: seqs(restored.apply), duplicates: seqs(restored.duplicates) }, { apply: [7], duplicates: [] })
  assert.equal(b.duplicatesSkipped, 2)
  b.restore('new', 10)
  assert.deepEqual(offer(b, 'new', 10), { kind: 'duplicate' })
  assert.deepEqual(offer(b, 'new', 11), { kind: 'apply', seqs: [11] })
})

test('forget gives back the held items in order and drops the key and its deadline', () => {
  const b = buffer()
  offer(b, 'k', 0, 0)
  offer(b, 'k', 5, 0)
  offer(b, 'k', 3, 0)
  assert.deepEqual(seqs(b.forget('k')), [3, 5])
  assert.deepEqual([b.buffered, b.keys, b.gaps, b.lastApplied('k'), b.nextDeadline()], [0, 0, 0, undefined, undefined])
  assert.deepEqual(b.expire(10_000), [])
  assert.deepEqual(b.forget('unknown'), [])
})

test('maxTrackedKeys evicts the least recently used idle key; held keys are never evicted', () => {
  const b = buffer({ maxTrackedKeys: 2 })
  offer(b, 'a', 1)
  offer(b, 'b', 1)
  offer(b, 'a', 2) // touches a
  offer(b, 'c', 1) // evicts b
  assert.deepEqual([b.lastApplied('a'), b.lastApplied('b'), b.lastApplied('c')], [2, undefined, 1])
  assert.deepEqual(offer(b, 'b', 0), { kind: 'apply', seqs: [0] }, 'an evicted key restarts at its next record unless restored')
  b.restore('b', 1)
  assert.deepEqual(offer(b, 'b', 1), { kind: 'duplicate' })
  offer(b, 'x', 0)
  offer(b, 'x', 5) // x is held: not in the LRU
  for (const k of ['p', 'q', 'r']) offer(b, k, 0)
  assert.equal(b.lastApplied('x'), 0)
  assert.equal(b.keys, 3)
})

test('options and arguments are validated with the option path in the message', () => {
  const bad: Array<[Partial<SequenceBufferOptions>, string]> = [
    [{ maxPerKey: 0 }, 'maxPerKey:'],
    [{ maxTotal: 1.5 }, 'maxTotal:'],
    [{ maxTrackedKeys: -1 }, 'maxTrackedKeys:'],
    [{ timeoutMs: 0 }, 'timeoutMs:'],
    [{ timeoutMs: Number.NaN }, 'timeoutMs:'],
    [{ policy: 'drop' as GapPolicy }, 'policy:'],
    [{ firstSequence: -1 }, 'firstSequence:'],
  ]
  for (const [options, prefix] of bad) {
    assert.throws(() => buffer(options), (err) => isLifelineError(err, 'LL_OPTIONS_INVALID') && err.message.startsWith(prefix))
  }
  const b = buffer()
  const argument = (err: unknown): boolean => isLifelineError(err, 'LL_ARGUMENT_INVALID')
  assert.throws(() => b.offer('k', -1, rec('k', -1), 0), argument)
  assert.throws(() => b.offer('k', 1.5, rec('k', 1.5), 0), argument)
  assert.throws(() => b.offer('k', 1, rec('k', 1), Number.NaN), argument)
  assert.throws(() => b.expire(Infinity), argument)
  assert.throws(() => b.restore('k', Number.NaN), argument)
  assert.equal(b.keys, 0, 'a rejected call changes nothing')
})

const keyArb = fc.constantFrom('a', 'b', 'c')

test("model: with 'hold' and no timeout, each key applies exactly its contiguous run, once, in order, losing nothing", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ key: keyArb, seq: fc.nat(25) }), { maxLength: 200 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 10 }),
      (stream, maxPerKey, maxTotal) => {
        const b = new SequenceBuffer<Item>({ maxPerKey, maxTotal, timeoutMs: Infinity, policy: 'hold' })
        const applied = new Map<string, number[]>()
        const settled = new Map<number, string>() // item id → final disposition
        let pending: Item[] = []
        const submit = (it: Item): boolean => {
          const v = b.offer(it.key, it.seq, it, 0)
          if (v.kind === 'overflow') {
            assert.equal(v.item, it)
            pending.push(it)
            return false
          }
          settled.set(it.id, v.kind)
          if (v.kind === 'apply') {
            assert.equal(v.items[0], it)
            for (const a of v.items) {
              const list = applied.get(a.key) ?? []
              assert.ok(list.length === 0 || a.seq === (list.at(-1) as number) + 1, `out of order or twice: ${a.key}/${a.seq}`)
              list.push(a.seq)
              applied.set(a.key, list)
              settled.set(a.id, 'applied')
            }
          }
          return true
        }
        const retry = (): boolean => {
          const again = pending
          pending = []
          return again.map(submit).some(Boolean)
        }
        for (const { key, seq } of stream) {
          submit(rec(key, seq))
          retry() // the runtime offers overflowed items again after it resumes
        }
        while (retry());
        for (const key of ['a', 'b', 'c']) {
          const offered = stream.filter((s) => s.key === key).map((s) => s.seq)
          const run: number[] = []
          if (offered.length > 0) for (let s = offered[0] as number; offered.includes(s); s++) run.push(s)
          assert.deepEqual(applied.get(key) ?? [], run, `key ${key}`)
          for (const held of b.forget(key)) settled.set(held.id, 'held')
        }
        for (const it of pending) settled.set(it.id, 'overflow')
        assert.equal(settled.size, stream.length, 'every offered item is applied, a duplicate, held or overflowed')
        assert.ok([...settled.values()].every((d) => d !== 'buffered'), 'a buffered item was never released')
        assert.deepEqual(b.expire(Number.MAX_SAFE_INTEGER), [])
      },
    ),
    { numRuns: 300 },
  )
})

type Op = { op: 'offer'; key: string; seq: number } | { op: 'advance'; ms: number } | { op: 'expire' }
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('offer' as const), key: keyArb, seq: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.nat(40) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'expire' as const }) },
)

test('model: expiry under every policy fires exactly when a gap is due, keeps release order, and accounts for every item', () => {
  fc.assert(
    fc.property(fc.constantFrom<GapPolicy>('hold', 'skip', 'dead-letter'), fc.integer({ min: 1, max: 60 }), fc.array(opArb, { maxLength: 200 }), fc.integer({ min: 1, max: 8 }), (policy, timeoutMs, ops, maxTotal) => {
      const b = new SequenceBuffer<Item>({ maxPerKey: 5, maxTotal, timeoutMs, policy })
      const held = new Map<string, Array<{ it: Item; at: number }>>()
      const released = new Map<string, number[]>() // applied or dead-lettered, per key
      const fates = new Map<number, string>()
      let offered = 0
      let now = 0
      const release = (items: readonly Item[], fate: string): void => {
        for (const it of items) {
          const list = released.get(it.key) ?? []
          assert.ok(list.length === 0 || it.seq > (list.at(-1) as number), `released out of order: ${it.key}/${it.seq}`)
          list.push(it.seq)
          released.set(it.key, list)
          held.set(it.key, (held.get(it.key) ?? []).filter((h) => h.it !== it))
          fates.set(it.id, fate)
        }
      }
      const oldest = (key: string): number => Math.min(...(held.get(key) ?? []).map((h) => h.at))
      const due = (key: string): boolean => (held.get(key) ?? []).length > 0 && oldest(key) + timeoutMs <= now
      const runExpire = (): void => {
        const expiries = b.expire(now)
        for (const e of expiries) {
          assert.ok(due(e.key), `${e.kind} of ${e.key} before it was due`)
          if (e.kind === 'hold') {
            assert.equal(e.waitingMs, now - oldest(e.key))
            continue
          }
          assert.equal(e.missing[0], (released.get(e.key)?.at(-1) as number) + 1)
          assert.ok(e.missing[0] <= e.missing[1] && e.missing[1] === (e.items[0] as Item).seq - 1)
          release(e.items, e.kind)
        }
        const reported = new Set(expiries.map((e) => e.key))
        for (const key of ['a', 'b', 'c']) {
          if (policy === 'hold') assert.equal(reported.has(key), due(key), `hold report of ${key}`)
          else assert.ok(!due(key), `${key} was due but not expired`)
        }
        const next = b.nextDeadline()
        assert.ok(next === undefined || next > now, 'nextDeadline is in the past right after expire: the timer would spin')
      }
      for (const o of ops) {
        if (o.op === 'advance') now += o.ms
        else if (o.op === 'expire') runExpire()
        else {
          const it = rec(o.key, o.seq)
          offered++
          const v = b.offer(o.key, o.seq, it, now)
          if (v.kind === 'apply') release(v.items, 'applied')
          else if (v.kind === 'buffered') held.set(o.key, [...(held.get(o.key) ?? []), { it, at: now }])
          else fates.set(it.id, v.kind)
        }
        const heldCount = [...held.values()].reduce((n, h) => n + h.length, 0)
        assert.equal(b.buffered, heldCount)
        assert.ok(b.buffered <= maxTotal)
        if (policy !== 'hold') {
          const deadlines = ['a', 'b', 'c'].filter((k) => (held.get(k) ?? []).length > 0).map((k) => oldest(k) + timeoutMs)
          assert.equal(b.nextDeadline(), deadlines.length === 0 ? undefined : Math.min(...deadlines))
        }
      }
      now += timeoutMs
      runExpire()
      if (policy !== 'hold') assert.equal(b.buffered, 0, 'after the last timeout every held item is released')
      for (const key of ['a', 'b', 'c']) for (const it of b.forget(key)) fates.set(it.id, 'held')
      assert.equal(fates.size, offered, 'every offered item has exactly one fate')
    }),
    { numRuns: 400 },
  )
})

test('100k shuffled offers over 1k keys stay fast (regression: linear work per offer or expire)', () => {
  const b = new SequenceBuffer<Item>({ maxPerKey: 64, maxTotal: 100_000, timeoutMs: 50, policy: 'skip', firstSequence: 0 })
  const started = performance.now()
  let applied = 0
  for (let i = 0; i < 100_000; i++) {
    const key = `key-${i % 1000}`
    const round = Math.floor(i / 1000)
    const seq = round % 2 === 0 ? round + 1 : round - 1 // pairs swapped: every other record waits for its gap
    const v = b.offer(key, seq, rec(key, seq), i)
    if (v.kind === 'apply') applied += v.items.length
    for (const e of b.expire(i)) if ('items' in e) applied += e.items.length
    b.nextDeadline()
  }
  const elapsed = performance.now() - started
  assert.ok(b.gapsSkipped > 0, 'expiry did some of the work')
  assert.equal(applied + b.buffered + b.duplicatesSkipped, 100_000)
  assert.ok(elapsed < 5_000, `took ${elapsed.toFixed(0)} ms`)
})

test('deadlines stay right when churn leaves many stale entries behind (regression: unbounded deadline heap)', () => {
  const b = buffer({ timeoutMs: 100, policy: 'skip' })
  for (let k = 0; k < 10; k++) {
    offer(b, `k${k}`, 0, 0)
    offer(b, `k${k}`, 2, 50 - k) // k9 has the oldest gap
  }
  offer(b, 'churn', 0, 0)
  for (let s = 1; s < 2000; s += 2) {
    offer(b, 'churn', s + 1, 1000 + s) // blocks ...
    offer(b, 'churn', s, 1000 + s) // ... and unblocks, leaving a stale deadline entry each time
  }
  assert.equal(b.nextDeadline(), 141)
  assert.deepEqual(b.expire(145).map((e) => e.key), ['k9', 'k8', 'k7', 'k6', 'k5'])
  assert.equal(b.nextDeadline(), 146)
  assert.equal(b.gaps, 5)
})
