import assert from 'node:assert/strict'
import { test } from 'node:test'
import { classifyError } from '../../src/retry/classify.js'
import { deadLetterRecord, failureContext, userFrames } from '../../src/failure/dead-letter.js'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import type { ConsumedRecord } from '../../src/kafka/types.js'

const record: ConsumedRecord = {
  topic: 'orders', partition: 4, offset: 17, key: Buffer.from('k'), value: Buffer.from([1, 2, 3]),
  headers: [{ key: 'a', value: Buffer.from('x') }, { key: 'lifeline.error.code', value: Buffer.from('OLD') }], timestamp: 1700000000000, size: 4,
}

test('the DLQ record keeps key, partition, value bytes and non-Lifeline headers, and replaces old failure headers', () => {
  const classification = classifyError(Object.assign(new Error('boom'), { code: 'E_X' }))
  const ctx = failureContext(record, 'g', 'svc', { classification, attempts: 2, firstFailureAt: 1, lastFailureAt: 2 })
  const out = deadLetterRecord('svc.orders.dlq', record, ctx)
  assert.equal(out.partition, 4)
  assert.deepEqual(out.key, record.key)
  assert.deepEqual(out.value, record.value)
  assert.deepEqual(out.headers![0], { key: 'a', value: Buffer.from('x') })
  assert.equal(out.headers!.filter((h) => h.key === 'lifeline.error.code').length, 1)
  assert.equal(decodeFailureHeaders(out.headers!)!.errorCode, 'E_X')
})

test('userFrames cuts the stack at the runtime boundary', () => {
  const stack = 'Error: x\n    at handler (/app/h.ts:1:1)\n    at processRecord (/lib/consumer.ts:9:9)\n    at execute (/lib/consumer.ts:3:3)'
  assert.equal(userFrames(stack, '/lib/consumer.ts'), 'Error: x\n    at handler (/app/h.ts:1:1)')
  assert.equal(userFrames(stack, '/elsewhere.ts'), stack)
  assert.equal(userFrames(undefined, '/x'), undefined)
})
