import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RecordFailures } from '../../src/effects/pipeline-failures.js'
import { LifelineError } from '../../src/errors.js'
import type { ConsumedRecord } from '../../src/kafka/types.js'
import { NonRetriableError } from '../../src/retry/classify.js'

const rec = (offset: number, partition = 0, topic = 'in'): ConsumedRecord => ({ topic, partition, offset, key: null, value: Buffer.from('v'), headers: [], timestamp: 1, size: 1 })

test('a retriable failure aborts for another attempt until the maxAttempts-th, which dead-letters; attempts and first/last failure times are kept', () => {
  const failures = new RecordFailures(3)
  assert.equal(failures.attempt(rec(5)), 1)
  const first = failures.fail(rec(5), new Error('flaky'), 1000)
  assert.equal(first.deadLetter, false)
  assert.equal(first.summary.attempts, 1)
  assert.equal(first.summary.classification.kind, 'retriable')
  assert.equal(failures.attempt(rec(5)), 2)
  assert.equal(failures.fail(rec(5), new Error('flaky'), 2000).deadLetter, false)
  const third = failures.fail(rec(5), new Error('flaky'), 3000)
  assert.equal(third.deadLetter, true)
  assert.deepEqual({ attempts: third.summary.attempts, first: third.summary.firstFailureAt, last: third.summary.lastFailureAt }, { attempts: 3, first: 1000, last: 3000 })
  // Another record, another partition or topic: its own count.
  assert.equal(failures.attempt(rec(6)), 1)
  assert.equal(failures.attempt(rec(5, 1)), 1)
  assert.equal(failures.attempt(rec(5, 0, 'other')), 1)
})

test('permanent failures dead-letter at once: NonRetriableError, permanentCodes (in the cause chain), the classifier, LifelineError retriable false', () => {
  const failures = new RecordFailures(10, { permanentCodes: ['23505'], classifier: (err) => ((err as Error).message === 'give up' ? 'permanent' : undefined) })
  assert.equal(failures.fail(rec(1), new NonRetriableError('no')).deadLetter, true)
  assert.equal(failures.fail(rec(2), new Error('wrapped', { cause: Object.assign(new Error('dup'), { code: '23505' }) })).deadLetter, true)
  assert.equal(failures.fail(rec(3), new Error('give up')).summary.classification.rule, 'classifier')
  assert.equal(failures.fail(rec(4), new LifelineError('LL_TRANSACTION', 'not an array', { retriable: false })).deadLetter, true)
  assert.equal(failures.fail(rec(5), new Error('maybe later')).deadLetter, false)
})

test('maxAttempts 1: the first failure dead-letters', () => {
  assert.equal(new RecordFailures(1).fail(rec(0), new Error('x')).deadLetter, true)
})

test('counts are dropped when their transaction commits (offsets below the next offset) and when the partition goes', () => {
  const failures = new RecordFailures(5)
  for (const offset of [3, 7, 9]) failures.fail(rec(offset), new Error('x'))
  failures.fail(rec(3, 1), new Error('x'))
  assert.equal(failures.size, 4)
  failures.committed([{ topic: 'in', partition: 0, offset: 8 }])
  assert.equal(failures.size, 2)
  assert.equal(failures.attempt(rec(3)), 1)
  assert.equal(failures.attempt(rec(9)), 2)
  failures.forget([{ topic: 'in', partition: 1 }])
  assert.equal(failures.attempt(rec(3, 1)), 1)
  failures.committed([{ topic: 'in', partition: 0, offset: 10 }, { topic: 'gone', partition: 0, offset: 1 }])
  assert.equal(failures.size, 0)
})

test('a throwing classifier propagates (the batch aborts) and counts nothing', () => {
  const failures = new RecordFailures(3, { classifier: () => { throw new Error('classifier bug') } })
  assert.throws(() => failures.fail(rec(0), new Error('x')), /classifier bug/)
  assert.equal(failures.size, 0)
})
