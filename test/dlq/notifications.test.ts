/**
 * Webhook notifications end to end: real Lifeline consumers dead-letter records on the real broker, the DLQ
 * processor indexes them and posts to local HTTP receivers — one message per new error group (none for
 * repeats), a retry after a 500, the dead-letter rate, an approval request and a paused job — and no clear
 * masked field ever leaves. The processor's `GET /metrics` is checked on the way.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { createToken } from '../../src/dlq/auth.js'
import { isLifelineError } from '../../src/errors.js'
import { createDlqProcessor } from '../../src/dlq/processor.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { stateDatabase } from '../helpers/db.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'
import { webhookReceiver, type ReceivedRequest } from '../helpers/webhook.js'

const metric = (text: string, series: string): number | undefined => {
  const escaped = series.replace(/[{}"[\]().*+?^$|\\]/g, '\\$&')
  const m = new RegExp(`^${escaped} ([0-9.e+-]+)$`, 'm').exec(text)
  return m === null ? undefined : Number(m[1])
}

test('the DLQ processor notifies webhooks of new error groups (once each, retried after a 500), the dead-letter rate, an approval and a paused job; no clear masked field leaves', async (t) => {
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  const operator = (await createToken(db, { name: 'olga', role: 'operator', owner: 'olga@example.com' })).token
  const approver = (await createToken(db, { name: 'abe', role: 'approver', owner: 'abe@example.com' })).token
  const orders = await topic(t, { prefix: 'orders' })
  const payments = await topic(t, { prefix: 'payments' })
  const elsewhere = await topic(t, { prefix: 'replayed' })
  const ordersDlq = `svc.${orders}.dlq`
  const paymentsDlq = `svc.${payments}.dlq`
  const keyring = { currentKeyId: 'k1', keys: { k1: randomBytes(32) } }

  // orders: the runtime masks (encrypts the e-mail; the message quoting it is masked with it).
  const emailA = `ada.${randomBytes(3).toString('hex')}@example.com`
  await lifeline<{ kind: string; email: string }>(t, {
    topics: [orders],
    masking: { policies: [{ topics: [orders], rules: [{ path: '$.email', action: 'encrypt' }] }], keyring },
    handler: ({ value }) => {
      if (value.kind === 'card') throw new NonRetriableError(`card declined for ${value.email}`, { code: 'E_CARD' })
      throw new NonRetriableError('tax service refused the order', { code: 'E_TAX' })
    },
  })
  // payments: the runtime does not mask; the processor's policy covers the topic (the message must still leave masked).
  const emailB = `bob.${randomBytes(3).toString('hex')}@example.com`
  await lifeline<{ email: string }>(t, { topics: [payments], handler: ({ value }) => { throw new NonRetriableError(`refund failed for ${value.email}`, { code: 'E_REFUND' }) } })

  const json = await webhookReceiver(t)
  const slack = await webhookReceiver(t)
  json.failNext(500)
  const registry = new Registry()
  const processor = createDlqProcessor({
    brokers: brokers(),
    db,
    topics: [ordersDlq, paymentsDlq],
    groupId: randomName('dlq-indexer'),
    api: { port: 0 },
    jobPollMs: 100,
    indexer: { pollTimeoutMs: 100 },
    approvals: { bulkThreshold: 2 },
    masking: { policies: [{ topics: [payments], rules: [{ path: '$.email', action: 'redact' }] }] },
    metrics: { registry },
    watchMs: 200,
    notifications: {
      webhooks: [{ url: `${json.url}/lifeline` }, { url: slack.url, format: 'slack', kinds: ['new-error-group'] }],
      deadLetterRate: { threshold: 4, windowMs: 120_000 },
      retry: { baseMs: 100, maxMs: 1000 },
      publicUrl: 'https://dlq.example.com',
    },
  })
  defer(t, () => processor.close())
  await processor.start()
  const passes = async () => metric(await (await fetch(`${processor.url}/metrics`)).text(), 'lifeline_dlq_watch_passes_total{outcome="ok"}') ?? 0
  const settle = async () => {
    const from = await passes()
    await waitFor(async () => (await passes()) >= from + 2, 'two watcher passes', 60_000)
  }
  const sent = (r: { received: ReceivedRequest[] }, kind: string) => r.received.filter((x) => x.status === 200 && x.body.kind === kind)

  const p = producer(t)
  await p.send([
    { topic: orders, key: 'o1', value: JSON.stringify({ kind: 'card', email: emailA }) },
    { topic: orders, key: 'o2', value: JSON.stringify({ kind: 'card', email: emailA }) },
    { topic: orders, key: 'o3', value: JSON.stringify({ kind: 'tax', email: emailA }) },
    { topic: payments, key: 'p1', value: JSON.stringify({ email: emailB }) },
  ])
  await waitFor(() => sent(json, 'new-error-group').length === 3 && slack.received.length === 3, 'one new-error-group message per group on each webhook', 120_000)
  const retried = json.received.filter((x) => x.status === 500)
  assert.equal(retried.length, 1, 'the 500 was answered once')
  assert.ok(json.received.some((x) => x.status === 200 && x.text === retried[0]!.text), 'and the same message was sent again and accepted')
  const groups = sent(json, 'new-error-group').map((x) => x.body as { title: string; message?: string; data: { errorCode: string; records: number } })
  assert.deepEqual(groups.map((g) => g.data.errorCode).sort(), ['E_CARD', 'E_REFUND', 'E_TAX'])
  const refund = groups.find((g) => g.data.errorCode === 'E_REFUND')!
  assert.equal(refund.message, 'refund failed for [REDACTED]', "the processor's policy masks what the runtime left clear")
  assert.equal(groups.find((g) => g.data.errorCode === 'E_CARD')!.message, 'card declined for [REDACTED]', 'masked by the runtime when it wrote the DLQ record')

  // Repeats of known groups: more dead letters, no new message.
  await p.send([
    { topic: orders, key: 'o4', value: JSON.stringify({ kind: 'card', email: emailA }) },
    { topic: payments, key: 'p2', value: JSON.stringify({ email: emailB }) },
  ])
  await waitFor(async () => metric(await (await fetch(`${processor.url}/metrics`)).text(), 'lifeline_dlq_records{status="pending"}') === 6, 'six pending records indexed', 120_000)
  await settle()
  // 6 dead letters within the window, threshold 4: one rate message (dedup holds the others back).
  await waitFor(() => sent(json, 'dead-letter-rate').length === 1, 'the dead-letter rate message', 60_000)
  assert.equal(sent(json, 'new-error-group').length, 3, 'no message for repeats')
  assert.equal(slack.received.length, 3, 'the Slack webhook only takes new groups')
  const rate = sent(json, 'dead-letter-rate')[0]!.body as { data: Record<string, number | string> }
  assert.ok(Number(rate.data.deadLetters) > 4)

  // An approval request (a bulk redrive above the threshold), then a job that an operator pauses.
  const api = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${processor.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  const bulk = await api(operator, 'POST', '/v1/redrives', { filter: { dlqTopic: ordersDlq }, target: { kind: 'topic', topic: elsewhere }, ratePerSec: 1 })
  assert.equal(bulk.status, 202, JSON.stringify(bulk.body))
  await waitFor(() => sent(json, 'approval-requested').length === 1, 'the approval-requested message', 60_000)
  const approval = sent(json, 'approval-requested')[0]!.body as { data: Record<string, unknown>; link: string }
  const approvalId = (bulk.body.approval as { id: string }).id
  assert.deepEqual(approval.data, { approval: approvalId, action: 'redrive', requestedBy: 'olga', target: `job ${(bulk.body.job as { id: string }).id}`, records: 4 })
  assert.equal(approval.link, `https://dlq.example.com/v1/approvals/${approvalId}`)
  assert.equal(metric(await (await fetch(`${processor.url}/metrics`)).text(), 'lifeline_dlq_approvals_pending'), 1)

  const jobId = (bulk.body.job as { id: string }).id
  assert.equal((await api(approver, 'POST', `/v1/approvals/${approvalId}/approve`)).status, 200)
  const paused = await api(operator, 'POST', `/v1/jobs/${jobId}/pause`)
  assert.equal(paused.status, 200, JSON.stringify(paused.body))
  await waitFor(() => sent(json, 'job-paused').length === 1, 'the job-paused message', 60_000).catch(async (err: unknown) => {
    const job = await api(operator, 'GET', `/v1/jobs/${jobId}`)
    throw new Error(`${(err as Error).message}; job: ${JSON.stringify(job.body)}; received: ${JSON.stringify(json.received.map((r) => [r.status, r.body.kind, r.body.dedupKey]))}`)
  })
  assert.equal((sent(json, 'job-paused')[0]!.body as { data: { job: string } }).data.job, jobId)

  // Nothing anywhere carries a clear e-mail (the value is never sent; messages are masked).
  for (const r of [...json.received, ...slack.received]) {
    assert.ok(!r.text.includes(emailA) && !r.text.includes(emailB), `a clear e-mail left in ${r.body.kind as string}`)
  }

  const text = await (await fetch(`${processor.url}/metrics`)).text()
  assert.equal(metric(text, 'lifeline_dlq_error_groups_new_total'), 3)
  assert.equal(metric(text, 'lifeline_dlq_pending_groups'), 3)
  assert.equal(metric(text, 'lifeline_dlq_jobs{status="paused"}'), 1)
  assert.equal(metric(text, 'lifeline_dlq_notifications_total{kind="new-error-group",outcome="sent"}'), 6)
  assert.equal(metric(text, 'lifeline_dlq_notifications_total{kind="dead-letter-rate",outcome="sent"}'), 1)
  assert.ok((metric(text, 'lifeline_dlq_notifications_total{kind="dead-letter-rate",outcome="duplicate"}') ?? 0) >= 1, 'the rate held back by dedup while it stays high')
  assert.equal(metric(text, `lifeline_dlq_indexed_total{topic="${ordersDlq}",format="lifeline"}`), 4)
  assert.equal((await fetch(`${processor.url}/v1/records`)).status, 401, 'the API behind /metrics still wants a token')
})

test('the processor refuses bad notification and metrics options with LL_OPTIONS_INVALID naming the option', async (t) => {
  const db = await stateDatabase(t)
  const make = (over: Record<string, unknown>) => () => createDlqProcessor({ brokers: ['127.0.0.1:1'], db, topics: ['x.dlq'], ...over })
  const refused = (over: Record<string, unknown>, path: RegExp) => assert.throws(make(over), (e) => isLifelineError(e) && e.code === 'LL_OPTIONS_INVALID' && path.test(e.message), JSON.stringify(over))
  refused({ notifications: { webhooks: [] } }, /notifications\.webhooks/)
  refused({ notifications: { webhooks: [{ url: 'mailto:ops@example.com' }] } }, /notifications\.webhooks\[0\]\.url/)
  refused({ notifications: { webhooks: [{ url: 'http://x' }], deadLetterRate: { threshold: -1 } } }, /processor\.notifications\.deadLetterRate\.threshold/)
  refused({ notifications: { webhooks: [{ url: 'http://x' }], deadLetterRate: { threshold: 5, windowMs: 0 } } }, /processor\.notifications\.deadLetterRate\.windowMs/)
  refused({ notifications: { webhooks: [{ url: 'http://x' }], publicUrl: 'dlq.example.com' } }, /processor\.notifications\.publicUrl/)
  refused({ watchMs: 0 }, /processor\.watchMs/)
  refused({ metricsGroupsLimit: 1.5 }, /processor\.metricsGroupsLimit/)
  refused({ metrics: { registry: {} } }, /processor\.metrics\.registry/)
  // Accepted: nothing connects before start().
  await make({ notifications: { webhooks: [{ url: 'http://x' }], deadLetterRate: { threshold: 0 } }, metrics: { registry: new Registry() } })().close()
})
