/**
 * The webhook notifier against a real local HTTP receiver: payloads, dedup, rate limit, retries with
 * backoff, close(). The pure parts (dedup window, token bucket, delays, Slack escaping, the rate window)
 * are tested on their own first.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { isLifelineError } from '../../src/errors.js'
import { createDlqMetrics } from '../../src/dlq/metrics.js'
import { approvalRequested, deadLetterRate, jobPaused, newErrorGroup, slackEscape, toJson, toSlack, truncate, type Notification } from '../../src/dlq/notification.js'
import { createNotifier, Deduper, parseRetryAfter, retryDelay, TokenBucket } from '../../src/dlq/notifier.js'
import { RateWindow } from '../../src/dlq/watch.js'
import { waitFor } from '../helpers/kafka.js'
import { webhookReceiver } from '../helpers/webhook.js'

const at = new Date('2026-03-01T12:00:00Z')
const group = (fp: string, message = 'tax service down'): Notification =>
  newErrorGroup({ fingerprint: fp, errorClass: 'TaxError', errorCode: 'E_TAX', message, topic: 'orders', dlqTopic: 'billing.orders.dlq', group: 'billing', records: 2, firstRecordId: '7', at })

describe('notifier: pure parts', () => {
  test('Deduper accepts a key once per window', () => {
    const d = new Deduper(1000)
    assert.equal(d.accept('a', 0), true)
    assert.equal(d.accept('a', 999), false)
    assert.equal(d.accept('b', 999), true)
    assert.equal(d.accept('a', 1000), true, 'the window has passed')
    assert.equal(d.accept('a', 1500), false)
  })

  test('TokenBucket: max at once, then refills at max per perMs', () => {
    const b = new TokenBucket(2, 1000, 0)
    assert.equal(b.take(0), true)
    assert.equal(b.take(0), true)
    assert.equal(b.take(0), false)
    assert.equal(b.take(499), false)
    assert.equal(b.take(500), true, 'one token back after half the period')
    assert.equal(b.take(10_000), true)
    assert.equal(b.take(10_000), true)
    assert.equal(b.take(10_000), false, 'never more than max')
  })

  test('retryDelay: full jitter below the doubling cap; Retry-After wins, capped at maxMs', () => {
    const r = { baseMs: 1000, maxMs: 30_000 }
    assert.equal(retryDelay(1, r, 0.999), 999)
    assert.equal(retryDelay(3, r, 0.5), 2000)
    assert.equal(retryDelay(10, r, 0.999999), 29_999)
    assert.equal(retryDelay(1, r, 0), 0)
    assert.equal(retryDelay(1, r, 0.5, 5000), 5000)
    assert.equal(retryDelay(1, r, 0.5, 120_000), 30_000)
    assert.equal(parseRetryAfter('7', 0), 7000)
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000)
    assert.equal(parseRetryAfter('soon', 0), undefined)
    assert.equal(parseRetryAfter(null, 0), undefined)
  })

  test('RateWindow sums the passes inside the window, by topic', () => {
    const w = new RateWindow(1000)
    w.add(0, new Map([['a', 2]]))
    w.add(500, new Map([['a', 1], ['b', 5]]))
    assert.deepEqual(w.count(900), { total: 8, topics: [{ topic: 'b', count: 5 }, { topic: 'a', count: 3 }] })
    assert.deepEqual(w.count(1000), { total: 6, topics: [{ topic: 'b', count: 5 }, { topic: 'a', count: 1 }] }, 'the first pass left the window')
    assert.equal(w.count(2000).total, 0)
  })

  test('Slack payloads escape &, < and > so a message cannot mention a channel or forge a link', () => {
    assert.equal(slackEscape('<!channel> & <http://x|y>'), '&lt;!channel&gt; &amp; &lt;http://x|y&gt;')
    const s = toSlack(group('fp1', 'boom <!channel>'), 3)
    assert.doesNotMatch(s.text, /<!channel>/)
    assert.match(s.text, /&lt;!channel&gt;/)
    assert.match(s.text, /^:warning: \*New error group in orders: TaxError \(E_TAX\)\*/)
    assert.match(JSON.stringify(s.blocks), /3 notification\(s\) suppressed/)
  })

  test('the JSON payload: kind, severity, title, data, message, dedupKey, suppressed; messages truncated', () => {
    const n = group('fp1', 'x'.repeat(1000))
    const j = toJson(n, 0)
    assert.equal(j.kind, 'new-error-group')
    assert.equal(j.version, 1)
    assert.equal(j.dedupKey, 'new-error-group:fp1')
    assert.deepEqual(j.data, { fingerprint: 'fp1', errorClass: 'TaxError', errorCode: 'E_TAX', topic: 'orders', dlqTopic: 'billing.orders.dlq', records: 2, firstRecordId: '7', group: 'billing' })
    assert.equal((j.message as string).length, 300)
    assert.equal(truncate('abc', 300), 'abc')
    assert.equal(deadLetterRate({ count: 12, threshold: 10, windowMs: 300_000, topics: [{ topic: 'orders', count: 12 }], at }).title, '12 dead letters in the last 5 min (threshold 10)')
    const paused = jobPaused({ jobId: '4', pause: 1, reason: 'canary: 2 of 5 failed', done: 5, total: 100, requestedBy: 'alice', at, publicUrl: 'https://dlq.example.com/' })
    assert.equal(paused.link, 'https://dlq.example.com/v1/jobs/4')
    assert.equal(paused.dedupKey, 'job-paused:4:1')
    assert.deepEqual(approvalRequested({ approvalId: '9', action: 'redrive', requestedBy: 'bob', target: 'job 4', count: 2000, at }).fields, { approval: '9', action: 'redrive', requestedBy: 'bob', target: 'job 4', records: 2000 })
  })
})

describe('notifier against a real HTTP receiver', () => {
  test('JSON and Slack webhooks each get the message; kinds filter; counted in the registry', async (t) => {
    const json = await webhookReceiver(t)
    const slack = await webhookReceiver(t)
    const registry = new Registry()
    const n = createNotifier({ webhooks: [{ url: `${json.url}/hook`, headers: { authorization: 'Bearer s3cret' } }, { url: slack.url, format: 'slack', kinds: ['new-error-group'] }], metrics: createDlqMetrics(registry) })
    t.after(() => n.close())
    n.notify(group('fp1'))
    n.notify(approvalRequested({ approvalId: '1', action: 'discard', requestedBy: 'bob', target: 'record 3', count: null, at }))
    await waitFor(() => json.received.length === 2 && slack.received.length === 1, 'two JSON messages and one Slack message')
    assert.equal(json.received[0]!.path, '/hook')
    assert.equal(json.received[0]!.headers.authorization, 'Bearer s3cret')
    assert.equal(json.received[0]!.headers['content-type'], 'application/json')
    assert.deepEqual(json.received.map((r) => r.body.kind).sort(), ['approval-requested', 'new-error-group'])
    assert.equal(typeof slack.received[0]!.body.text, 'string')
    assert.ok(Array.isArray(slack.received[0]!.body.blocks))
    await waitFor(() => n.stats().pending === 0, 'deliveries done')
    assert.deepEqual({ ...n.stats() }, { accepted: 2, sent: 3, failed: 0, duplicates: 0, rateLimited: 0, dropped: 0, pending: 0 })
    const text = await registry.metrics()
    assert.match(text, /lifeline_dlq_notifications_total\{kind="new-error-group",outcome="sent"\} 2/)
    assert.match(text, /lifeline_dlq_notifications_total\{kind="approval-requested",outcome="sent"\} 1/)
    assert.match(text, /lifeline_dlq_notifications_total\{kind="job-paused",outcome="failed"\} 0/, 'every series exists at 0')
  })

  test('one message per dedup key inside the window, another after it', async (t) => {
    const r = await webhookReceiver(t)
    const n = createNotifier({ webhooks: [{ url: r.url }], dedupWindowMs: 1500 })
    t.after(() => n.close())
    const first = Date.now()
    n.notify(group('fp1'))
    n.notify(group('fp1'))
    n.notify(group('fp2'))
    n.notify(group('fp1'))
    await waitFor(() => r.received.length === 2, 'one message per group')
    assert.equal(n.stats().duplicates, 2)
    assert.deepEqual(r.received.map((x) => (x.body.data as { fingerprint: string }).fingerprint).sort(), ['fp1', 'fp2'])
    await waitFor(() => Date.now() - first > 1600, 'the window to pass')
    n.notify(group('fp1'))
    await waitFor(() => r.received.length === 3, 'fp1 again after the window')
    assert.equal(r.received.length, 3)
  })

  test('a 500 is retried with backoff until accepted; a 400 is not retried; Retry-After is honoured', async (t) => {
    const r = await webhookReceiver(t)
    const n = createNotifier({ webhooks: [{ url: r.url }], retry: { attempts: 4, baseMs: 50, maxMs: 2000 } })
    t.after(() => n.close())
    r.failNext(500, 503)
    n.notify(group('fp1'))
    await waitFor(() => r.received.length === 3 && n.stats().pending === 0, 'two failures then success')
    assert.deepEqual(r.received.map((x) => x.status), [500, 503, 200])
    assert.equal(r.received[0]!.text, r.received[2]!.text, 'the same payload is sent again')
    assert.equal(n.stats().sent, 1)

    r.failNext(400)
    n.notify(group('fp2'))
    await waitFor(() => n.stats().failed === 1, 'a 400 fails at once')
    assert.equal(r.received.length, 4)

    r.failHeaders['retry-after'] = '1'
    r.failNext(429)
    const before = Date.now()
    n.notify(group('fp3'))
    await waitFor(() => n.stats().sent === 2, 'sent after the Retry-After wait')
    const [limited, ok] = r.received.slice(-2)
    assert.equal(limited!.status, 429)
    assert.ok(ok!.at - limited!.at >= 950, `waited ${ok!.at - limited!.at} ms for Retry-After: 1`)
    assert.ok(Date.now() - before < 20_000)
  })

  test('attempts run out: the notification is counted failed, nothing else is blocked', async (t) => {
    const r = await webhookReceiver(t)
    const n = createNotifier({ webhooks: [{ url: r.url }], retry: { attempts: 2, baseMs: 10, maxMs: 20 } })
    t.after(() => n.close())
    r.failNext(500, 500)
    n.notify(group('fp1'))
    n.notify(group('fp2'))
    await waitFor(() => n.stats().failed === 1 && n.stats().sent === 1, 'fp1 failed, fp2 sent')
    assert.deepEqual(r.received.map((x) => x.status), [500, 500, 200])
  })

  test('rate limit per webhook: over it notifications are suppressed, and the next message says how many', async (t) => {
    const r = await webhookReceiver(t)
    const n = createNotifier({ webhooks: [{ url: r.url }], rateLimit: { max: 2, perMs: 1000 } })
    t.after(() => n.close())
    for (const fp of ['a', 'b', 'c', 'd']) n.notify(group(fp))
    await waitFor(() => r.received.length === 2, 'two messages')
    assert.equal(n.stats().rateLimited, 2)
    await new Promise((resolve) => setTimeout(resolve, 600))
    n.notify(group('e'))
    await waitFor(() => r.received.length === 3, 'one more once a token is back')
    // a went out before c and d were suppressed; b after: b reports them, and they are reported once.
    assert.deepEqual(r.received.map((x) => x.body.suppressed), [0, 2, 0])
  })

  test('notify() never waits: a webhook that does not answer blocks nothing; close() gives it closeTimeoutMs, then drops it; close() twice is one promise', async (t) => {
    const r = await webhookReceiver(t)
    r.hang(true)
    const n = createNotifier({ webhooks: [{ url: r.url }], closeTimeoutMs: 300, timeoutMs: 60_000 })
    const started = Date.now()
    for (let i = 0; i < 5; i++) n.notify(group(`fp${i}`))
    assert.ok(Date.now() - started < 50, 'notify() returned at once')
    await waitFor(() => n.stats().pending === 5, 'five queued')
    const closing = n.close()
    assert.equal(n.close(), closing)
    await closing
    assert.ok(Date.now() - started < 10_000)
    assert.equal(n.stats().dropped, 5)
    assert.equal(n.stats().pending, 0)
    n.notify(group('late'))
    assert.equal(n.stats().accepted, 5, 'nothing is accepted after close()')
  })

  test('bad options are refused with LL_OPTIONS_INVALID naming the option', () => {
    const bad = (opts: unknown, path: RegExp) => assert.throws(() => createNotifier(opts as never), (e) => isLifelineError(e) && e.code === 'LL_OPTIONS_INVALID' && path.test(e.message))
    bad({ webhooks: [] }, /notifications\.webhooks/)
    bad({ webhooks: [{ url: 'ftp://x' }] }, /notifications\.webhooks\[0\]\.url/)
    bad({ webhooks: [{ url: 'http://x', format: 'teams' }] }, /notifications\.webhooks\[0\]\.format/)
    bad({ webhooks: [{ url: 'http://x', kinds: ['everything'] }] }, /notifications\.webhooks\[0\]\.kinds\[0\]/)
    bad({ webhooks: [{ url: 'http://x' }], rateLimit: { max: 0, perMs: 1 } }, /notifications\.rateLimit\.max/)
    bad({ webhooks: [{ url: 'http://x' }], retries: 3 }, /notifications\.retries: unknown option/)
  })
})
