/**
 * Tracing (issue 16): the W3C header codec, and — with an in-memory span exporter registered as the SDK —
 * the trace of one event that fails in place, goes through a retry tier, is dead-lettered, is redriven by
 * an operator and succeeds: every span present, in one trace or linked, with the messaging attributes.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { pino } from 'pino'
import { context, SpanKind, trace, TraceFlags } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { listRecords } from '../../src/dlq/records.js'
import { replayRecord } from '../../src/dlq/redrive/replay.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { spanContextFrom, startSendSpan, tracingActive, withTraceHeaders } from '../../src/trace/tracing.js'
import { stateDatabase } from '../helpers/db.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'

test('the W3C codec: a traceparent round-trips, the last header wins, garbage and all-zero ids are ignored', () => {
  const headers = [{ key: 'traceparent', value: Buffer.from('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01') }, { key: 'tracestate', value: Buffer.from('rojo=00f067aa0ba902b7') }]
  const sc = spanContextFrom(headers)!
  assert.deepEqual([sc.traceId, sc.spanId, sc.traceFlags, sc.isRemote], ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', TraceFlags.SAMPLED, true])
  assert.equal(sc.traceState?.serialize(), 'rojo=00f067aa0ba902b7')
  const later = spanContextFrom([...headers, { key: 'traceparent', value: Buffer.from('00-11111111111111111111111111111111-2222222222222222-00') }])!
  assert.equal(later.traceId, '11111111111111111111111111111111')
  assert.equal(later.traceFlags, TraceFlags.NONE)
  for (const bad of ['', 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01']) {
    assert.equal(spanContextFrom([{ key: 'traceparent', value: Buffer.from(bad) }]), undefined, bad)
  }
  assert.equal(spanContextFrom([{ key: 'traceparent', value: null }]), undefined)
})

test('without an SDK nothing is traced; with one, a record is traced from its produce to its final success through a tier, the DLQ and a redrive', { timeout: 180_000 }, async (t) => {
  assert.equal(tracingActive(), false, 'no SDK registered yet: the runtime makes no span')
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  trace.setGlobalTracerProvider(provider)
  // What an SDK (NodeSDK) registers: the handler's active span is its attempt's process span.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  defer(t, () => provider.shutdown())
  assert.equal(tracingActive(), true)

  const source = await topic(t, { partitions: 1 })
  const db = await stateDatabase(t)
  const groupId = randomName('traced')
  let fixed = false
  const seen: Array<{ attempt: number; traceId: string | undefined }> = []
  const logged: Array<{ msg?: string; traceId?: string }> = []
  await lifeline<{ id: string }>(t, {
    groupId, topics: [source], state: db, parking: { pollMs: 50 },
    logger: pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
    retry: { maxAttempts: 1, backoff: { type: 'fixed', ms: 1 } },
    retryTopics: { delaysMs: [100] },
    handler: (m) => {
      seen.push({ attempt: m.attempt, traceId: trace.getSpan(context.active())?.spanContext().traceId })
      if (!fixed) throw new Error('downstream said no')
    },
  })
  // The producer's span: its context goes on the record.
  const produce = startSendSpan({ topic: source, partition: 0, key: Buffer.from('K') })
  await producer(t).send([{ topic: source, partition: 0, key: 'K', value: JSON.stringify({ id: 'e' }), headers: withTraceHeaders([], produce) }])
  produce.end()
  const origin = produce.spanContext().traceId

  // Attempt 1 (main path) and attempt 2 (tier 1) fail; the record is dead-lettered.
  await waitFor(async () => (await createParkedKeys(db).list({ group: groupId })).some((k) => k.headLocation === 'dlq' && k.headState === 'placed'), 'the head in the DLQ')
  const indexer = createDlqIndexer({ brokers: brokers(), db, topics: [`svc.${source}.dlq`], groupId: randomName('indexer') })
  defer(t, () => indexer.close())
  await indexer.start()
  let id: string | undefined
  await waitFor(async () => (id = (await listRecords(db, {}))[0]?.id) !== undefined, 'the dead letter indexed')
  fixed = true
  const p = producer(t)
  await replayRecord({ db, producer: p, kafka: { brokers: brokers() }, parkedKeys: createParkedKeys(db) }, id!, { actor: 'operator' })
  await waitFor(() => seen.length === 3, 'the redriven record handled')

  const spans = exporter.getFinishedSpans()
  const named = (name: string) => spans.filter((s) => s.name === name)
  const started = (s: ReadableSpan) => s.startTime[0] * 1e9 + s.startTime[1]
  const processes = named(`process ${source}`).sort((a, b) => started(a) - started(b))
  const tierSend = named(`send svc.${source}.retry.1`)
  const dlqSend = named(`send svc.${source}.dlq`)
  const redriveSend = named(`send ${source}`).filter((s) => s.spanContext().spanId !== produce.spanContext().spanId)
  assert.equal(processes.length, 3, `three process spans: ${spans.map((s) => s.name).join(', ')}`)
  assert.equal(tierSend.length, 1)
  assert.equal(dlqSend.length, 1)
  assert.equal(redriveSend.length, 1, 'the redrive is a send span too')

  const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId
  // One trace from the produce to the dead letter: produce → process#1 → send tier → process#2 → send dlq.
  for (const s of [processes[0]!, tierSend[0]!, processes[1]!, dlqSend[0]!]) assert.equal(s.spanContext().traceId, origin, `${s.name} in the producer's trace`)
  assert.equal(parentOf(processes[0]!), produce.spanContext().spanId)
  assert.equal(parentOf(tierSend[0]!), processes[0]!.spanContext().spanId)
  assert.equal(parentOf(processes[1]!), tierSend[0]!.spanContext().spanId)
  assert.equal(parentOf(dlqSend[0]!), processes[1]!.spanContext().spanId)
  // The operator's redrive starts a new trace linked to the dead letter's; the final success continues it.
  const redrive = redriveSend[0]!
  assert.notEqual(redrive.spanContext().traceId, origin)
  assert.deepEqual(redrive.links.map((l) => l.context.spanId), [dlqSend[0]!.spanContext().spanId])
  assert.equal(parentOf(processes[2]!), redrive.spanContext().spanId)
  assert.equal(seen[2]!.traceId, redrive.spanContext().traceId, "the handler's active span is the process span")

  // The messaging conventions.
  const p1 = processes[0]!
  assert.equal(p1.kind, SpanKind.CONSUMER)
  assert.deepEqual(
    { system: p1.attributes['messaging.system'], op: p1.attributes['messaging.operation.type'], dest: p1.attributes['messaging.destination.name'], partition: p1.attributes['messaging.destination.partition.id'], offset: p1.attributes['messaging.kafka.offset'], key: p1.attributes['messaging.kafka.message.key'], group: p1.attributes['messaging.consumer.group.name'] },
    { system: 'kafka', op: 'process', dest: source, partition: '0', offset: 0, key: 'K', group: groupId },
  )
  assert.equal(p1.status.code, 2, 'a failed attempt is an error span')
  assert.equal(processes[2]!.status.code, 0)
  assert.equal(tierSend[0]!.kind, SpanKind.PRODUCER)
  assert.equal(tierSend[0]!.attributes['messaging.operation.type'], 'send')
  assert.equal(dlqSend[0]!.attributes['lifeline.copy'], 'dlq')
  // Log lines about the record carry its trace id.
  assert.deepEqual(logged.filter((l) => l.msg === 'record moved to a retry tier').map((l) => l.traceId), [origin])
  assert.deepEqual(logged.filter((l) => l.msg === 'record dead-lettered').map((l) => l.traceId), [origin])
})

test("tracing: false makes no span even with an SDK registered; the default consumer beside it does (the tracer is looked up again for a new provider)", { timeout: 120_000 }, async (t) => {
  trace.disable()
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  trace.setGlobalTracerProvider(provider)
  defer(t, () => provider.shutdown())
  const source = await topic(t, { partitions: 1 })
  const quiet = randomName('untraced')
  const traced = randomName('traced')
  const handled: string[] = []
  await lifeline(t, { groupId: quiet, topics: [source], tracing: false, handler: () => void handled.push(quiet) })
  await lifeline(t, { groupId: traced, topics: [source], handler: () => void handled.push(traced) })
  await producer(t).send([{ topic: source, key: 'K', value: JSON.stringify({ id: 'e' }) }])
  await waitFor(() => handled.includes(quiet) && handled.includes(traced), 'both consumers handled the record')
  const groups = exporter.getFinishedSpans().filter((s) => s.name === `process ${source}`).map((s) => s.attributes['messaging.consumer.group.name'])
  assert.deepEqual(groups, [traced], 'one process span, of the consumer with tracing on')
})
