import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import type { ConsumedRecord, KafkaHeader, ProduceRecord } from '../../src/kafka/types.js'
import { LifelineHeaders, type FailureContext } from '../../src/failure/headers.js'
import { defaultRetryTopicTemplate, dueTime, originView, readTierRecord, RetryHeaders, retryTopicName, tierRecord, type TierInfo } from '../../src/failure/tier-record.js'

const context: FailureContext = {
  originTopic: 'orders',
  originPartition: 5,
  originOffset: 2 ** 40 + 7,
  originTimestamp: 1_700_000_000_123,
  group: 'billing',
  service: 'billing-worker',
  errorClass: 'TimeoutError',
  errorCode: 'E_TIMEOUT',
  errorMessage: 'upstream timed out',
  errorStack: 'TimeoutError: upstream timed out\n    at call (src/client.ts:1:1)',
  errorFingerprint: '0123456789abcdef',
  attempts: 3,
  firstFailureAt: Date.UTC(2024, 0, 1),
  lastFailureAt: Date.UTC(2024, 0, 1, 0, 0, 5, 250),
}

const DUE = Date.UTC(2024, 0, 1, 0, 1, 0, 500)

function consumed(overrides: Partial<ConsumedRecord> = {}): ConsumedRecord {
  return { topic: 'orders', partition: 5, offset: 2 ** 40 + 7, key: Buffer.from([0xff, 0x00, 0x01]), value: Buffer.from('{"id":42}'), headers: [], timestamp: 1_700_000_000_123, size: 12, ...overrides }
}

/** What the tier's consumer receives for `record` (a produce record) at `offset`. */
function delivered(record: ProduceRecord, offset = 9, timestamp = 1_800_000_000_000): ConsumedRecord {
  const key = record.key === undefined || record.key === null ? null : Buffer.from(record.key)
  const value = record.value === null ? null : Buffer.from(record.value)
  return { topic: record.topic, partition: record.partition ?? 0, offset, key, value, headers: record.headers ?? [], timestamp, size: (key?.length ?? 0) + (value?.length ?? 0) }
}

const text = (headers: readonly KafkaHeader[], key: string): string | undefined => headers.findLast((h) => h.key === key)?.value?.toString('utf8')
const count = (headers: readonly KafkaHeader[], key: string): number => headers.filter((h) => h.key === key).length

test('retryTopicName fills the template', () => {
  assert.equal(defaultRetryTopicTemplate, '{service}.{topic}.retry.{n}')
  assert.equal(retryTopicName('billing', 'orders', 1), 'billing.orders.retry.1')
  assert.equal(retryTopicName('billing', 'orders', 12), 'billing.orders.retry.12')
  assert.equal(retryTopicName('billing', 'orders', 2, 'retry-{n}-{topic}'), 'retry-2-orders', 'the service may be left out')
  assert.equal(retryTopicName('svc', 'orders', 3, '{topic}.{n}.{topic}.{n}.{service}'), 'orders.3.orders.3.svc', 'every occurrence is replaced')
  assert.equal(retryTopicName('svc', 'orders', 3, 'fixed.retry'), 'fixed.retry', 'a template without placeholders is used as is')
})

test('retryTopicName calls a function template with the source topic and tier number', () => {
  const calls: Array<[string, number]> = []
  const name = retryTopicName('billing', 'orders', 4, (topic, n) => {
    calls.push([topic, n])
    return `custom.${topic}.${n * 10}`
  })
  assert.equal(name, 'custom.orders.40')
  assert.deepEqual(calls, [['orders', 4]])
})

test('tierRecord keeps key, value and user headers, and adds failure and tier headers', () => {
  const userHeaders: KafkaHeader[] = [
    { key: 'traceparent', value: Buffer.from('00-abc-01') },
    { key: 'nothing', value: null },
    { key: 'binary', value: Buffer.from([0x00, 0xff]) },
    { key: 'traceparent', value: Buffer.from('duplicate') },
  ]
  const source = consumed({
    headers: [
      userHeaders[0]!,
      { key: LifelineHeaders.attempts, value: Buffer.from('1') },
      userHeaders[1]!,
      { key: RetryHeaders.tier, value: Buffer.from('1') },
      { key: RetryHeaders.due, value: Buffer.from('2020-01-01T00:00:00.000Z') },
      { key: RetryHeaders.token, value: Buffer.from('old-token') },
      userHeaders[2]!,
      { key: 'lifeline.something-else', value: Buffer.from('x') },
      userHeaders[3]!,
    ],
  })
  const out = tierRecord('billing.orders.retry.2', source, context, 2, DUE, 'token-2')
  assert.equal(out.topic, 'billing.orders.retry.2')
  assert.equal(out.partition, context.originPartition, 'the tier record goes to the origin partition number')
  assert.ok(out.key === source.key, 'the key bytes are passed through')
  assert.ok(out.value === source.value, 'the value bytes are passed through')
  assert.equal(out.timestamp, undefined, 'stamped when written (its due time counts from then); the origin timestamp travels in a header')

  const headers = out.headers!
  assert.deepEqual(
    headers.filter((h) => !h.key.startsWith('lifeline.')),
    userHeaders,
    'user headers are kept in order, duplicates and nulls included',
  )
  assert.equal(count(headers, 'lifeline.something-else'), 0, 'earlier lifeline.* headers are dropped')
  for (const key of [RetryHeaders.tier, RetryHeaders.due, RetryHeaders.token, LifelineHeaders.attempts]) assert.equal(count(headers, key), 1, `one ${key}`)
  assert.equal(text(headers, RetryHeaders.tier), '2')
  assert.equal(text(headers, RetryHeaders.due), '2024-01-01T00:01:00.500Z')
  assert.equal(text(headers, RetryHeaders.token), 'token-2')
  assert.equal(text(headers, LifelineHeaders.attempts), '3')
  assert.equal(text(headers, LifelineHeaders.originTopic), 'orders')
  assert.equal(text(headers, LifelineHeaders.originOffset), String(2 ** 40 + 7))
  assert.equal(text(headers, LifelineHeaders.errorCode), 'E_TIMEOUT')
  assert.equal(source.headers.length, 9, 'the source record is not modified')
})

test('tierRecord without a token writes no token header (and drops an earlier one)', () => {
  const source = consumed({ headers: [{ key: RetryHeaders.token, value: Buffer.from('stale') }] })
  const out = tierRecord('t.retry.1', source, context, 1, DUE, undefined)
  assert.equal(count(out.headers!, RetryHeaders.token), 0)
  assert.equal(readTierRecord(delivered(out))!.token, undefined)
})

test('tierRecord leaves the timestamp to the writer or the broker, whatever the source had', () => {
  assert.equal(tierRecord('t', consumed({ timestamp: 1_700_000_000_000 }), context, 1, DUE, undefined).timestamp, undefined)
  assert.equal(tierRecord('t', consumed({ timestamp: -1 }), context, 1, DUE, undefined).timestamp, undefined)
  assert.equal(tierRecord('t', consumed({ timestamp: 0 }), context, 1, DUE, undefined).timestamp, undefined)
  assert.equal(tierRecord('t', consumed({ key: null, value: null }), context, 1, DUE, undefined).key, null)
})

test('readTierRecord reads back what tierRecord wrote', () => {
  const out = tierRecord('billing.orders.retry.2', consumed(), context, 2, DUE, 'token-2')
  const info = readTierRecord(delivered(out))
  assert.deepEqual(info, {
    tier: 2,
    dueAt: DUE,
    token: 'token-2',
    origin: { topic: 'orders', partition: 5, offset: 2 ** 40 + 7, timestamp: 1_700_000_000_123 },
    attempts: 3,
    firstFailureAt: Date.UTC(2024, 0, 1),
  } satisfies TierInfo)
})

test('readTierRecord round-trips any tier record', () => {
  const contextArb: fc.Arbitrary<FailureContext> = fc.record({
    originTopic: fc.string({ unit: 'binary', maxLength: 40 }),
    originPartition: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    originOffset: fc.maxSafeNat(),
    originTimestamp: fc.integer({ min: -1, max: 2 ** 45 }),
    group: fc.string({ maxLength: 20 }),
    service: fc.string({ maxLength: 20 }),
    errorClass: fc.string({ maxLength: 20 }),
    errorCode: fc.string({ maxLength: 20 }),
    errorMessage: fc.string({ unit: 'binary', maxLength: 100 }),
    errorFingerprint: fc.stringMatching(/^[0-9a-f]{16}$/),
    attempts: fc.integer({ min: 0, max: 1_000_000 }),
    firstFailureAt: fc.integer({ min: 0, max: 253402300799999 }),
    lastFailureAt: fc.integer({ min: 0, max: 253402300799999 }),
  })
  const userHeaders = fc.array(
    fc.record({ key: fc.string({ maxLength: 10 }), value: fc.option(fc.uint8Array({ maxLength: 10 }).map((a) => Buffer.from(a)), { nil: null }) }),
    { maxLength: 6 },
  )
  fc.assert(
    fc.property(
      contextArb,
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 253402300799999 }),
      fc.option(fc.string({ unit: 'binary', maxLength: 40 }), { nil: undefined }),
      userHeaders,
      fc.integer({ min: -1, max: 2 ** 45 }),
      (ctx, tier, dueAt, token, headers, recordTimestamp) => {
        const user = headers.filter((h) => !h.key.startsWith('lifeline.'))
        const out = tierRecord('tier-topic', consumed({ headers: user }), ctx, tier, dueAt, token)
        const info = readTierRecord(delivered(out, 1, recordTimestamp))
        assert.deepEqual(info, {
          tier,
          dueAt,
          token,
          origin: { topic: ctx.originTopic, partition: ctx.originPartition, offset: ctx.originOffset, timestamp: ctx.originTimestamp },
          attempts: ctx.attempts,
          firstFailureAt: ctx.firstFailureAt,
        })
      },
    ),
  )
})

test('readTierRecord falls back to the record for a missing origin timestamp, attempts and first failure', () => {
  const out = tierRecord('t', consumed(), context, 1, DUE, undefined)
  const headers = out.headers!.filter((h) => h.key !== LifelineHeaders.originTimestamp && h.key !== LifelineHeaders.attempts && h.key !== LifelineHeaders.firstFailure)
  const info = readTierRecord({ ...delivered(out, 1, 1_234), headers })
  assert.ok(info)
  assert.equal(info.origin.timestamp, 1_234)
  assert.equal(info.attempts, 0)
  assert.equal(info.firstFailureAt, 1_234)
})

test('readTierRecord: the last occurrence of a header wins', () => {
  const out = tierRecord('t', consumed(), context, 1, DUE, 'a')
  const headers = [...out.headers!, { key: RetryHeaders.tier, value: Buffer.from('4') }, { key: RetryHeaders.token, value: Buffer.from('b') }]
  const info = readTierRecord({ ...delivered(out), headers })
  assert.equal(info?.tier, 4)
  assert.equal(info?.token, 'b')
})

test('readTierRecord returns undefined without or with garbage tier, due or origin headers', () => {
  const good = delivered(tierRecord('t', consumed(), context, 2, DUE, 'token'))
  assert.ok(readTierRecord(good), 'the unaltered record reads')
  const without = (...keys: string[]): ConsumedRecord => ({ ...good, headers: good.headers.filter((h) => !keys.includes(h.key)) })
  const withValue = (key: string, value: Buffer | null): ConsumedRecord => ({ ...good, headers: good.headers.map((h) => (h.key === key ? { key, value } : h)) })

  assert.equal(readTierRecord({ ...good, headers: [] }), undefined, 'no headers')
  assert.equal(readTierRecord({ ...good, headers: good.headers.filter((h) => !h.key.startsWith('lifeline.')) }), undefined, 'no lifeline headers')
  assert.equal(readTierRecord(without(RetryHeaders.tier)), undefined, 'no tier')
  assert.equal(readTierRecord(without(RetryHeaders.due)), undefined, 'no due')
  assert.equal(readTierRecord(without(LifelineHeaders.originTopic)), undefined, 'no origin topic')
  assert.equal(readTierRecord(without(LifelineHeaders.originPartition)), undefined, 'no origin partition')
  assert.equal(readTierRecord(without(LifelineHeaders.originOffset)), undefined, 'no origin offset')
  assert.equal(readTierRecord(without(LifelineHeaders.originTopic, LifelineHeaders.originPartition, LifelineHeaders.originOffset)), undefined, 'no origin')

  for (const tier of ['0', '-1', '1.5', 'one', '', 'NaN', 'Infinity']) {
    assert.equal(readTierRecord(withValue(RetryHeaders.tier, Buffer.from(tier))), undefined, `tier ${JSON.stringify(tier)}`)
  }
  assert.equal(readTierRecord(withValue(RetryHeaders.tier, null)), undefined, 'null tier')
  assert.equal(readTierRecord(withValue(RetryHeaders.tier, Buffer.from([0xff, 0xfe]))), undefined, 'binary tier')
  for (const due of ['', 'soon', 'not a date', '2024-13-45T99:99:99Z']) {
    assert.equal(readTierRecord(withValue(RetryHeaders.due, Buffer.from(due))), undefined, `due ${JSON.stringify(due)}`)
  }
  assert.equal(readTierRecord(withValue(RetryHeaders.due, null)), undefined, 'null due')
  assert.equal(readTierRecord(withValue(RetryHeaders.due, Buffer.from([0xff, 0xfe, 0x00]))), undefined, 'binary due')
  assert.equal(readTierRecord(withValue(LifelineHeaders.originPartition, Buffer.from('five'))), undefined, 'garbage origin partition')
  assert.equal(readTierRecord(withValue(LifelineHeaders.originOffset, Buffer.from('1.5'))), undefined, 'garbage origin offset')
  assert.equal(readTierRecord(withValue(LifelineHeaders.originTopic, Buffer.from([0xc3]))), undefined, 'non-UTF-8 origin topic')
})

test('readTierRecord never throws on garbage headers', () => {
  const keys = [...Object.values(RetryHeaders), ...Object.values(LifelineHeaders)]
  const plausible = ['1', '2', '0', '-3', '1e3', '2024-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '9007199254740993', 'orders', '', ' ']
  const header: fc.Arbitrary<KafkaHeader> = fc.record({
    key: fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 16 })),
    value: fc.oneof(
      fc.constant(null),
      fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
      fc.constantFrom(...plausible).map((s) => Buffer.from(s)),
      fc.string({ unit: 'binary', maxLength: 24 }).map((s) => Buffer.from(s)),
    ),
  })
  fc.assert(
    fc.property(fc.array(header, { maxLength: 30 }), fc.integer({ min: -1, max: 2 ** 45 }), (headers, timestamp) => {
      const info = readTierRecord(consumed({ headers, timestamp }))
      if (info === undefined) return
      assert.ok(Number.isInteger(info.tier) && info.tier >= 1)
      assert.ok(!Number.isNaN(info.dueAt))
      assert.equal(typeof info.origin.topic, 'string')
      assert.ok(Number.isSafeInteger(info.origin.partition))
      assert.ok(Number.isSafeInteger(info.origin.offset))
      assert.ok(Number.isSafeInteger(info.origin.timestamp))
      assert.ok(Number.isSafeInteger(info.attempts))
      assert.ok(Number.isFinite(info.firstFailureAt))
    }),
    { numRuns: 500 },
  )
  // Corrupting one header of a valid tier record at a time: still never a throw.
  const good = delivered(tierRecord('t', consumed(), context, 2, DUE, 'token'))
  fc.assert(
    fc.property(fc.nat({ max: good.headers.length - 1 }), fc.option(fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)), { nil: null }), (i, value) => {
      const headers = good.headers.map((h, j) => (j === i ? { key: h.key, value } : h))
      readTierRecord({ ...good, headers })
    }),
  )
})

test('originView shows the tier record at its origin topic, partition, offset and timestamp', () => {
  const out = tierRecord('billing.orders.retry.1', consumed({ headers: [{ key: 'traceparent', value: Buffer.from('x') }] }), context, 1, DUE, 'tok')
  const record = delivered(out, 77, 1_800_000_000_000)
  const info = readTierRecord(record)!
  const view = originView(record, info)
  assert.deepEqual(view, {
    topic: 'orders',
    partition: 5,
    offset: 2 ** 40 + 7,
    timestamp: 1_700_000_000_123,
    key: record.key,
    value: record.value,
    headers: record.headers,
    size: record.size,
  })
  assert.ok(view.headers === record.headers, 'the handler sees the failure context headers too')
  assert.equal(record.topic, 'billing.orders.retry.1', 'the tier record itself is not modified')
  assert.equal(record.offset, 77)
})

test("dueTime (issue 10, scenario 10): a writer's clock running ahead, or a tier delay shortened since, never holds a tier partition longer than the reader's delay", () => {
  const info = (dueAt: number): TierInfo => ({ tier: 1, dueAt, origin: { topic: 'o', partition: 0, offset: 1, timestamp: 0 }, attempts: 1, firstFailureAt: 0 })
  const now = 1_800_000_000_000
  // Same clocks, same delay: the header's due time.
  assert.equal(dueTime(info(now + 5_000), now, 5_000, now), now + 5_000)
  // The writer's clock an hour ahead: its due header and its timestamp are an hour late; capped at first sight + delay.
  assert.equal(dueTime(info(now + 3_600_000 + 5_000), now + 3_600_000, 5_000, now), now + 5_000)
  // The delay shortened from 60 s to 5 s since the record was written: 5 s after it was written.
  assert.equal(dueTime(info(now + 60_000), now, 5_000, now + 1_000), now + 5_000)
  // A redrive asks for an earlier run than the delay: the header wins.
  assert.equal(dueTime(info(now), now, 5_000, now), now)
  // Monotone in (written, first seen) for a fixed delay: records of a FIFO tier partition come due in order.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(1_000_000), fc.nat(1_000_000)), { minLength: 2, maxLength: 20 }), fc.nat(100_000), (steps, delay) => {
      let written = now
      let seen = now
      let last = -Infinity
      for (const [dw, ds] of steps) {
        written += dw
        seen += ds
        const due = dueTime(info(written + delay + 3_600_000), written, delay, seen)
        if (due < last) return false
        last = due
      }
      return true
    }),
  )
})
