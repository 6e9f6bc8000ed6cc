import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RefusalSampler } from '../../src/dlq/refusals.js'

test('refusal sampling: a few rows per source and in all per window; what is left out is reported by the next row (finding 7)', () => {
  const s = new RefusalSampler({ perSource: 2, total: 3, windowMs: 1000, maxSources: 3 })
  const t0 = 10_000
  assert.deepEqual(s.admit('a', t0), { write: true, suppressed: 0 })
  assert.deepEqual(s.admit('a', t0 + 1), { write: true, suppressed: 0 })
  assert.deepEqual(s.admit('a', t0 + 2), { write: false, suppressed: 0 })
  assert.deepEqual(s.admit('a', t0 + 3), { write: false, suppressed: 0 })
  assert.deepEqual(s.admit('b', t0 + 4), { write: true, suppressed: 0 })
  // The window's total is spent: b and newcomers are left out (past maxSources they share one slot).
  assert.deepEqual(s.admit('b', t0 + 5), { write: false, suppressed: 0 })
  for (const source of ['c', 'd', 'e']) assert.equal(s.admit(source, t0 + 6).write, false)
  // The next window: each source's first row reports what was left out of it before.
  assert.deepEqual(s.admit('a', t0 + 1000), { write: true, suppressed: 2 })
  assert.deepEqual(s.admit('a', t0 + 1001), { write: true, suppressed: 0 })
  assert.deepEqual(s.admit('b', t0 + 1002), { write: true, suppressed: 1 })
  assert.deepEqual(s.admit('b', t0 + 1003), { write: false, suppressed: 0 })
  // A window with nothing left to report forgets its sources.
  assert.deepEqual(s.admit('c', t0 + 5000), { write: true, suppressed: 1 }, 'c was tracked (the third source); d and e shared the overflow slot')
})

test('refusal sampling bounds the rows of a flood from many sources (finding 7)', () => {
  const s = new RefusalSampler({ perSource: 5, total: 60, windowMs: 60_000, maxSources: 100 })
  let written = 0
  for (let i = 0; i < 100_000; i++) if (s.admit(`10.0.${i >> 8}.${i & 255}`, 1_000).write) written++
  assert.equal(written, 60)
})
