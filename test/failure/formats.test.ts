import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { ConnectHeaders, DEAD_LETTER_FORMATS, foreignFingerprint, KarafkaHeaders, parseDeadLetter, ReplayHeaders, springAttempts, SpringRetryHeaders, StreamsHeaders } from '../../src/failure/formats.js'
import { fingerprint } from '../../src/failure/fingerprint.js'
import { encodeFailureHeaders, MAX_MESSAGE_BYTES, SpringDltHeaders, type FailureContext } from '../../src/failure/headers.js'

const h = (key: string, value: string | Buffer | null): KafkaHeader => ({ key, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value })
const int32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
const int64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigInt64BE(BigInt(n))
  return b
}
/** Java's BigInteger.valueOf(n).toByteArray(): minimal big-endian two's complement. */
const bigInteger = (n: number): Buffer => {
  let hex = BigInt.asUintN(64, BigInt(n)).toString(16).padStart(16, '0')
  // Drop redundant leading bytes while the sign bit stays the same.
  while (hex.length > 2 && ((hex.startsWith('00') && parseInt(hex[2]!, 16) < 8) || (hex.startsWith('ff') && parseInt(hex[2]!, 16) >= 8))) hex = hex.slice(2)
  return Buffer.from(hex, 'hex')
}
const record = (headers: KafkaHeader[]) => ({ headers })

const JAVA_STACK = `org.springframework.kafka.listener.ListenerExecutionFailedException: Listener method 'public void com.acme.orders.OrderListener.on(java.lang.String)' threw exception
\tat org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer.decorateException(KafkaMessageListenerContainer.java:2996)
\tat org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer.doInvokeOnMessage(KafkaMessageListenerContainer.java:2903)
Caused by: java.lang.IllegalStateException: customer 42 is gone
\tat com.acme.orders.OrderListener.on(OrderListener.java:31)`

const failure: FailureContext = {
  originTopic: 'orders',
  originPartition: 2,
  originOffset: 1234,
  originTimestamp: 1_700_000_000_123,
  group: 'billing',
  service: 'billing-worker',
  errorClass: 'NonRetriableError',
  errorCode: 'ORDER_ORPHANED',
  errorMessage: 'order 42 references a deleted customer',
  errorStack: 'NonRetriableError: order 42\n    at handle (/srv/app/src/handler.ts:1:1)',
  errorFingerprint: '0123456789abcdef',
  attempts: 3,
  firstFailureAt: Date.UTC(2024, 0, 1),
  lastFailureAt: Date.UTC(2024, 0, 1, 0, 0, 5),
}

test('lifeline: every failure header becomes a field, the fingerprint is the header', () => {
  const headers = [...encodeFailureHeaders([h('traceparent', '00-abc')], failure, { spring: true }), h(ReplayHeaders.id, 'r-1'), h(ReplayHeaders.count, '2')]
  const c = parseDeadLetter(record(headers))
  assert.deepEqual(c, {
    format: 'lifeline',
    originTopic: 'orders',
    originPartition: 2,
    originOffset: 1234,
    originTimestamp: 1_700_000_000_123,
    consumerGroup: 'billing',
    service: 'billing-worker',
    errorClass: 'NonRetriableError',
    errorCode: 'ORDER_ORPHANED',
    errorMessage: 'order 42 references a deleted customer',
    errorStack: failure.errorStack,
    fingerprint: '0123456789abcdef',
    attempts: 3,
    firstFailureAt: failure.firstFailureAt,
    lastFailureAt: failure.lastFailureAt,
    replayId: 'r-1',
    replayCount: 2,
    details: {},
  })
})

test('lifeline: lifeline.masked is reported; a missing fingerprint header is computed as the runtime computes it', () => {
  const headers = encodeFailureHeaders([], failure).filter((x) => x.key !== 'lifeline.error.fingerprint')
  headers.push(h('lifeline.masked', 'v1'))
  const c = parseDeadLetter(record(headers))
  assert.equal(c.masked, 'v1')
  assert.equal(c.fingerprint, fingerprint('NonRetriableError', 'ORDER_ORPHANED', failure.errorStack))
})

test('replay headers alone (a replayed record dead-lettered by another system) do not make a Lifeline dead letter', () => {
  const c = parseDeadLetter(record([h(ReplayHeaders.id, 'r-9'), h(ReplayHeaders.count, '1'), h(ConnectHeaders.topic, 'orders'), h(ConnectHeaders.exceptionClass, 'org.apache.kafka.connect.errors.DataException')]))
  assert.equal(c.format, 'connect')
  assert.equal(c.replayId, 'r-9')
  assert.equal(c.replayCount, 1)
})

test('spring DLT: binary int32 partition, int64 offset and timestamp, cause class preferred, delivery attempt', () => {
  const c = parseDeadLetter(
    record([
      h('traceparent', '00-abc'),
      h(SpringDltHeaders.originalTopic, 'payments'),
      h(SpringDltHeaders.originalPartition, int32(7)),
      h(SpringDltHeaders.originalOffset, int64(2 ** 40 + 3)),
      h(SpringDltHeaders.originalTimestamp, int64(1_700_000_000_999)),
      h(SpringDltHeaders.originalTimestampType, 'CreateTime'),
      h(SpringDltHeaders.originalConsumerGroup, 'payments-group'),
      h(SpringDltHeaders.exceptionFqcn, 'org.springframework.kafka.listener.ListenerExecutionFailedException'),
      h(SpringDltHeaders.exceptionCauseFqcn, 'java.lang.IllegalStateException'),
      h(SpringDltHeaders.exceptionMessage, 'customer 42 is gone'),
      h(SpringDltHeaders.exceptionStacktrace, JAVA_STACK),
      h('kafka_deliveryAttempt', int32(10)),
    ]),
  )
  assert.equal(c.format, 'spring')
  assert.equal(c.originTopic, 'payments')
  assert.equal(c.originPartition, 7)
  assert.equal(c.originOffset, 2 ** 40 + 3)
  assert.equal(c.originTimestamp, 1_700_000_000_999)
  assert.equal(c.consumerGroup, 'payments-group')
  assert.equal(c.errorClass, 'java.lang.IllegalStateException')
  assert.equal(c.errorMessage, 'customer 42 is gone')
  assert.equal(c.errorStack, JAVA_STACK)
  assert.equal(c.attempts, 10)
  assert.equal(c.details.exceptionFqcn, 'org.springframework.kafka.listener.ListenerExecutionFailedException')
  assert.equal(c.details.timestampType, 'CreateTime')
  assert.equal(c.fingerprint, foreignFingerprint('spring', 'java.lang.IllegalStateException', undefined, JAVA_STACK))
})

test('spring DLT: a key deserialization failure reads the key exception headers', () => {
  const c = parseDeadLetter(record([h(SpringDltHeaders.originalTopic, 't'), h(SpringDltHeaders.keyExceptionFqcn, 'org.apache.kafka.common.errors.SerializationException'), h(SpringDltHeaders.keyExceptionMessage, 'bad key')]))
  assert.equal(c.errorClass, 'org.apache.kafka.common.errors.SerializationException')
  assert.equal(c.errorMessage, 'bad key')
})

test('spring retry topics: kafka_original-* binary headers, retry_topic-attempts int32, BigInteger timestamps', () => {
  const failedAt = 1_700_000_100_000
  const c = parseDeadLetter(
    record([
      h(SpringRetryHeaders.originalTopic, 'orders'),
      h(SpringRetryHeaders.originalPartition, int32(3)),
      h(SpringRetryHeaders.originalOffset, int64(99)),
      h(SpringRetryHeaders.originalTimestamp, int64(1_700_000_000_000)),
      h(SpringRetryHeaders.originalTimestampType, 'CreateTime'),
      h(SpringRetryHeaders.originalConsumerGroup, 'orders-group'),
      h(SpringRetryHeaders.exceptionFqcn, 'org.springframework.kafka.listener.ListenerExecutionFailedException'),
      h(SpringRetryHeaders.exceptionCauseFqcn, 'java.lang.IllegalStateException'),
      h(SpringRetryHeaders.exceptionMessage, 'boom'),
      h(SpringRetryHeaders.exceptionStacktrace, JAVA_STACK),
      h(SpringRetryHeaders.originalTimestampRetry, bigInteger(1_700_000_000_000)),
      h(SpringRetryHeaders.attempts, int32(2)),
      h(SpringRetryHeaders.backoffTimestamp, bigInteger(failedAt - 1000)),
      // Later hops replace these (SingleRecordHeader): the last one wins.
      h(SpringRetryHeaders.attempts, int32(4)),
      h(SpringRetryHeaders.backoffTimestamp, bigInteger(failedAt)),
    ]),
  )
  assert.equal(c.format, 'spring-retry')
  assert.equal(c.originTopic, 'orders')
  assert.equal(c.originPartition, 3)
  assert.equal(c.originOffset, 99)
  assert.equal(c.originTimestamp, 1_700_000_000_000)
  assert.equal(c.consumerGroup, 'orders-group')
  assert.equal(c.errorClass, 'java.lang.IllegalStateException')
  assert.equal(c.errorMessage, 'boom')
  // The DLT record's header is the next attempt's number: 3 attempts were made.
  assert.equal(c.attempts, 3)
  assert.equal(c.lastFailureAt, failedAt)
})

test('spring retry topics: attempts in the pre-2.7.9 BigInteger form and as text', () => {
  assert.equal(springAttempts(Buffer.from([3])), 3)
  assert.equal(springAttempts(bigInteger(200)), 200) // two bytes: 0x00c8
  assert.equal(springAttempts(int32(5)), 5)
  assert.equal(springAttempts(Buffer.from('4')), 4)
  assert.equal(springAttempts(Buffer.from('12')), 12)
  assert.equal(springAttempts(Buffer.alloc(0)), undefined)
  assert.equal(springAttempts(Buffer.alloc(6)), undefined)
  const legacy = parseDeadLetter(record([h(SpringRetryHeaders.originalTopic, 'orders'), h(SpringRetryHeaders.attempts, Buffer.from([4]))]))
  assert.equal(legacy.format, 'spring-retry')
  assert.equal(legacy.attempts, 3)
  const text = parseDeadLetter(record([h(SpringRetryHeaders.attempts, '3')]))
  assert.equal(text.format, 'spring-retry')
  assert.equal(text.attempts, 2)
})

test('connect: text positions, connector as service, stage as code, details', () => {
  const stack = 'org.apache.kafka.connect.errors.DataException: Converting byte[] to Kafka Connect data failed\n\tat org.apache.kafka.connect.json.JsonConverter.toConnectData(JsonConverter.java:333)'
  const c = parseDeadLetter(
    record([
      h(ConnectHeaders.topic, 'inventory'),
      h(ConnectHeaders.partition, '4'),
      h(ConnectHeaders.offset, '5567'),
      h(ConnectHeaders.connectorName, 'jdbc-sink'),
      h(ConnectHeaders.taskId, '0'),
      h(ConnectHeaders.stage, 'VALUE_CONVERTER'),
      h(ConnectHeaders.className, 'org.apache.kafka.connect.json.JsonConverter'),
      h(ConnectHeaders.exceptionClass, 'org.apache.kafka.connect.errors.DataException'),
      h(ConnectHeaders.exceptionMessage, 'Converting byte[] to Kafka Connect data failed'),
      h(ConnectHeaders.exceptionStacktrace, stack),
    ]),
  )
  assert.deepEqual(
    { ...c, fingerprint: undefined },
    {
      format: 'connect',
      originTopic: 'inventory',
      originPartition: 4,
      originOffset: 5567,
      service: 'jdbc-sink',
      errorClass: 'org.apache.kafka.connect.errors.DataException',
      errorCode: 'VALUE_CONVERTER',
      errorMessage: 'Converting byte[] to Kafka Connect data failed',
      errorStack: stack,
      details: { connector: 'jdbc-sink', taskId: '0', stage: 'VALUE_CONVERTER', className: 'org.apache.kafka.connect.json.JsonConverter' },
      fingerprint: undefined,
    },
  )
})

test('streams (KIP-1034): class from the exception toString, text positions, -1 reads as unknown', () => {
  const c = parseDeadLetter(
    record([
      h(StreamsHeaders.exception, 'org.apache.kafka.common.errors.SerializationException: Size of data received by IntegerDeserializer is not 4'),
      h(StreamsHeaders.message, 'Size of data received by IntegerDeserializer is not 4'),
      h(StreamsHeaders.stacktrace, 'org.apache.kafka.common.errors.SerializationException: Size...\n\tat org.apache.kafka.common.serialization.IntegerDeserializer.deserialize(IntegerDeserializer.java:30)'),
      h(StreamsHeaders.topic, 'clicks'),
      h(StreamsHeaders.partition, '1'),
      h(StreamsHeaders.offset, '42'),
    ]),
  )
  assert.equal(c.format, 'streams')
  assert.equal(c.errorClass, 'org.apache.kafka.common.errors.SerializationException')
  assert.equal(c.errorMessage, 'Size of data received by IntegerDeserializer is not 4')
  assert.equal(c.originTopic, 'clicks')
  assert.equal(c.originPartition, 1)
  assert.equal(c.originOffset, 42)
  // A punctuation failure has no source record: Streams writes -1; a null message falls back to toString().
  const punctuation = parseDeadLetter(record([h(StreamsHeaders.exception, 'java.lang.RuntimeException: tick failed'), h(StreamsHeaders.message, null), h(StreamsHeaders.partition, '-1'), h(StreamsHeaders.offset, '-1')]))
  assert.equal(punctuation.originPartition, undefined)
  assert.equal(punctuation.originOffset, undefined)
  assert.equal(punctuation.errorClass, 'java.lang.RuntimeException')
  assert.equal(punctuation.errorMessage, 'tick failed')
})

test('karafka: source_* headers (2.4+) and the original_* names before', () => {
  const c = parseDeadLetter(record([h(KarafkaHeaders.topic, 'orders_states'), h(KarafkaHeaders.partition, '0'), h(KarafkaHeaders.offset, '17'), h(KarafkaHeaders.consumerGroup, 'app_group'), h(KarafkaHeaders.attempts, '3'), h(KarafkaHeaders.traceId, 'a1b2')]))
  assert.deepEqual({ ...c, fingerprint: undefined }, { format: 'karafka', originTopic: 'orders_states', originPartition: 0, originOffset: 17, consumerGroup: 'app_group', attempts: 3, details: { traceId: 'a1b2' }, fingerprint: undefined })
  assert.equal(c.fingerprint, foreignFingerprint('karafka', undefined, undefined, undefined))
  const legacy = parseDeadLetter(record([h('original_topic', 'orders_states'), h('original_partition', '1'), h('original_offset', '5'), h('original_consumer_group', 'g'), h('original_attempts', '2'), h('original_key', 'k')]))
  assert.equal(legacy.format, 'karafka')
  assert.equal(legacy.originPartition, 1)
  assert.equal(legacy.attempts, 2)
  // Generic names alone are not enough.
  assert.equal(parseDeadLetter(record([h('original_topic', 'x')])).format, 'unknown')
})

test('unknown: no recognised header', () => {
  const c = parseDeadLetter(record([h('content-type', 'application/json')]))
  assert.equal(c.format, 'unknown')
  assert.match(c.fingerprint, /^[0-9a-f]{16}$/)
  assert.deepEqual(c.details, {})
})

test('a long foreign message is capped like Lifeline caps its own', () => {
  const c = parseDeadLetter(record([h(ConnectHeaders.exceptionMessage, 'x'.repeat(MAX_MESSAGE_BYTES * 2))]))
  assert.equal(Buffer.byteLength(c.errorMessage!), MAX_MESSAGE_BYTES)
})

test('foreign fingerprints ignore line numbers and deploy paths (Java, Ruby, Python frames)', () => {
  const java = (line: number) => `java.lang.IllegalStateException: x\n\tat com.acme.A.run(A.java:${line})\n\tat com.acme.B.call(B.java:${line + 1})`
  assert.equal(foreignFingerprint('spring', 'E', undefined, java(10)), foreignFingerprint('spring', 'E', undefined, java(99)))
  assert.notEqual(foreignFingerprint('spring', 'E', undefined, java(10)), foreignFingerprint('spring', 'F', undefined, java(10)))
  const ruby = (root: string, line: number) => `${root}/app/consumers/orders_consumer.rb:${line}:in 'consume'\n${root}/lib/karafka/base_consumer.rb:${line}:in 'on_consume'`
  assert.equal(foreignFingerprint('karafka', 'NoMethodError', undefined, ruby('/srv/a', 3)), foreignFingerprint('karafka', 'NoMethodError', undefined, ruby('/home/b', 7)))
  assert.notEqual(foreignFingerprint('karafka', 'NoMethodError', undefined, ruby('/srv/a', 3)), foreignFingerprint('karafka', 'NoMethodError', undefined, undefined))
  const python = (line: number) => `Traceback (most recent call last):\n  File "/srv/app/worker.py", line ${line}, in handle\n    raise ValueError()`
  assert.equal(foreignFingerprint('unknown', 'ValueError', undefined, python(1)), foreignFingerprint('unknown', 'ValueError', undefined, python(2)))
})

const PREFIXES = ['lifeline.', 'kafka_dlt-', 'kafka_original-', 'kafka_exception-', 'retry_topic-', '__connect.errors.', '__streams.errors.', 'source_', 'original_']
const KNOWN_KEYS = [
  ...Object.values(SpringDltHeaders), ...Object.values(SpringRetryHeaders), ...Object.values(ConnectHeaders), ...Object.values(StreamsHeaders), ...Object.values(KarafkaHeaders),
  ...Object.values(ReplayHeaders), 'lifeline.schema', 'lifeline.origin.topic', 'lifeline.origin.partition', 'lifeline.origin.offset', 'lifeline.attempts', 'lifeline.first-failure',
  'lifeline.error.fingerprint', 'lifeline.error.class', 'kafka_deliveryAttempt',
]
const garbageValue = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)),
  fc.string({ unit: 'binary', maxLength: 30 }).map((s) => Buffer.from(s, 'utf8')),
  fc.constantFrom('-1', '99999999999999999999', '1e3', ' 7 ', 'NaN', '', '2024-02-30T00:00:00Z', '+275760-09-13T00:00:00.000Z').map((s) => Buffer.from(s)),
  fc.integer().map((n) => Buffer.from(String(n))),
)
const garbageHeaders = fc.array(
  fc.record({ key: fc.oneof(fc.constantFrom(...KNOWN_KEYS), fc.constantFrom(...PREFIXES).chain((p) => fc.string({ maxLength: 10 }).map((s) => p + s)), fc.string({ maxLength: 10 })), value: garbageValue }),
  { maxLength: 25 },
)

test('garbage header values never throw and always give a well-formed context', () => {
  fc.assert(
    fc.property(garbageHeaders, (headers) => {
      const c = parseDeadLetter(record(headers as KafkaHeader[]))
      assert.ok(DEAD_LETTER_FORMATS.includes(c.format))
      assert.equal(typeof c.fingerprint, 'string')
      assert.ok(c.fingerprint.length > 0)
      for (const n of [c.originPartition, c.originOffset, c.attempts, c.replayCount]) assert.ok(n === undefined || (Number.isSafeInteger(n) && n >= 0), `bad number ${n}`)
      if (c.originPartition !== undefined) assert.ok(c.originPartition <= 0x7fffffff)
      for (const t of [c.originTimestamp, c.firstFailureAt, c.lastFailureAt]) assert.ok(t === undefined || Number.isFinite(t))
      for (const value of Object.values(c)) assert.notEqual(value, undefined)
    }),
    { numRuns: 2000 },
  )
})

test('hostile record shapes never throw', () => {
  for (const headers of [undefined, null, 'x', [null], [{ key: 1, value: 'x' }], [{ key: 'lifeline.schema', value: 'not a buffer' }]]) {
    assert.equal(parseDeadLetter({ headers } as never).format, 'unknown')
  }
})
