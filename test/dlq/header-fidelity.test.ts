/**
 * Header fidelity through the whole DLQ path: a record with a null, an empty and a normal header value is
 * dead-lettered by the consumer runtime, indexed, and redriven to its origin topic, and every step keeps
 * each header value as it was (Kafka tells null from empty).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ReplayHeaders } from '../../src/failure/formats.js'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { getRecord, listRecords, loadHeaders, storeHeaders } from '../../src/dlq/records.js'
import { replayRecord } from '../../src/dlq/redrive/replay.js'
import type { KafkaHeader } from '../../src/kafka/types.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { stateDatabase } from '../helpers/db.js'
import { admin, brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline, readAll } from '../helpers/lifeline.js'

/** Null, empty and normal header values, a repeated key among them (headers are an ordered list). */
const SENT: KafkaHeader[] = [
  { key: 'a', value: null },
  { key: 'b', value: Buffer.alloc(0) },
  { key: 'c', value: Buffer.from('x') },
  { key: 'a', value: Buffer.alloc(0) },
]

const own = (headers: readonly KafkaHeader[]): KafkaHeader[] => headers.filter((h) => !h.key.startsWith('lifeline.'))

test('stored headers (jsonb) keep null and empty values apart, text and base64 alike (pure)', () => {
  const headers: KafkaHeader[] = [...SENT, { key: 'bin', value: Buffer.from([0xff, 0x00]) }, { key: 'bin-null', value: null }, { key: 'k\u0000', value: Buffer.alloc(0) }]
  const stored = storeHeaders(headers)
  assert.deepEqual(stored.slice(0, 4), [{ key: 'a', value: null }, { key: 'b', value: '' }, { key: 'c', value: 'x' }, { key: 'a', value: '' }])
  assert.deepEqual(loadHeaders(JSON.parse(JSON.stringify(stored))), headers)
})

test('a record with a null, an empty and a normal header that is dead-lettered, indexed and redriven arrives at its origin topic with those headers exactly as they were', async (t) => {
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  const source = await topic(t, { prefix: 'hdr-src' })
  const dlq = `svc.${source}.dlq`
  const a = admin(t)
  defer(t, () => a.deleteTopics([dlq]))
  const seen: KafkaHeader[][] = []
  await lifeline(t, {
    topics: [source],
    decoder: 'string',
    handler: (m) => {
      seen.push(m.headers)
      // The redriven copy (it carries replay headers) succeeds.
      if (!m.headers.some((h) => h.key === ReplayHeaders.id)) throw new NonRetriableError('refused', { code: 'E_REFUSED' })
    },
  })
  await producer(t).send([{ topic: source, key: 'k', value: 'v', headers: SENT }])

  // 1. The DLQ write: the source headers first, each as it was, then the failure headers.
  await waitFor(async () => (await a.listTopics()).includes(dlq), 'the DLQ topic', 30_000)
  const [dead] = await readAll(t, dlq, 1)
  assert.ok(dead, 'the dead letter arrived')
  assert.deepEqual(dead.headers.slice(0, SENT.length), SENT, 'the DLQ record keeps the source headers')
  assert.deepEqual(own(dead.headers), SENT)

  // 2. The index: stored and loaded back exactly.
  const indexer = createDlqIndexer({ brokers: brokers(), db, topics: [dlq], groupId: randomName('indexer'), pollTimeoutMs: 100, migrate: false })
  defer(t, () => indexer.close())
  await indexer.start()
  await waitFor(async () => (await listRecords(db, { topic: source })).length === 1, 'the dead letter indexed', 30_000)
  const [summary] = await listRecords(db, { topic: source })
  const indexed = await getRecord(db, summary!.id)
  assert.deepEqual(own(indexed.headers), SENT, 'the index keeps null and empty apart')

  // 3. The redrive: the replay on the origin topic carries the user headers exactly, then the replay headers.
  const replay = await replayRecord({ db, producer: producer(t), kafka: { brokers: brokers() } }, summary!.id, { actor: 'alice' })
  const records = await readAll(t, source, 2)
  const replayed = records.find((r) => r.offset === replay.offset)
  assert.ok(replayed, 'the replay is on the origin topic')
  assert.deepEqual(replayed.headers.slice(0, SENT.length), SENT, 'the replay keeps the headers as they were')
  assert.deepEqual(replayed.headers.slice(SENT.length).map((h) => h.key), [ReplayHeaders.id, ReplayHeaders.count, ReplayHeaders.actor])
  // And the consumer runtime's handler saw them so, the first time and on the replay.
  await waitFor(() => seen.length === 2, 'the handler to run the replay')
  assert.deepEqual(seen[0], SENT)
  assert.deepEqual(seen[1]!.slice(0, SENT.length), SENT)
})
