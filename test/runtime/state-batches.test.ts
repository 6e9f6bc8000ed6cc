/**
 * The per-partition group commit of state statements (src/runtime/consumer/state-batches.ts): rows submitted
 * in one turn go in one call, rows submitted while a call is in flight go in the next, a batch never holds
 * two rows of one key, each row gets its own answer, and a failed call rejects exactly the rows it held.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Coalescer } from '../../src/runtime/consumer/state-batches.js'

interface Row {
  key: string
  n: number
}

function recorder(fail?: (rows: Row[]) => boolean) {
  const calls: Row[][] = []
  let release: (() => void) | undefined
  let hold = false
  const run = async (rows: Row[]): Promise<string[]> => {
    calls.push(rows)
    if (hold) await new Promise<void>((r) => (release = r))
    if (fail?.(rows)) throw new Error('injected')
    return rows.map((r) => `${r.key}:${r.n}`)
  }
  return { calls, run, holdNext: () => (hold = true), release: () => ((hold = false), release?.()) }
}

test('rows submitted in one turn share one call, each with its own answer, in order', async () => {
  const r = recorder()
  const c = new Coalescer<Row, string>(r.run, (row) => row.key)
  const answers = await Promise.all([c.submit({ key: 'a', n: 1 }), c.submit({ key: 'b', n: 2 }), c.submit({ key: 'c', n: 3 })])
  assert.deepEqual(answers, ['a:1', 'b:2', 'c:3'])
  assert.deepEqual(r.calls.map((rows) => rows.map((x) => x.n)), [[1, 2, 3]])
})

test('rows submitted while a call is in flight wait for it and go together in the next; one row per key per call', async () => {
  const r = recorder()
  const c = new Coalescer<Row, string>(r.run, (row) => row.key)
  r.holdNext()
  const first = c.submit({ key: 'a', n: 1 })
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(r.calls.length, 1, 'the first call is in flight')
  const later = [c.submit({ key: 'a', n: 2 }), c.submit({ key: 'b', n: 3 }), c.submit({ key: 'a', n: 4 })]
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(r.calls.length, 1, 'nothing else starts while it is in flight')
  r.release()
  assert.deepEqual(await Promise.all([first, ...later]), ['a:1', 'a:2', 'b:3', 'a:4'])
  assert.deepEqual(r.calls.map((rows) => rows.map((x) => x.n)), [[1], [2, 3], [4]], 'the second row of key a waits for the next call')
})

test('a failed call rejects the rows it held, and only those; later rows go on', async () => {
  const r = recorder((rows) => rows.some((x) => x.n === 1))
  const c = new Coalescer<Row, string>(r.run, (row) => row.key)
  const failed = [c.submit({ key: 'a', n: 1 }), c.submit({ key: 'b', n: 2 })]
  for (const p of failed) await assert.rejects(p, /injected/)
  assert.equal(await c.submit({ key: 'a', n: 3 }), 'a:3')
  assert.deepEqual(r.calls.map((rows) => rows.map((x) => x.n)), [[1, 2], [3]])
})

test('a call holds at most 200 rows, and rows past a byte budget wait for the next', async () => {
  const r = recorder()
  const rows = Array.from({ length: 450 }, (_, n) => ({ key: `k${n}`, n }))
  const c = new Coalescer<Row, string>(r.run, (row) => row.key)
  await Promise.all(rows.map((row) => c.submit(row)))
  assert.deepEqual(r.calls.map((x) => x.length), [200, 200, 50])
  const big = recorder()
  const heavy = new Coalescer<Row, string>(big.run, (row) => row.key, () => 3 * 1024 * 1024)
  await Promise.all([heavy.submit({ key: 'a', n: 1 }), heavy.submit({ key: 'b', n: 2 })])
  assert.deepEqual(big.calls.map((x) => x.length), [1, 1], 'two 3 MiB copies do not share a statement')
})
