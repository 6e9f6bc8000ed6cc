import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { isLifelineError } from '../../src/errors.js'
import { serveMetrics } from '../../src/observe/serve-metrics.js'
import { createConsumer } from '../../src/runtime/consumer.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url, init)
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') }
}

describe('serveMetrics against a real consumer and broker', () => {
  test('/metrics, /healthz and /readyz follow the consumer: not ready until assigned, then ready; 404 and 405 elsewhere', async (t) => {
    const source = await topic(t, { partitions: 2 })
    const groupId = randomName('observe')
    const registry = new Registry()
    const processed: number[] = []
    const c = createConsumer({ brokers: brokers(), groupId, service: 'svc', topics: [source], metrics: { registry }, commitIntervalMs: 100, handler: ({ offset }) => void processed.push(offset) })
    defer(t, () => c.close())
    const server = await serveMetrics({ consumer: c, group: groupId, registry, port: 0 })
    defer(t, () => server.close())
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const before = await get(`${server.url}/readyz`)
    assert.equal(before.status, 503, 'not ready before start')
    assert.deepEqual((JSON.parse(before.body) as { reasons: string[] }).reasons, ['no partition assigned'])
    assert.equal((await get(`${server.url}/healthz`)).status, 200, 'live while starting (within pollTimeoutMs)')
    await c.start()

    await waitFor(async () => (await get(`${server.url}/readyz`)).status === 200, '/readyz to answer 200 once partitions are assigned', 60_000)
    const ready = JSON.parse((await get(`${server.url}/readyz`)).body) as { status: string; reasons: string[]; assigned: number }
    assert.equal(ready.status, 'ok')
    assert.deepEqual(ready.reasons, [])
    assert.equal(ready.assigned, 2)
    const live = await get(`${server.url}/healthz`)
    assert.equal(live.status, 200)
    assert.match(live.type ?? '', /application\/json/)

    await producer(t).send(Array.from({ length: 5 }, (_, i) => ({ topic: source, key: `k${i}`, value: '{}' })))
    await waitFor(() => processed.length === 5, 'five records processed')
    const metrics = await get(`${server.url}/metrics`)
    assert.equal(metrics.status, 200)
    assert.equal(metrics.type, registry.contentType)
    assert.match(metrics.body, new RegExp(`lifeline_records_processed_total\\{group="${groupId}",topic="${source}"\\} 5`))
    assert.match(metrics.body, new RegExp(`lifeline_consumer_ready\\{group="${groupId}"\\} 1`))
    assert.match(metrics.body, new RegExp(`lifeline_consumer_stalled\\{group="${groupId}"\\} 0`))
    const age = Number(new RegExp(`lifeline_consumer_last_poll_age_seconds\\{group="${groupId}"\\} ([0-9.e-]+)`).exec(metrics.body)?.[1])
    assert.ok(age >= 0 && age < 30, `poll age ${age} s`)

    const headRes = await fetch(`${server.url}/readyz`, { method: 'HEAD' })
    assert.equal(headRes.status, 200)
    assert.equal(await headRes.text(), '')
    assert.equal((await get(`${server.url}/nope`)).status, 404)
    const post = await get(`${server.url}/metrics`, { method: 'POST' })
    assert.equal(post.status, 405)
  })

  test('a consumer whose handlers hang is stalled: /readyz 503 with the reason, /healthz stays 200, progress makes it ready again', async (t) => {
    const source = await topic(t)
    const groupId = randomName('observe-stall')
    const registry = new Registry()
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    defer(t, () => open())
    const c = await lifeline(t, { groupId, topics: [source], metrics: { registry }, handler: () => gate })
    const server = await serveMetrics({ consumer: c, group: groupId, registry, port: 0, stallTimeoutMs: 1500, sampleMs: 100 })
    defer(t, () => server.close())
    await waitFor(async () => (await get(`${server.url}/readyz`)).status === 200, 'ready once assigned', 60_000)

    await producer(t).send(Array.from({ length: 3 }, (_, i) => ({ topic: source, key: `k${i}`, value: '{}' })))
    await waitFor(async () => (await get(`${server.url}/readyz`)).status === 503, '/readyz to report the stall', 60_000)
    const report = JSON.parse((await get(`${server.url}/readyz`)).body) as { status: string; stalled: boolean; reasons: string[] }
    assert.equal(report.status, 'failing')
    assert.equal(report.stalled, true)
    assert.match(report.reasons[0] ?? '', /^stalled: 3 record\(s\) waiting, none finished for \d+ ms$/)
    assert.equal((await get(`${server.url}/healthz`)).status, 200, 'the poll loop is alive: no restart wanted')
    assert.match((await get(`${server.url}/metrics`)).body, new RegExp(`lifeline_consumer_stalled\\{group="${groupId}"\\} 1`))

    open()
    await waitFor(async () => (await get(`${server.url}/readyz`)).status === 200, 'ready again once the handlers finish', 60_000)
  })

  test('a closed consumer stops polling: /healthz turns 503 after pollTimeoutMs; server.close() is idempotent, leaves the consumer alone and frees the port', async (t) => {
    const source = await topic(t)
    const groupId = randomName('observe-dead')
    const registry = new Registry()
    const c = await lifeline(t, { groupId, topics: [source], metrics: { registry }, handler: () => undefined })
    const server = await serveMetrics({ consumer: c, group: groupId, registry, port: 0, pollTimeoutMs: 1000 })
    defer(t, () => server.close())
    await waitFor(async () => (await get(`${server.url}/healthz`)).status === 200 && c.stats().lastPollAt !== undefined, 'a first poll', 60_000)

    await c.close()
    await waitFor(async () => (await get(`${server.url}/healthz`)).status === 503, '/healthz to fail once polls stop', 30_000)
    const body = JSON.parse((await get(`${server.url}/healthz`)).body) as { reasons: string[]; live: boolean }
    assert.equal(body.live, false)
    assert.match(body.reasons[0] ?? '', /^no poll for \d+ ms$/)

    const first = server.close()
    assert.equal(server.close(), first, 'a second close() returns the same promise')
    await first
    await assert.rejects(fetch(`${server.url}/metrics`), 'nothing listens after close()')
    const again = await serveMetrics({ consumer: c, group: groupId, registry, port: server.port })
    await again.close()
  })

  test('a taken port is LL_LISTEN, bad options LL_OPTIONS_INVALID', async (t) => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    defer(t, () => new Promise<void>((resolve) => blocker.close(() => resolve())))
    const port = (blocker.address() as { port: number }).port
    const source = await topic(t)
    const groupId = randomName('observe-port')
    const registry = new Registry()
    const c = await lifeline(t, { groupId, topics: [source], handler: () => undefined })
    await assert.rejects(serveMetrics({ consumer: c, group: groupId, registry, port }), (e) => isLifelineError(e) && e.code === 'LL_LISTEN' && e.message.includes(String(port)))
    await assert.rejects(serveMetrics({ consumer: c, group: groupId, registry, port: 70000 }), (e) => isLifelineError(e) && e.code === 'LL_OPTIONS_INVALID' && /serveMetrics\.port/.test(e.message))
    await assert.rejects(serveMetrics({ consumer: c, group: groupId, registry: {} as Registry }), (e) => isLifelineError(e) && /serveMetrics\.registry/.test(e.message))
  })
})
