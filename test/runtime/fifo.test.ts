import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { Fifo } from '../../src/runtime/fifo.js'

test('an empty queue peeks and shifts undefined', () => {
  const q = new Fifo<number>()
  assert.equal(q.length, 0)
  assert.equal(q.peek(), undefined)
  assert.equal(q.shift(), undefined)
  assert.deepEqual([...q], [])
})

test('push/shift/peek/removeWhere behave like an array model', () => {
  type Op = { op: 'push'; value: number } | { op: 'shift' } | { op: 'remove'; mod: number }
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.integer().map((value) => ({ op: 'push' as const, value })) },
    { weight: 4, arbitrary: fc.constant({ op: 'shift' as const }) },
    { weight: 1, arbitrary: fc.integer({ min: 2, max: 5 }).map((mod) => ({ op: 'remove' as const, mod })) },
  )
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300, size: 'max' }), (ops) => {
      const q = new Fifo<number>()
      let model: number[] = []
      for (const o of ops) {
        if (o.op === 'push') {
          q.push(o.value)
          model.push(o.value)
        } else if (o.op === 'shift') {
          assert.equal(q.shift(), model.shift())
        } else {
          const pred = (n: number): boolean => Math.abs(n) % o.mod === 0
          assert.deepEqual(q.removeWhere(pred), model.filter(pred))
          model = model.filter((n) => !pred(n))
        }
        assert.equal(q.length, model.length)
        assert.equal(q.peek(), model[0])
      }
      assert.deepEqual([...q], model)
    }),
  )
})

test('compaction keeps order across many thousands of elements (regression: head index past compaction)', () => {
  const q = new Fifo<number>()
  let next = 0
  let expected = 0
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 3000; i++) q.push(next++)
    for (let i = 0; i < 2500; i++) assert.equal(q.shift(), expected++)
  }
  assert.equal(q.length, next - expected)
  while (q.length > 0) assert.equal(q.shift(), expected++)
  assert.equal(expected, next)
})
