import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { randomBytes } from 'node:crypto'
import { Registry } from 'prom-client'
import { Masker } from '../../src/failure/masking.js'
import { isLifelineError } from '../../src/errors.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { createConsumer } from '../../src/runtime/consumer.js'
import { decodeFailureHeaders, decodeSpringHeaders } from '../../src/failure/headers.js'
import { admin, brokers, producer, randomName, topic, waitFor, defer } from '../helpers/kafka.js'
import { header, lifeline, readAll } from '../helpers/lifeline.js'

describe('consumer runtime against the real broker', () => {
  test('a poison record goes to the DLQ byte-identical with every failure header, then its offset is committed', async (t) => {
    const source = await topic(t, { partitions: 3 })
    const groupId = randomName('poison')
    const value = Buffer.from('{"orderId":"o-1","amount":5}')
    const headers = [{ key: 'trace', value: Buffer.from('t-1') }, { key: 'bin', value: Buffer.from([0, 1, 255]) }, { key: 'trace', value: Buffer.from('t-2') }]
    const [ack] = await producer(t).send([{ topic: source, key: 'order-1', value, headers, partition: 2 }])
    const failure = Object.assign(new Error('payment provider rejected the card'), { code: 'E_CARD' })
    let attempts = 0
    const c = await lifeline(t, { groupId, topics: [source], handler: () => { attempts++; throw failure } })
    const dead = new Promise<{ dlqTopic: string; attempts: number }>((resolve) => c.once('dead-letter', resolve))
    const info = await dead
    assert.equal(info.dlqTopic, `svc.${source}.dlq`)
    assert.equal(attempts, 3)

    const [dlq] = await readAll(t, info.dlqTopic, 1)
    assert.ok(dlq)
    assert.equal(dlq.partition, 2, 'same partition number as the source')
    assert.equal(dlq.key?.toString(), 'order-1')
    assert.deepEqual(dlq.value, value, 'payload byte-identical')
    assert.deepEqual(dlq.headers.slice(0, 3), headers, 'original headers first, in order, byte-identical')
    const ctx = decodeFailureHeaders(dlq.headers)!
    assert.equal(ctx.schema, '1')
    assert.equal(header(dlq, 'lifeline.schema'), '1')
    assert.equal(ctx.originTopic, source)
    assert.equal(ctx.originPartition, 2)
    assert.equal(ctx.originOffset, ack!.offset)
    assert.ok(ctx.originTimestamp! > 0)
    assert.equal(ctx.group, groupId)
    assert.equal(ctx.service, 'svc')
    assert.equal(ctx.errorClass, 'Error')
    assert.equal(ctx.errorCode, 'E_CARD')
    assert.equal(ctx.errorMessage, 'payment provider rejected the card')
    assert.match(ctx.errorStack!, /consumer\.test\.ts/)
    assert.match(ctx.errorFingerprint!, /^[0-9a-f]{16}$/)
    assert.equal(ctx.attempts, 3)
    assert.ok(ctx.firstFailureAt! <= ctx.lastFailureAt!)

    const a = admin(t)
    await waitFor(async () => (await a.groupOffsets(groupId, source)).find((p) => p.partition === 2)?.offset === ack!.offset + 1, 'the poison offset to be committed')
  })

  test('a transient failure succeeds after retries and nothing is dead-lettered', async (t) => {
    const source = await topic(t)
    await producer(t).send([{ topic: source, key: 'k', value: '{"n":1}' }])
    let calls = 0
    const seen: number[] = []
    const c = await lifeline(t, {
      topics: [source],
      handler: ({ attempt }) => {
        seen.push(attempt)
        if (++calls < 3) throw new Error('downstream timeout')
      },
    })
    let deadLettered = 0
    c.on('dead-letter', () => deadLettered++)
    const processed = await new Promise<{ attempts: number }>((resolve) => c.once('processed', resolve))
    assert.equal(processed.attempts, 3)
    assert.deepEqual(seen, [1, 2, 3])
    assert.equal(deadLettered, 0)
  })

  test('NonRetriableError and malformed JSON go to the DLQ at once; the DLQ keeps the original bytes', async (t) => {
    const source = await topic(t)
    const malformed = Buffer.from('{"orderId": "o-2", ')
    await producer(t).send([
      { topic: source, key: 'a', value: '{"kind":"invalid"}' },
      { topic: source, key: 'b', value: malformed },
      { topic: source, key: 'c', value: Buffer.from([0xc3, 0x28]) },
    ])
    let handlerCalls = 0
    const c = await lifeline(t, {
      topics: [source],
      handler: ({ value }) => {
        handlerCalls++
        if ((value as { kind?: string }).kind === 'invalid') throw new NonRetriableError('order is invalid', { code: 'E_INVALID' })
      },
    })
    const events: Array<{ offset: number; errorCode: string; attempts: number }> = []
    c.on('dead-letter', (e) => events.push(e))
    await waitFor(() => events.length === 3, 'three dead letters')
    assert.equal(handlerCalls, 1, 'undecodable records never reach the handler')
    assert.deepEqual(events.map((e) => [e.offset, e.errorCode, e.attempts]).sort(), [[0, 'E_INVALID', 1], [1, 'LL_DECODE', 1], [2, 'LL_DECODE', 1]])
    const dlq = await readAll(t, `svc.${source}.dlq`, 3)
    const byOffset = new Map(dlq.map((r) => [decodeFailureHeaders(r.headers)!.originOffset, r]))
    assert.deepEqual(byOffset.get(1)!.value, malformed)
    assert.deepEqual(byOffset.get(2)!.value, Buffer.from([0xc3, 0x28]), 'invalid UTF-8 kept byte for byte')
    assert.equal(decodeFailureHeaders(byOffset.get(1)!.headers)!.errorClass, 'DecodeError')
  })

  // librdkafka hands the binding no payload pointer for a zero-length value, so an empty value arrives
  // exactly like a null one (a tombstone): documented in the README.
  test('null value, empty value, 1 MB value and garbage header bytes each have a clear outcome', async (t) => {
    const source = await topic(t, { configs: { 'max.message.bytes': String(2 * 1024 * 1024) } })
    const big = JSON.stringify({ blob: 'x'.repeat(1024 * 1024) })
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28])
    const p = producer(t, { config: { 'message.max.bytes': 4 * 1024 * 1024 } })
    await p.send([
      { topic: source, key: 'tomb', value: null },
      { topic: source, key: 'empty', value: Buffer.alloc(0) },
      { topic: source, key: 'big', value: big },
      { topic: source, key: 'garbage', value: '{"ok":true}', headers: [{ key: '\u00ff\u0000weird', value: garbage }] },
    ])
    const got = new Map<string, { value: unknown; headers: Array<{ key: string; value: Buffer | null }> }>()
    await lifeline(t, { topics: [source], handler: (m) => void got.set(m.keyText!, { value: m.value, headers: m.headers }) })
    await waitFor(() => got.size === 4, 'four records handled')
    assert.equal(got.get('tomb')!.value, null, 'a tombstone reaches the handler as null')
    assert.equal(got.get('empty')!.value, null, 'an empty value reaches the handler as null')
    assert.equal(((got.get('big')!.value as { blob: string }).blob).length, 1024 * 1024)
    assert.deepEqual(got.get('garbage')!.headers[0]!.value, garbage, 'header bytes are passed through untouched')
  })

  test('records of one key run one at a time in offset order while keys run in parallel', async (t) => {
    const source = await topic(t, { partitions: 1 })
    const keys = 20
    const perKey = 10
    await producer(t).send(Array.from({ length: keys * perKey }, (_, i) => ({ topic: source, key: `k${i % keys}`, value: JSON.stringify({ key: `k${i % keys}`, seq: Math.floor(i / keys) }) })))
    const sequences = new Map<string, number[]>()
    const active = new Set<string>()
    let running = 0
    let maxRunning = 0
    let overlapSameKey = false
    await lifeline<{ key: string; seq: number }>(t, {
      topics: [source],
      concurrency: 8,
      handler: async ({ value }) => {
        if (active.has(value.key)) overlapSameKey = true
        active.add(value.key)
        maxRunning = Math.max(maxRunning, ++running)
        await new Promise((r) => setTimeout(r, Math.random() * 5))
        sequences.set(value.key, [...(sequences.get(value.key) ?? []), value.seq])
        running--
        active.delete(value.key)
      },
    })
    await waitFor(() => [...sequences.values()].reduce((n, s) => n + s.length, 0) === keys * perKey, 'all records handled')
    assert.equal(overlapSameKey, false)
    assert.ok(maxRunning > 1 && maxRunning <= 8, `concurrency used: ${maxRunning}`)
    for (const seqs of sequences.values()) assert.deepEqual(seqs, [...Array(perKey).keys()])
  })

  test('records coming back from a backoff never push running handlers past the concurrency limit', async (t) => {
    const source = await topic(t, { partitions: 1 })
    await producer(t).send(Array.from({ length: 24 }, (_, i) => ({ topic: source, key: `k${i}`, value: `{"i":${i}}` })))
    const failedOnce = new Set<number>()
    let running = 0
    let maxRunning = 0
    let done = 0
    await lifeline<{ i: number }>(t, {
      topics: [source],
      concurrency: 3,
      retry: { maxAttempts: 3, backoff: { type: 'fixed', ms: 1 } },
      handler: async ({ value }) => {
        maxRunning = Math.max(maxRunning, ++running)
        await new Promise((r) => setTimeout(r, 3))
        running--
        if (!failedOnce.has(value.i)) {
          failedOnce.add(value.i)
          throw new Error('transient')
        }
        done++
      },
    })
    await waitFor(() => done === 24, 'every record to succeed on its second attempt')
    assert.ok(maxRunning <= 3, `ran ${maxRunning} handlers at once with concurrency 3`)
  })

  test('a failing DLQ write pauses the partition, commits nothing past the record, and recovers', async (t) => {
    const source = await topic(t, { partitions: 1 })
    const groupId = randomName('dlqdown')
    const dlqTopic = `svc.${source}.dlq`
    const c = await lifeline(t, {
      groupId,
      topics: [source],
      kafkaConfig: { 'delivery.timeout.ms': 1500, 'topic.metadata.refresh.interval.ms': 500 },
      handler: ({ value }) => {
        if ((value as { poison?: boolean }).poison) throw new NonRetriableError('poison')
      },
    })
    const a = admin(t)
    await a.deleteTopics([dlqTopic])
    await waitFor(async () => !(await a.listTopics()).includes(dlqTopic), 'the DLQ topic to be gone')
    const errors: unknown[] = []
    c.on('error', (e) => errors.push(e))
    const p = producer(t)
    await p.send([{ topic: source, key: 'a', value: '{"n":0}' }, { topic: source, key: 'b', value: '{"poison":true}' }, { topic: source, key: 'c', value: '{"n":2}' }])
    await waitFor(() => errors.some((e) => isLifelineError(e, 'LL_DEAD_LETTER')), 'a failed dead-letter write')
    assert.ok(c.stats().paused.length === 1, 'the partition is paused while the DLQ is unreachable')
    // Offset 1 (the poison record) is unfinished: nothing at or past it may be committed.
    const committedWhileDown = (await a.groupOffsets(groupId, source))[0]?.offset ?? -1
    assert.ok(committedWhileDown <= 1, `committed ${committedWhileDown} while the DLQ was down`)

    await a.createTopics([{ topic: dlqTopic, partitions: 1 }])
    await waitFor(async () => (await a.groupOffsets(groupId, source))[0]?.offset === 3, 'every offset committed after recovery', 60_000)
    const dlq = await readAll(t, dlqTopic, 1)
    assert.equal(decodeFailureHeaders(dlq[0]!.headers)!.originOffset, 1)
    assert.equal(c.stats().paused.length, 0)
  })

  test('Spring Kafka kafka_dlt-* headers are written in Spring\'s binary encodings on request', async (t) => {
    const source = await topic(t, { partitions: 2 })
    const [ack] = await producer(t).send([{ topic: source, key: 'x', value: '{}', partition: 1 }])
    const c = await lifeline(t, { topics: [source], deadLetter: { springHeaders: true }, handler: () => { throw new NonRetriableError('no') } })
    await new Promise((resolve) => c.once('dead-letter', resolve))
    const [dlq] = await readAll(t, `svc.${source}.dlq`, 1)
    const offsetHeader = dlq!.headers.find((h) => h.key === 'kafka_dlt-original-offset')!.value!
    assert.equal(offsetHeader.length, 8)
    assert.equal(offsetHeader.readBigInt64BE(0), BigInt(ack!.offset))
    assert.equal(dlq!.headers.find((h) => h.key === 'kafka_dlt-original-partition')!.value!.readInt32BE(0), 1)
    const spring = decodeSpringHeaders(dlq!.headers)!
    assert.equal(spring.originalTopic, source)
    assert.equal(spring.exceptionFqcn, 'NonRetriableError')
  })

  test('close() drains in-flight handlers, then commits what they finished', async (t) => {
    const source = await topic(t, { partitions: 1 })
    const groupId = randomName('drain')
    await producer(t).send(Array.from({ length: 5 }, (_, i) => ({ topic: source, key: `k${i}`, value: `{"i":${i}}` })))
    const finished: number[] = []
    let started = 0
    const c = createConsumer({
      brokers: brokers(), groupId, service: 'svc', topics: [source], commitIntervalMs: 60_000,
      handler: async ({ value, signal }) => {
        started++
        await new Promise((r) => setTimeout(r, 300))
        assert.equal(signal.aborted, false)
        finished.push((value as { i: number }).i)
      },
    })
    await c.start()
    await waitFor(() => started === 5, 'all five handlers to start')
    await c.close()
    assert.equal(finished.length, 5, 'close() waited for every in-flight handler')
    assert.deepEqual(await admin(t).groupOffsets(groupId, source), [{ partition: 0, offset: 5 }])
    assert.equal(c.close(), c.close(), 'a second close() returns the same promise')
  })

  test('at-most-once commits a record before its handler runs', async (t) => {
    const source = await topic(t, { partitions: 1 })
    const groupId = randomName('amo')
    await producer(t).send([{ topic: source, key: 'k', value: '{}' }])
    const a = admin(t)
    let committedBefore: number | undefined
    let done = false
    await lifeline(t, {
      groupId, topics: [source], delivery: 'at-most-once',
      handler: async () => {
        committedBefore = (await a.groupOffsets(groupId, source))[0]?.offset
        done = true
      },
    })
    await waitFor(() => done, 'the handler')
    assert.equal(committedBefore, 1)
  })

  test('backpressure pauses a partition and resumes it as records drain', async (t) => {
    const source = await topic(t, { partitions: 1 })
    await producer(t).send(Array.from({ length: 60 }, (_, i) => ({ topic: source, key: 'one-key', value: `{"i":${i}}` })))
    let handled = 0
    const reasons: string[] = []
    const c = createConsumer({
      brokers: brokers(), groupId: randomName('bp'), service: 'svc', topics: [source], maxBufferedPerPartition: 10,
      handler: async () => {
        await new Promise((r) => setTimeout(r, 5))
        handled++
      },
    })
    c.on('paused', (_p, reason) => reasons.push(reason))
    defer(t, () => c.close())
    await c.start()
    await waitFor(() => handled === 60, 'all records handled')
    assert.ok(reasons.includes('backpressure'))
    assert.equal(c.stats().paused.length, 0)
  })

  test('records waiting in backoff count toward backpressure: many failing keys pause the partition', async (t) => {
    const source = await topic(t, { partitions: 1 })
    await producer(t).send(Array.from({ length: 30 }, (_, i) => ({ topic: source, key: `k${i}`, value: `{"i":${i}}` })))
    const failedOnce = new Set<number>()
    const reasons: string[] = []
    let done = 0
    const c = createConsumer<{ i: number }>({
      brokers: brokers(), groupId: randomName('inflight'), service: 'svc', topics: [source], maxBufferedPerPartition: 10,
      retry: { maxAttempts: 3, backoff: { type: 'fixed', ms: 400 } },
      handler: ({ value }) => {
        if (!failedOnce.has(value.i)) {
          failedOnce.add(value.i)
          throw new Error('transient')
        }
        done++
      },
    })
    c.on('paused', (_p, reason) => reasons.push(reason))
    defer(t, () => c.close())
    await c.start()
    await waitFor(() => done === 30, 'all records to succeed after one retry')
    // Every record started at once (concurrency 32), so nothing was queued: only in-flight records paused it.
    assert.ok(reasons.includes('backpressure'), `pause reasons: ${reasons.join(', ')}`)
    await waitFor(() => c.stats().paused.length === 0, 'the partition to resume')
  })

  test('metrics land in the registry the user passes', async (t) => {
    const source = await topic(t)
    const registry = new Registry()
    await producer(t).send([{ topic: source, key: 'a', value: '{}' }, { topic: source, key: 'b', value: 'not json' }])
    const c = await lifeline(t, { topics: [source], metrics: { registry }, handler: () => undefined })
    await waitFor(async () => (await registry.getSingleMetricAsString('lifeline_records_dead_lettered_total')).includes('LL_DECODE'), 'the dead-letter counter')
    const text = await registry.metrics()
    assert.match(text, /lifeline_records_processed_total\{group="[^"]+",topic="[^"]+"\} 1/)
    assert.match(text, /lifeline_handler_duration_seconds_bucket/)
    assert.match(text, /lifeline_records_in_flight\{group=/)
    void c
  })

  test('a throwing event listener never disturbs processing', async (t) => {
    const source = await topic(t, { partitions: 1 })
    await producer(t).send([{ topic: source, key: 'ok', value: '{}' }, { topic: source, key: 'bad', value: '{"bad":true}' }])
    let calls = 0
    const c = await lifeline(t, {
      topics: [source],
      handler: ({ value }) => {
        calls++
        if ((value as { bad?: boolean }).bad) throw new NonRetriableError('bad')
      },
    })
    let deadLetters = 0
    c.on('processed', () => { throw new Error('listener bug') })
    c.on('dead-letter', () => {
      deadLetters++
      throw new Error('listener bug')
    })
    await waitFor(() => deadLetters === 1 && calls === 2, 'both records handled')
    await c.commit()
    assert.equal(calls, 2, 'a throwing processed listener does not re-run the handler')
    assert.equal((await readAll(t, `svc.${source}.dlq`, 2, 3000)).length, 1, 'a throwing dead-letter listener does not duplicate the DLQ record')
  })

  test('close() racing start() waits for it and leaves nothing running', async (t) => {
    const source = await topic(t)
    const c = createConsumer({ brokers: brokers(), groupId: randomName('race'), service: 'svc', topics: [source], handler: () => undefined })
    const started = c.start()
    const closed = c.close()
    await started
    await closed
    assert.deepEqual(c.stats().assigned, [])
    await assert.rejects(c.start(), (err: unknown) => isLifelineError(err, 'LL_CONSUMER_STATE'))
  })

  test('with provisioning off, start() refuses a missing DLQ topic', async (t) => {
    const source = await topic(t)
    const c = createConsumer({ brokers: brokers(), groupId: randomName('noprov'), service: randomName('svc'), topics: [source], deadLetter: { provision: false }, handler: () => undefined })
    defer(t, () => c.close())
    await assert.rejects(c.start(), (err: unknown) => isLifelineError(err, 'LL_TOPIC_INVALID'))
  })

  test("a masking policy with key: 'encrypt' masks the DLQ record's key (deterministically) and its value field; the processor's keyring restores both", async (t) => {
    const source = await topic(t, { partitions: 1 })
    const keyring = { currentKeyId: 'k1', keys: { k1: randomBytes(32) } }
    const policies = [{ topics: [source], rules: [{ path: '$.email', action: 'encrypt' as const }], key: 'encrypt' as const }]
    await lifeline(t, { topics: [source], masking: { policies, keyring }, handler: () => { throw new NonRetriableError('rejected') } })
    const key = 'alice@example.com'
    await producer(t).send([{ topic: source, key, value: JSON.stringify({ email: key, n: 1 }) }, { topic: source, key, value: JSON.stringify({ email: key, n: 2 }) }])
    const dead = await readAll(t, `svc.${source}.dlq`, 2)
    const keys = dead.map((r) => r.key!.toString())
    assert.ok(keys.every((k) => !k.includes('alice')), `no clear key in the DLQ: ${keys.join(', ')}`)
    assert.equal(keys[0], keys[1], 'equal keys give equal tokens (grouping and per-key order keep working)')
    assert.ok(dead.every((r) => !r.value!.toString().includes('alice')), 'no clear value field in the DLQ')
    const masker = new Masker(policies, keyring)
    assert.equal(masker.unmaskKey(dead[0]!.key!, source)!.toString(), key)
    assert.equal(JSON.parse(masker.unmaskValue(dead[1]!.value!, source)!.toString()).email, key)
  })

  test('invalid options fail at construction naming the option path', () => {
    assert.throws(
      () => createConsumer({ brokers: [], groupId: 'g', service: 's', topics: ['t'], handler: () => undefined, retry: { maxAttempts: 0 } }),
      (err: unknown) => isLifelineError(err, 'LL_OPTIONS_INVALID') && /consumer\.brokers/.test((err as Error).message) && /consumer\.retry\.maxAttempts/.test((err as Error).message),
    )
    assert.throws(() => createConsumer({ brokers: ['b:1'], groupId: 'g', service: 's', topics: ['t'], handler: 'nope' as never }), /consumer\.handler: must be a function/)
    // A misspelt backoff type is refused, not silently replaced by the default.
    assert.throws(() => createConsumer({ brokers: ['b:1'], groupId: 'g', service: 's', topics: ['t'], handler: () => undefined, retry: { backoff: { type: 'expo' } as never } }), /consumer\.retry\.backoff/)
    assert.throws(() => createConsumer({ brokers: ['b:1'], groupId: 'g', service: 's', topics: ['t'], handler: () => undefined, retry: { databaseOutage: 'skip' as never } }), /consumer\.retry\.databaseOutage/)
  })
})

describe('fingerprints', () => {
  test('the same error thrown on different runtime call paths has one fingerprint', async (t) => {
    const source = await topic(t, { partitions: 1 })
    await producer(t).send(Array.from({ length: 6 }, (_, i) => ({ topic: source, key: `k${i}`, value: '{}' })))
    const c = await lifeline(t, { topics: [source], concurrency: 2, handler: () => { throw new NonRetriableError('always', { code: 'E_SAME' }) } })
    let n = 0
    c.on('dead-letter', () => n++)
    await waitFor(() => n === 6, 'six dead letters')
    const dlq = await readAll(t, `svc.${source}.dlq`, 6)
    const prints = new Set(dlq.map((r) => decodeFailureHeaders(r.headers)!.errorFingerprint))
    assert.equal(prints.size, 1, `fingerprints: ${[...prints].join(', ')}`)
  })
})
