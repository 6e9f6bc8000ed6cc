import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import type { KafkaHeader } from '../../src/kafka/types.js'
import {
  decodeFailureHeaders,
  decodeSpringHeaders,
  encodeFailureHeaders,
  FAILURE_HEADERS_SCHEMA,
  LifelineHeaders,
  MAX_MESSAGE_BYTES,
  MAX_STACK_BYTES,
  SpringDltHeaders,
  truncateUtf8,
  type FailureContext,
} from '../../src/failure/headers.js'

const failure: FailureContext = {
  originTopic: 'orders',
  originPartition: 258,
  originOffset: 2 ** 40 + 5,
  originTimestamp: 1_700_000_000_123,
  group: 'billing',
  service: 'billing-worker',
  errorClass: 'NonRetriableError',
  errorCode: 'ORDER_ORPHANED',
  errorMessage: 'order 42 references a deleted customer',
  errorStack: 'NonRetriableError: order 42\n    at handle (src/handler.ts:1:1)',
  errorFingerprint: '0123456789abcdef',
  attempts: 3,
  firstFailureAt: Date.UTC(2024, 0, 1),
  lastFailureAt: Date.UTC(2024, 0, 1, 0, 0, 5, 250),
}

const text = (headers: readonly KafkaHeader[], key: string): string | undefined =>
  headers.findLast((h) => h.key === key)?.value?.toString('utf8')

const keyArb = fc.oneof(
  fc.constantFrom('traceparent', 'content-type', 'Lifeline.case-differs', 'x-lifeline.not-a-prefix', 'kafka_dlt', 'kafka_other'),
  fc.string({ maxLength: 12 }),
)
/** Headers that are not failure headers (those are stripped by design; tested separately). */
const userHeadersArb = fc.array(
  fc.record({ key: keyArb, value: fc.option(fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)), { nil: null }) }),
  { maxLength: 12 },
).map((headers) =>
  headers.filter((h) => !h.key.startsWith('lifeline.') && !h.key.startsWith('kafka_dlt-')).map((h): KafkaHeader => ({ key: h.key, value: h.value })),
)

const failureArb: fc.Arbitrary<FailureContext> = fc.record(
  {
    originTopic: fc.string({ unit: 'binary', maxLength: 40 }),
    originPartition: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    originOffset: fc.maxSafeNat(),
    originTimestamp: fc.integer({ min: -1, max: 2 ** 45 }),
    originTimestampType: fc.constantFrom<'CreateTime' | 'LogAppendTime'>('CreateTime', 'LogAppendTime'),
    group: fc.string({ unit: 'binary', maxLength: 40 }),
    service: fc.string({ unit: 'binary', maxLength: 40 }),
    errorClass: fc.string({ unit: 'binary', maxLength: 40 }),
    errorCode: fc.string({ unit: 'binary', maxLength: 40 }),
    errorMessage: fc.string({ unit: 'binary', maxLength: 200 }),
    errorStack: fc.string({ unit: 'binary', maxLength: 400 }),
    errorFingerprint: fc.stringMatching(/^[0-9a-f]{16}$/),
    attempts: fc.integer({ min: 1, max: 1_000_000 }),
    firstFailureAt: fc.integer({ min: 0, max: 253402300799999 }),
    lastFailureAt: fc.integer({ min: 0, max: 253402300799999 }),
  },
  { requiredKeys: ['originTopic', 'originPartition', 'originOffset', 'originTimestamp', 'group', 'service', 'errorClass', 'errorCode', 'errorMessage', 'errorFingerprint', 'attempts', 'firstFailureAt', 'lastFailureAt'] },
)

test('encode → decode round-trips any failure context', () => {
  fc.assert(
    fc.property(userHeadersArb, failureArb, fc.boolean(), (original, f, spring) => {
      const decoded = decodeFailureHeaders(encodeFailureHeaders(original, f, { spring }))
      const { originTimestampType, ...lifelineFields } = f
      void originTimestampType // Spring-only
      assert.deepEqual(decoded, { schema: FAILURE_HEADERS_SCHEMA, ...lifelineFields })
    }),
  )
})

test('original headers are kept byte-identical, in order, duplicates and nulls included', () => {
  fc.assert(
    fc.property(userHeadersArb, failureArb, fc.boolean(), (original, f, spring) => {
      const snapshot = original.map((h) => ({ key: h.key, value: h.value === null ? null : Buffer.from(h.value) }))
      const encoded = encodeFailureHeaders(original, f, { spring })
      const kept = encoded.slice(0, original.length)
      assert.equal(kept.length, original.length)
      kept.forEach((h, i) => {
        assert.equal(h, original[i], 'the same header object')
        assert.deepEqual(h, snapshot[i], 'and unchanged bytes')
      })
      assert.ok(encoded.slice(original.length).every((h) => h.key.startsWith('lifeline.') || h.key.startsWith('kafka_dlt-')))
      assert.deepEqual(original, snapshot, 'the input array is not mutated')
    }),
  )
})

test('dead-lettering again replaces the failure headers instead of growing (regression: header growth)', () => {
  fc.assert(
    fc.property(userHeadersArb, failureArb, failureArb, fc.boolean(), (original, f1, f2, spring) => {
      const once = encodeFailureHeaders(original, f2, { spring })
      const twice = encodeFailureHeaders(encodeFailureHeaders(original, f1, { spring }), f2, { spring })
      assert.deepEqual(twice, once)
    }),
  )
})

test('earlier lifeline.* headers anywhere are dropped; kafka_dlt-* only with spring', () => {
  const original: KafkaHeader[] = [
    { key: 'lifeline.attempts', value: Buffer.from('99') },
    { key: 'a', value: Buffer.from('1') },
    { key: 'kafka_dlt-original-topic', value: Buffer.from('older') },
    { key: 'lifeline.custom-from-an-older-version', value: null },
    { key: 'a', value: null },
  ]
  const plain = encodeFailureHeaders(original, failure)
  assert.deepEqual(plain.slice(0, 3), [original[1], original[2], original[4]])
  assert.equal(plain.filter((h) => h.key === LifelineHeaders.attempts).length, 1)
  const spring = encodeFailureHeaders(original, failure, { spring: true })
  assert.deepEqual(spring.slice(0, 2), [original[1], original[4]])
  assert.equal(spring.filter((h) => h.key === SpringDltHeaders.originalTopic).length, 1)
  assert.equal(text(spring, SpringDltHeaders.originalTopic), 'orders')
})

test('lifeline headers are UTF-8 strings: decimal numbers, ISO-8601 UTC times', () => {
  const h = encodeFailureHeaders([], failure)
  assert.deepEqual(
    h.map((x) => x.key),
    Object.values(LifelineHeaders),
  )
  assert.equal(text(h, LifelineHeaders.schema), '1')
  assert.equal(text(h, LifelineHeaders.originPartition), '258')
  assert.equal(text(h, LifelineHeaders.originOffset), '1099511627781')
  assert.equal(text(h, LifelineHeaders.originTimestamp), '1700000000123')
  assert.equal(text(h, LifelineHeaders.attempts), '3')
  assert.equal(text(h, LifelineHeaders.firstFailure), '2024-01-01T00:00:00.000Z')
  assert.equal(text(h, LifelineHeaders.lastFailure), '2024-01-01T00:00:05.250Z')
  assert.ok(!h.some((x) => x.key.startsWith('kafka_dlt-')))
})

test('an undefined stack and unrepresentable numbers leave their headers out instead of throwing', () => {
  const h = encodeFailureHeaders([], { ...failure, errorStack: undefined, originPartition: 1.5, attempts: Number.NaN, firstFailureAt: 1e20 }, { spring: true })
  for (const key of [LifelineHeaders.errorStack, LifelineHeaders.originPartition, LifelineHeaders.attempts, LifelineHeaders.firstFailure, SpringDltHeaders.exceptionStacktrace, SpringDltHeaders.originalPartition]) {
    assert.ok(!h.some((x) => x.key === key), key)
  }
  const decoded = decodeFailureHeaders(h)
  assert.equal(decoded?.errorStack, undefined)
  assert.equal(decoded?.originTopic, 'orders')
})

test('Spring headers use the exact names and binary encodings of spring-kafka', () => {
  const h = encodeFailureHeaders([], { ...failure, originPartition: 0x01020304, originTimestamp: -1 }, { spring: true })
  const value = (key: string): Buffer | null | undefined => h.find((x) => x.key === key)?.value
  assert.deepEqual(value('kafka_dlt-original-partition'), Buffer.from([1, 2, 3, 4]))
  assert.deepEqual(value('kafka_dlt-original-offset'), Buffer.from([0, 0, 1, 0, 0, 0, 0, 5]))
  assert.deepEqual(value('kafka_dlt-original-timestamp'), Buffer.alloc(8, 0xff), '-1 as int64')
  assert.equal(text(h, 'kafka_dlt-original-topic'), 'orders')
  assert.equal(text(h, 'kafka_dlt-original-timestamp-type'), 'CreateTime')
  assert.equal(text(h, 'kafka_dlt-original-consumer-group'), 'billing')
  assert.equal(text(h, 'kafka_dlt-exception-fqcn'), 'NonRetriableError')
  assert.equal(text(h, 'kafka_dlt-exception-message'), failure.errorMessage)
  assert.equal(text(h, 'kafka_dlt-exception-stacktrace'), failure.errorStack)
  const logAppend = encodeFailureHeaders([], { ...failure, originTimestampType: 'LogAppendTime' }, { spring: true })
  assert.equal(text(logAppend, 'kafka_dlt-original-timestamp-type'), 'LogAppendTime')
})

test('decodeSpringHeaders round-trips and the last occurrence wins', () => {
  fc.assert(
    fc.property(userHeadersArb, failureArb, (original, f) => {
      const decoded = decodeSpringHeaders(encodeFailureHeaders(original, f, { spring: true }))
      assert.deepEqual(decoded, {
        originalTopic: f.originTopic,
        originalPartition: f.originPartition,
        originalOffset: f.originOffset,
        originalTimestamp: f.originTimestamp,
        originalTimestampType: f.originTimestampType ?? 'CreateTime',
        originalConsumerGroup: f.group,
        exceptionFqcn: f.errorClass,
        exceptionMessage: truncateUtf8(f.errorMessage, MAX_MESSAGE_BYTES),
        ...(f.errorStack === undefined ? {} : { exceptionStacktrace: truncateUtf8(f.errorStack, MAX_STACK_BYTES) }),
      })
    }),
  )
  const republished: KafkaHeader[] = [
    { key: 'kafka_dlt-original-topic', value: Buffer.from('first') },
    { key: 'kafka_dlt-original-partition', value: Buffer.from([0, 0, 0, 1]) },
    { key: 'kafka_dlt-exception-cause-fqcn', value: Buffer.from('java.lang.IllegalStateException') },
    { key: 'kafka_dlt-original-topic', value: Buffer.from('second') },
    { key: 'kafka_dlt-original-partition', value: Buffer.from([0, 0, 0, 2]) },
  ]
  assert.deepEqual(decodeSpringHeaders(republished), {
    originalTopic: 'second',
    originalPartition: 2,
    exceptionCauseFqcn: 'java.lang.IllegalStateException',
  })
})

test('times decode leniently in precision, strictly in calendar', () => {
  const at = (value: string): number | undefined => decodeFailureHeaders([{ key: LifelineHeaders.firstFailure, value: Buffer.from(value) }])?.firstFailureAt
  assert.equal(at('2024-01-01T00:00:00Z'), Date.UTC(2024, 0, 1))
  assert.equal(at('2024-01-01T00:00:00.5Z'), Date.UTC(2024, 0, 1, 0, 0, 0, 500))
  assert.equal(at('+010000-01-01T00:00:00.000Z'), 253402300800000)
  assert.equal(at('2024-02-30T00:00:00.000Z'), undefined, 'no February 30th')
  assert.equal(at('2024-01-01T00:00:00.000+01:00'), undefined, 'UTC only')
  assert.equal(at('1704067200000'), undefined, 'not epoch millis')
})

test('decoders return undefined without their headers', () => {
  assert.equal(decodeFailureHeaders([]), undefined)
  assert.equal(decodeFailureHeaders([{ key: 'traceparent', value: Buffer.from('x') }]), undefined)
  assert.equal(decodeSpringHeaders(encodeFailureHeaders([], failure)), undefined)
})

test('garbage decodes to undefined fields, never an exception', () => {
  const garbage: KafkaHeader[] = [
    { key: LifelineHeaders.schema, value: Buffer.from([0xff, 0xfe]) },
    { key: LifelineHeaders.originTopic, value: Buffer.from([0xc3]) }, // truncated 2-byte sequence
    { key: LifelineHeaders.originPartition, value: Buffer.from('12abc') },
    { key: LifelineHeaders.originOffset, value: Buffer.from('99999999999999999999') },
    { key: LifelineHeaders.attempts, value: Buffer.from('1.5') },
    { key: LifelineHeaders.firstFailure, value: Buffer.from('yesterday') },
    { key: LifelineHeaders.lastFailure, value: Buffer.from('2024-02-30T00:00:00.000Z') },
    { key: LifelineHeaders.group, value: null },
    { key: LifelineHeaders.service, value: Buffer.from('svc') },
    { key: SpringDltHeaders.originalPartition, value: Buffer.from([1, 2, 3]) },
    { key: SpringDltHeaders.originalOffset, value: Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) },
    { key: SpringDltHeaders.originalTopic, value: Buffer.from([0xed, 0xa0, 0x80]) }, // an encoded surrogate: not UTF-8
  ]
  const decoded = decodeFailureHeaders(garbage)
  assert.deepEqual(decoded, { service: 'svc' }, 'only the one readable header survives')
  assert.deepEqual(decodeSpringHeaders(garbage), {})
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          key: fc.oneof(fc.constantFrom(...Object.values(LifelineHeaders), ...Object.values(SpringDltHeaders)), fc.string()),
          value: fc.oneof(
            fc.option(fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)), { nil: null }),
            fc.constantFrom('2024-01-01T00:00:00Z', '+275760-09-13T00:00:00.000Z', '-000001-01-01T00:00:00.000Z', '9007199254740993', '-0').map((t) => Buffer.from(t)),
          ),
        }),
      ),
      (headers) => {
        decodeFailureHeaders(headers)
        decodeSpringHeaders(headers)
      },
    ),
  )
})

test('message and stack are capped at their UTF-8 byte limits on a character boundary', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', minLength: 1000, maxLength: 6000 }), (big) => {
      const h = encodeFailureHeaders([], { ...failure, errorMessage: big, errorStack: big + big + big + big }, { spring: true })
      for (const [key, cap] of [
        [LifelineHeaders.errorMessage, MAX_MESSAGE_BYTES],
        [LifelineHeaders.errorStack, MAX_STACK_BYTES],
        [SpringDltHeaders.exceptionMessage, MAX_MESSAGE_BYTES],
        [SpringDltHeaders.exceptionStacktrace, MAX_STACK_BYTES],
      ] as const) {
        const value = h.find((x) => x.key === key)?.value as Buffer
        assert.ok(value.length <= cap, `${key}: ${value.length} > ${cap}`)
        assert.ok(value.toString('utf8').length > 0)
        assert.deepEqual(Buffer.from(value.toString('utf8'), 'utf8'), value, 'valid UTF-8 (no split character)')
      }
    }),
    { numRuns: 50 },
  )
})

test('truncateUtf8 keeps the longest code-point prefix that fits', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), fc.nat({ max: 200 }), (s, max) => {
      const cut = truncateUtf8(s, max)
      const bytes = Buffer.byteLength(cut, 'utf8')
      assert.ok(bytes <= max || cut === s)
      assert.ok(s.startsWith(cut))
      const points = [...s]
      const kept = [...cut].length
      if (kept < points.length) {
        // Maximal: one more code point would not fit.
        assert.ok(bytes + Buffer.byteLength(points[kept] as string, 'utf8') > max)
      }
    }),
  )
  assert.equal(truncateUtf8('héllo', 2), 'h', 'é is 2 bytes and does not fit after h')
  assert.equal(truncateUtf8('😀😀', 5), '😀', 'no half emoji')
  assert.equal(truncateUtf8('abc', 3), 'abc')
  assert.equal(truncateUtf8('abc', 0), '')
})

test('header name constants match spring-kafka KafkaHeaders.DLT_*', () => {
  assert.deepEqual(SpringDltHeaders, {
    originalTopic: 'kafka_dlt-original-topic',
    originalPartition: 'kafka_dlt-original-partition',
    originalOffset: 'kafka_dlt-original-offset',
    originalTimestamp: 'kafka_dlt-original-timestamp',
    originalTimestampType: 'kafka_dlt-original-timestamp-type',
    originalConsumerGroup: 'kafka_dlt-original-consumer-group',
    exceptionFqcn: 'kafka_dlt-exception-fqcn',
    exceptionCauseFqcn: 'kafka_dlt-exception-cause-fqcn',
    exceptionMessage: 'kafka_dlt-exception-message',
    exceptionStacktrace: 'kafka_dlt-exception-stacktrace',
    keyExceptionFqcn: 'kafka_dlt-key-exception-fqcn',
    keyExceptionMessage: 'kafka_dlt-key-exception-message',
    keyExceptionStacktrace: 'kafka_dlt-key-exception-stacktrace',
  })
  assert.ok(Object.isFrozen(SpringDltHeaders) && Object.isFrozen(LifelineHeaders))
  assert.ok(Object.values(LifelineHeaders).every((k) => k.startsWith('lifeline.')))
})
