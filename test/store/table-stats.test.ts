/**
 * The tables' statistics keeper (src/store/table-stats.ts): when it analyzes, that it never
 * runs two at a time, that a failure is reported and lost writes are impossible (it never throws into a
 * write), and that `settled()` waits for a run in flight.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { TableStatistics } from '../../src/store/table-stats.js'

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

test('analyzes once firstAt rows were written, then each time the count doubled, never two at a time', async () => {
  const runs: Array<ReturnType<typeof deferred>> = []
  const stats = new TableStatistics(() => {
    const d = deferred()
    runs.push(d)
    return d.promise
  }, () => assert.fail('no error expected'), 10)
  stats.wrote(9)
  assert.equal(runs.length, 0)
  stats.wrote(1)
  assert.equal(runs.length, 1, '10 rows: the first run')
  stats.wrote(30)
  assert.equal(runs.length, 1, 'a run in flight: no second one (the 40 rows are counted)')
  runs[0]!.resolve()
  await stats.settled()
  stats.wrote(0)
  assert.equal(runs.length, 2, 'the rows written during the run made the next one due (40 ≥ 20): the next write starts it')
  runs[1]!.resolve()
  await stats.settled()
  stats.wrote(39)
  assert.equal(runs.length, 2, '79 rows: the next run is at 80 (twice 40)')
  stats.wrote(1)
  assert.equal(runs.length, 3)
  assert.equal(stats.runs, 3)
  runs[2]!.resolve()
  await stats.settled()
})

test('a failed ANALYZE goes to onError, never to the writer; the next one still runs when due', async () => {
  const errors: unknown[] = []
  let calls = 0
  const stats = new TableStatistics(() => {
    calls++
    return Promise.reject(new Error('permission denied'))
  }, (err) => errors.push(err), 5)
  assert.doesNotThrow(() => stats.wrote(5))
  await stats.settled()
  assert.equal(errors.length, 1)
  assert.match(String(errors[0]), /permission denied/)
  stats.wrote(5)
  await stats.settled()
  assert.equal(calls, 2, 'due again at 10 rows')
})

test('an analyze() that throws at once is a failed run, not an error of the write', async () => {
  const errors: unknown[] = []
  const stats = new TableStatistics(() => {
    throw new Error('the executor is closed')
  }, (err) => errors.push(err), 1)
  assert.doesNotThrow(() => stats.wrote(1))
  await stats.settled()
  assert.match(String(errors[0]), /closed/)
})

test('settled() waits for the run in flight and resolves at once when none runs', async () => {
  const stats = new TableStatistics(() => Promise.resolve(), () => undefined, 1)
  await stats.settled()
  const d = deferred()
  const late = new TableStatistics(() => d.promise, () => undefined, 1)
  late.wrote(1)
  let done = false
  const waiting = late.settled().then(() => {
    done = true
  })
  await new Promise((r) => setImmediate(r))
  assert.equal(done, false, 'still running')
  d.resolve()
  await waiting
  assert.equal(done, true)
})
