/**
 * `lifeline dlq serve`'s notification flags: parsing (in process) and a real `dlq serve` process that posts
 * a new-error-group notification to a local receiver and serves GET /metrics, then stops on SIGTERM.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { notificationOptions } from '../../src/cli/commands/notifications.js'
import { runCliFails } from '../helpers/cli.js'
import { tempDir } from '../helpers/db.js'
import { brokers, producer, topic, waitFor } from '../helpers/kafka.js'
import { spawnForTest } from '../helpers/process.js'
import { webhookReceiver } from '../helpers/webhook.js'

describe('dlq serve notification flags', () => {
  test('flags and the --notifications file make the processor option; nothing given is none', async (t) => {
    assert.equal(notificationOptions({}), undefined)
    assert.deepEqual(notificationOptions({ webhook: ['http://a/x'], slackWebhook: ['https://hooks.slack.com/services/T/B/C'], deadLetterRate: '50', deadLetterRateWindow: '60', dedupWindow: '600', publicUrl: 'https://dlq.example.com' }), {
      webhooks: [{ url: 'http://a/x', format: 'json' }, { url: 'https://hooks.slack.com/services/T/B/C', format: 'slack' }],
      deadLetterRate: { threshold: 50, windowMs: 60_000 },
      dedupWindowMs: 600_000,
      publicUrl: 'https://dlq.example.com',
    })
    const file = join(await tempDir(t), 'notifications.json')
    writeFileSync(file, JSON.stringify({ webhooks: [{ url: 'http://b/y', kinds: ['new-error-group'] }], deadLetterRate: { threshold: 5, windowMs: 1000 }, rateLimit: { max: 5, perMs: 60000 } }))
    assert.deepEqual(notificationOptions({ notifications: file, webhook: ['http://a/x'], deadLetterRate: '9' }), {
      webhooks: [{ url: 'http://b/y', kinds: ['new-error-group'] }, { url: 'http://a/x', format: 'json' }],
      deadLetterRate: { threshold: 9, windowMs: 1000 },
      rateLimit: { max: 5, perMs: 60000 },
    })
  })

  test('bad flags fail before anything starts, with a message naming the flag', async (t) => {
    const dir = await tempDir(t)
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, '{ nope')
    const serve = ['dlq', 'serve', '--brokers', '127.0.0.1:1', '--database', join(dir, 'db')]
    assert.match(await runCliFails([...serve, '--dead-letter-rate', '5']), /notifications need a webhook/)
    assert.match(await runCliFails([...serve, '--webhook', 'http://a', '--dead-letter-rate', 'many']), /--dead-letter-rate must be an integer/)
    assert.match(await runCliFails([...serve, '--webhook', 'http://a', '--dead-letter-rate-window', '60']), /--dead-letter-rate-window needs --dead-letter-rate/)
    assert.match(await runCliFails([...serve, '--webhook', 'http://a', '--dedup-window', '0']), /--dedup-window must be a whole number of seconds/)
    assert.match(await runCliFails([...serve, '--notifications', bad]), /--notifications: .* is not JSON/)
    assert.match(await runCliFails([...serve, '--notifications', join(dir, 'missing.json')]), /--notifications: cannot read/)
  })

  test('a real `lifeline dlq serve --webhook ... --slack-webhook ...` posts a new error group and serves /metrics; SIGTERM stops it', async (t) => {
    const json = await webhookReceiver(t)
    const slack = await webhookReceiver(t)
    const origin = await topic(t, { prefix: 'orders' })
    const dlq = await topic(t, { topic: `${origin}.dlq` })
    const dir = await tempDir(t)
    const proc = spawnForTest(t, process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dlq', 'serve', '--brokers', brokers().join(','), '--database', join(dir, 'db'), '--topics', dlq, '--port', '0', '--webhook', `${json.url}/hook`, '--slack-webhook', slack.url], {
      env: { ...process.env, LIFELINE_LOG_LEVEL: 'silent' },
    })
    const child = proc.child
    await waitFor(() => /API at http:\/\/127\.0\.0\.1:\d+/.test(proc.stdout()) || child.exitCode !== null, 'dlq serve to start', 120_000)
    assert.equal(child.exitCode, null, `dlq serve exited: ${proc.stderr()}`)
    assert.match(proc.stdout(), /metrics at \/metrics; notifying 2 webhook\(s\)/)
    const url = /API at (http:\/\/127\.0\.0\.1:\d+)/.exec(proc.stdout())![1]!

    const h = (key: string, value: string) => ({ key, value: Buffer.from(value) })
    await producer(t).send([{ topic: dlq, key: 'k1', value: '{"n":1}', headers: [h('source_topic', origin), h('source_partition', '0'), h('source_offset', '3'), h('source_consumer_group', 'karafka-app')] }])
    await waitFor(() => json.received.length === 1 && slack.received.length === 1, 'a new-error-group message on both webhooks', 120_000)
    assert.equal(json.received[0]!.body.kind, 'new-error-group')
    assert.equal(json.received[0]!.path, '/hook')
    assert.equal(typeof slack.received[0]!.body.text, 'string')

    const metrics = await (await fetch(`${url}/metrics`)).text()
    assert.match(metrics, /^lifeline_dlq_error_groups_new_total 1$/m)
    assert.match(metrics, /^lifeline_dlq_notifications_total\{kind="new-error-group",outcome="sent"\} 2$/m)
    assert.match(metrics, /^process_cpu_user_seconds_total /m, "the CLI adds prom-client's process metrics")

    child.kill('SIGTERM')
    assert.equal(await proc.exited, 0, proc.stderr())
    assert.match(proc.stdout(), /stopping\.\.\./)
  })
})
