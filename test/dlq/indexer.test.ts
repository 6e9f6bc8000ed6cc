import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import { Registry } from 'prom-client'
import { ConnectHeaders, KarafkaHeaders, SpringRetryHeaders, StreamsHeaders } from '../../src/failure/formats.js'
import { createDlqIndexer, type DlqIndexer, type DlqIndexerOptions } from '../../src/dlq/indexer.js'
import { countRecords, listRecords, getRecord } from '../../src/dlq/records.js'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { LifelineError } from '../../src/errors.js'
import { MASKED_HEADER, Masker } from '../../src/failure/masking.js'
import { encodeFailureHeaders, SpringDltHeaders } from '../../src/failure/headers.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { freshDatabase, stateDatabase } from '../helpers/db.js'
import { admin, brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'

const h = (key: string, value: string | Buffer | null): KafkaHeader => ({ key, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value })
const int32 = (n: number) => Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])
const int64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigInt64BE(BigInt(n))
  return b
}

async function startIndexer(t: TestContext, options: Omit<DlqIndexerOptions, 'brokers'>): Promise<DlqIndexer> {
  const indexer = createDlqIndexer({ brokers: brokers(), groupId: randomName('indexer'), pollTimeoutMs: 100, ...options })
  defer(t, () => indexer.close())
  await indexer.start()
  return indexer
}

const byOrigin = async (db: SqlExecutor, originTopic: string) => {
  const [summary] = await listRecords(db, { topic: originTopic })
  assert.ok(summary, `no record from ${originTopic}`)
  return getRecord(db, summary.id)
}

test('indexes Lifeline, Spring (both variants), Connect, Streams and Karafka dead letters with origin, error and attempts', async (t) => {
  const db = await stateDatabase(t)
  const id = randomBytes(3).toString('hex')
  const origins = Object.fromEntries(['lifeline', 'spring', 'springretry', 'connect', 'streams', 'karafka'].map((f) => [f, `orders-${f}-${id}`]))

  // A real Lifeline consumer dead-letters a record of its source topic.
  const source = await topic(t, { topic: origins.lifeline })
  await lifeline(t, { topics: [source], handler: () => { throw new NonRetriableError('customer 42 is gone', { code: 'E_ORPHAN' }) } })
  await producer(t).send([{ topic: source, key: 'order-1', value: JSON.stringify({ id: 1 }) }])
  const lifelineDlq = `svc.${source}.dlq`
  defer(t, () => admin(t).deleteTopics([lifelineDlq]))

  const foreignDlq = await topic(t, { prefix: `foreign-${id}.dlq` })
  const JAVA = 'java.lang.IllegalStateException: boom\n\tat com.acme.Listener.on(Listener.java:31)'
  await producer(t).send([
    {
      topic: foreignDlq, key: 'spring-key', value: '{"n":1}',
      headers: [
        h(SpringDltHeaders.originalTopic, origins.spring!), h(SpringDltHeaders.originalPartition, int32(3)), h(SpringDltHeaders.originalOffset, int64(2 ** 33)),
        h(SpringDltHeaders.originalTimestamp, int64(1_700_000_000_000)), h(SpringDltHeaders.originalConsumerGroup, 'spring-group'),
        h(SpringDltHeaders.exceptionFqcn, 'org.springframework.kafka.listener.ListenerExecutionFailedException'), h(SpringDltHeaders.exceptionCauseFqcn, 'java.lang.IllegalStateException'),
        h(SpringDltHeaders.exceptionMessage, 'boom'), h(SpringDltHeaders.exceptionStacktrace, JAVA), h('kafka_deliveryAttempt', int32(10)),
      ],
    },
    {
      topic: foreignDlq, key: 'retry-key', value: '{"n":2}',
      headers: [
        h(SpringRetryHeaders.originalTopic, origins.springretry!), h(SpringRetryHeaders.originalPartition, int32(1)), h(SpringRetryHeaders.originalOffset, int64(77)),
        h(SpringRetryHeaders.originalConsumerGroup, 'retry-group'), h(SpringRetryHeaders.exceptionFqcn, 'java.lang.NullPointerException'), h(SpringRetryHeaders.exceptionMessage, 'npe'),
        h(SpringRetryHeaders.attempts, int32(4)), h(SpringRetryHeaders.originalTimestampRetry, Buffer.from([0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00])),
      ],
    },
    {
      topic: foreignDlq, key: 'connect-key', value: 'not json',
      headers: [
        h(ConnectHeaders.topic, origins.connect!), h(ConnectHeaders.partition, '2'), h(ConnectHeaders.offset, '500'), h(ConnectHeaders.connectorName, 'jdbc-sink'), h(ConnectHeaders.taskId, '1'),
        h(ConnectHeaders.stage, 'VALUE_CONVERTER'), h(ConnectHeaders.exceptionClass, 'org.apache.kafka.connect.errors.DataException'), h(ConnectHeaders.exceptionMessage, 'Converting byte[] failed'),
      ],
    },
    {
      topic: foreignDlq, key: 'streams-key', value: '{"n":4}',
      headers: [
        h(StreamsHeaders.exception, 'org.apache.kafka.common.errors.SerializationException: bad int'), h(StreamsHeaders.message, 'bad int'), h(StreamsHeaders.stacktrace, 'trace'),
        h(StreamsHeaders.topic, origins.streams!), h(StreamsHeaders.partition, '0'), h(StreamsHeaders.offset, '9'),
      ],
    },
    {
      topic: foreignDlq, key: 'karafka-key', value: '{"n":5}',
      headers: [h(KarafkaHeaders.topic, origins.karafka!), h(KarafkaHeaders.partition, '0'), h(KarafkaHeaders.offset, '12'), h(KarafkaHeaders.consumerGroup, 'karafka-app'), h(KarafkaHeaders.attempts, '3')],
    },
    { topic: foreignDlq, key: 'mystery', value: Buffer.from([0xde, 0xad]), headers: [h('x-custom', Buffer.from([0, 1]))] },
    { topic: foreignDlq, key: 'garbage', value: null, headers: [h(SpringDltHeaders.originalPartition, 'xx'), h(ConnectHeaders.offset, Buffer.from([0xff])), h('lifeline.origin.offset', '-')] },
  ])
  const registry = new Registry()
  const indexer = await startIndexer(t, { db, topics: [lifelineDlq, foreignDlq], metrics: { registry } })
  await waitFor(async () => (await countRecords(db)) === 8, '8 indexed records', 60_000)

  const ll = await byOrigin(db, origins.lifeline!)
  assert.equal(ll.format, 'lifeline')
  assert.equal(ll.keyText, 'order-1')
  assert.equal(ll.originPartition, 0)
  assert.equal(ll.originOffset, 0)
  assert.equal(ll.errorClass, 'NonRetriableError')
  assert.equal(ll.errorCode, 'E_ORPHAN')
  assert.equal(ll.errorMessage, 'customer 42 is gone')
  assert.equal(ll.attempts, 1)
  assert.equal(ll.service, 'svc')
  assert.ok(ll.consumerGroup)
  assert.ok(ll.lastFailureAt instanceof Date)

  const spring = await byOrigin(db, origins.spring!)
  assert.deepEqual([spring.format, spring.originPartition, spring.originOffset, spring.originTimestamp, spring.consumerGroup, spring.errorClass, spring.errorMessage, spring.errorStack, spring.attempts], ['spring', 3, 2 ** 33, 1_700_000_000_000, 'spring-group', 'java.lang.IllegalStateException', 'boom', JAVA, 10])
  const retry = await byOrigin(db, origins.springretry!)
  assert.deepEqual([retry.format, retry.originPartition, retry.originOffset, retry.consumerGroup, retry.errorClass, retry.attempts, retry.originTimestamp], ['spring-retry', 1, 77, 'retry-group', 'java.lang.NullPointerException', 3, 0x018bcfe56800])
  const connect = await byOrigin(db, origins.connect!)
  assert.deepEqual([connect.format, connect.originPartition, connect.originOffset, connect.service, connect.errorClass, connect.errorCode, connect.errorMessage], ['connect', 2, 500, 'jdbc-sink', 'org.apache.kafka.connect.errors.DataException', 'VALUE_CONVERTER', 'Converting byte[] failed'])
  assert.deepEqual(connect.details, { connector: 'jdbc-sink', taskId: '1', stage: 'VALUE_CONVERTER' })
  const streams = await byOrigin(db, origins.streams!)
  assert.deepEqual([streams.format, streams.originPartition, streams.originOffset, streams.errorClass, streams.errorMessage], ['streams', 0, 9, 'org.apache.kafka.common.errors.SerializationException', 'bad int'])
  const karafka = await byOrigin(db, origins.karafka!)
  assert.deepEqual([karafka.format, karafka.originPartition, karafka.originOffset, karafka.consumerGroup, karafka.attempts], ['karafka', 0, 12, 'karafka-app', 3])

  const unknown = await listRecords(db, { format: 'unknown' })
  assert.deepEqual(unknown.map((r) => r.keyText).sort(), ['mystery'])
  const mystery = await getRecord(db, unknown[0]!.id)
  assert.deepEqual(mystery.headers, [h('x-custom', Buffer.from([0, 1]))])
  assert.deepEqual(mystery.value, Buffer.from([0xde, 0xad]))
  // Garbage Spring/Connect values: the format is recognised, the unreadable fields are left empty.
  const [garbage] = await listRecords(db, { key: 'garbage' })
  assert.equal(garbage!.originPartition, null)

  const stats = indexer.stats()
  assert.equal(stats.indexed, 8)
  assert.equal(stats.byFormat.connect, 1)
  const metric = await registry.getSingleMetric('lifeline_dlq_indexed_total')!.get()
  assert.equal(metric.values.find((v) => v.labels.topic === foreignDlq && v.labels.format === 'spring-retry')?.value, 1)

  // A second group reads everything again: nothing is stored twice.
  const again = await startIndexer(t, { db, topics: [lifelineDlq, foreignDlq], migrate: false })
  await waitFor(() => again.stats().duplicates === 8, 'the second indexer to re-read 8 records', 60_000)
  assert.equal(await countRecords(db), 8)
  assert.equal(again.stats().indexed, 0)
})

test('stored but not committed (it stops between the database commit and the offset commit, with the next batch polled): the next indexer of the group stores the rest, nothing lost, nothing twice', async (t) => {
  const db = await stateDatabase(t)
  const dlq = await topic(t, { prefix: 'crash.dlq' })
  const now = Date.now()
  await producer(t).send(Array.from({ length: 60 }, (_, i) => ({
    topic: dlq, key: `k${i}`, value: `v${i}`,
    headers: encodeFailureHeaders([], { originTopic: 'orders', originPartition: 0, originOffset: i, originTimestamp: now, group: 'g', service: 's', errorClass: 'Error', errorCode: 'E', errorMessage: 'boom', errorFingerprint: 'f', attempts: 1, firstFailureAt: now, lastFailureAt: now }),
  })))
  // The 4th batch commits in the database, then the executor reports it closed: the indexer stops there,
  // as a process killed after the database commit would, without committing that batch's offsets.
  let transactions = 0
  const failing: SqlExecutor = {
    kind: db.kind,
    query: (text, params) => db.query(text, params),
    close: () => Promise.resolve(),
    transaction: async (fn) => {
      const result = await db.transaction(fn)
      if (++transactions === 4) throw new LifelineError('LL_DB_CLOSED', 'closed after the commit (test)')
      return result
    },
  }
  const groupId = randomName('indexer')
  await migrateLifeline(db)
  const first = await startIndexer(t, { db: failing, topics: [dlq], groupId, batchSize: 5, migrate: false })
  await waitFor(() => !first.stats().running, 'the first indexer to stop', 60_000)
  assert.equal(first.stats().indexed, 15, 'three batches counted; the fourth was stored but never acknowledged')
  assert.equal(await countRecords(db), 20)
  await first.close()
  const second = await startIndexer(t, { db, topics: [dlq], groupId, batchSize: 5, migrate: false })
  await waitFor(() => second.stats().indexed + second.stats().duplicates === 45, 'the second indexer to read from the committed offset', 60_000)
  assert.deepEqual({ indexed: second.stats().indexed, duplicates: second.stats().duplicates }, { indexed: 40, duplicates: 5 }, 'it starts at the last committed batch: the stored one is read again, not stored again')
  const { rows } = await db.query<{ n: number; distinct: number }>('select count(*)::int as n, count(distinct "offset")::int as distinct from lifeline_dlq_records')
  assert.deepEqual(rows[0], { n: 60, distinct: 60 })
})

test('a pattern subscription picks up a DLQ topic created after start', async (t) => {
  const db = await stateDatabase(t)
  const prefix = `late-${randomBytes(4).toString('hex')}`
  const first = await topic(t, { topic: `${prefix}.a.dlq` })
  await producer(t).send([{ topic: first, key: 'a', value: '1', headers: [h(KarafkaHeaders.topic, 'a'), h(KarafkaHeaders.offset, '1')] }])
  const indexer = await startIndexer(t, { db, pattern: `^${prefix}\\..*\\.dlq$`, topicRefreshMs: 1000 })
  await waitFor(async () => (await countRecords(db)) === 1, 'the existing topic indexed', 60_000)
  const late = await topic(t, { topic: `${prefix}.b.dlq` })
  await topic(t, { topic: `${prefix}.b.not-a-dlq` })
  await producer(t).send([{ topic: late, key: 'b', value: '2', headers: [h(KarafkaHeaders.topic, 'b'), h(KarafkaHeaders.offset, '2')] }])
  await waitFor(async () => (await countRecords(db)) === 2, 'the late topic indexed', 60_000)
  assert.deepEqual((await listRecords(db, { dlqTopic: late })).map((r) => r.originTopic), ['b'])
  assert.ok(indexer.stats().assigned.some((p) => p.topic === late))
})

test('on PGlite (no autovacuum) the indexer analyzes the DLQ tables as it fills them: after 100 records the planner has their statistics', async (t) => {
  const db = await freshDatabase(t, 'pglite')
  const dlq = await topic(t, { prefix: `analyzed-${randomBytes(3).toString('hex')}.dlq` })
  const columnStats = async () => (await db.query("select 1 from pg_stats where tablename = 'lifeline_dlq_record_states' and attname = 'status'")).rows.length
  const send = (from: number, n: number) =>
    producer(t).send(Array.from({ length: n }, (_, i) => ({ topic: dlq, key: `k${from + i}`, value: String(from + i), headers: [h(KarafkaHeaders.topic, 'orders'), h(KarafkaHeaders.offset, String(from + i))] })))
  await send(0, 60)
  const indexer = await startIndexer(t, { db, topics: [dlq], batchSize: 20 })
  await waitFor(async () => (await countRecords(db)) === 60, '60 records indexed', 60_000)
  assert.equal(await columnStats(), 0, '60 records: not analyzed yet, the planner guesses')
  await send(60, 60)
  await waitFor(async () => (await countRecords(db)) === 120, '120 records indexed', 60_000)
  await indexer.close() // waits for an ANALYZE in flight
  assert.equal(await columnStats(), 1, 'analyzed once 100 records were written')
})

test('foreign PII is masked before it reaches the database; what the runtime masked in a Lifeline record is stored as written', async (t) => {
  const db = await stateDatabase(t)
  const keyring = { currentKeyId: 'k1', keys: { k1: randomBytes(32) } }
  const dlq = await topic(t, { prefix: 'pii.dlq' })
  const email = `jane.${randomBytes(3).toString('hex')}@example.com`
  const card = '4111111111111111'
  await producer(t).send([
    {
      topic: dlq, key: 'c1', value: JSON.stringify({ customer: { email, name: 'Jane' }, card, total: 5 }),
      headers: [
        h(ConnectHeaders.topic, 'customers'), h(ConnectHeaders.partition, '0'), h(ConnectHeaders.offset, '1'), h(ConnectHeaders.exceptionClass, 'org.apache.kafka.connect.errors.DataException'),
        h(ConnectHeaders.exceptionMessage, `invalid customer ${email} with card ${card}`), h(ConnectHeaders.exceptionStacktrace, `DataException: invalid customer ${email}\n\tat X.y(X.java:1)`),
        h('x-customer-email', email),
      ],
    },
    {
      topic: dlq, key: 's1', value: JSON.stringify({ customer: { email } }),
      headers: [h(StreamsHeaders.exception, `java.lang.IllegalArgumentException: bad ${email}`), h(StreamsHeaders.topic, 'customers'), h(StreamsHeaders.partition, '0'), h(StreamsHeaders.offset, '2')],
    },
  ])
  // A Lifeline dead letter the runtime already masked (encrypted field, lifeline.masked): its masked values are not masked again.
  const premasked = Buffer.from(JSON.stringify({ customer: { email: new Masker([], keyring).encrypt(JSON.stringify(email), { topic: 'customers', path: '$.customer.email' }) } }))
  const lifelineHeaders = [...encodeFailureHeaders([], { originTopic: 'customers', originPartition: 0, originOffset: 3, originTimestamp: 1, group: 'g', service: 's', errorClass: 'Error', errorCode: 'E', errorMessage: 'm', errorFingerprint: 'fp', attempts: 1, firstFailureAt: 1, lastFailureAt: 2 }), h(MASKED_HEADER, 'v1')]
  await producer(t).send([{ topic: dlq, key: 'l1', value: premasked, headers: lifelineHeaders }])
  await startIndexer(t, {
    db,
    topics: [dlq],
    masking: { keyring, policies: [{ topics: ['customers'], rules: [{ path: '$.customer.email', action: 'encrypt' }, { path: '$.card', action: 'redact' }], patterns: ['[\\w.]+@example\\.com'], headers: ['x-customer-email'] }] },
  })
  await waitFor(async () => (await countRecords(db)) === 3, '3 indexed records', 60_000)
  const { rows } = await db.query(`select r::text as all_columns, encode(value, 'escape') as v from lifeline_dlq_records r`)
  for (const row of rows) {
    // bytea prints as hex in r::text: the value is checked decoded too.
    const everything = `${String(row.all_columns)}\n${String(row.v)}`
    assert.ok(!everything.includes(email), 'the e-mail address is nowhere in the row')
    assert.ok(!everything.includes(card), 'the card number is nowhere in the row')
  }
  const [c1] = await listRecords(db, { key: 'c1' })
  const stored = await getRecord(db, c1!.id)
  assert.equal(stored.masked, true)
  const value = JSON.parse(stored.value!.toString()) as { customer: { email: string; name: string }; card: string }
  assert.match(value.customer.email, /^enc:v2:k1:/)
  assert.equal(value.customer.name, 'Jane')
  assert.equal(value.card, '[REDACTED]')
  assert.ok(!stored.errorMessage!.includes(email))
  assert.equal(stored.headers.find((x) => x.key === 'x-customer-email')?.value?.toString(), '[REDACTED]')
  assert.ok(!stored.headers.find((x) => x.key === ConnectHeaders.exceptionStacktrace)!.value!.toString().includes(email))
  // Streams' toString() header carries the message too.
  const [l1] = await listRecords(db, { key: 'l1' })
  const lifelineRecord = await getRecord(db, l1!.id)
  assert.deepEqual(lifelineRecord.value, premasked, 'not masked again')
  assert.equal(lifelineRecord.masked, true)
  const [s1] = await listRecords(db, { key: 's1' })
  assert.ok(!(await getRecord(db, s1!.id)).headers.find((x) => x.key === StreamsHeaders.exception)!.value!.toString().includes(email))
})

test('options are validated', () => {
  const db = {} as SqlExecutor
  assert.throws(() => createDlqIndexer({ brokers: brokers(), db }), /indexer\.db/)
  const fakeDb = { transaction: () => undefined } as unknown as SqlExecutor
  assert.throws(() => createDlqIndexer({ brokers: brokers(), db: fakeDb }), /topics, a pattern, or both/)
  assert.throws(() => createDlqIndexer({ brokers: brokers(), db: fakeDb, pattern: '(' }), /indexer\.pattern/)
  assert.throws(() => createDlqIndexer({ brokers: brokers(), db: fakeDb, topics: ['a b'] }), /indexer\.topics\[0\]/)
  assert.throws(() => createDlqIndexer({ brokers: brokers(), db: fakeDb, topics: ['a'], batchSize: 0 }), /indexer\.batchSize/)
})
