/**
 * `lifeline dlq`: the token commands on a PGlite directory, and the API client commands against a real HTTP
 * server (serveDlqApi on port 0) in this process. The server's producer is a fake that acknowledges every
 * send; bulk jobs are run by the real redrive job runner.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { filterFrom, progressLine, targetOption } from '../../src/cli/commands/dlq.js'
import { createDlqApi, serveDlqApi } from '../../src/dlq/api.js'
import type { ApprovalPolicy } from '../../src/dlq/approvals.js'
import { createToken, verifyToken, type Role } from '../../src/dlq/auth.js'
import { indexRecords } from '../../src/dlq/records.js'
import { runRedriveJob, type RedriveDeps } from '../../src/dlq/redrive.js'
import type { KafkaProducer, ProduceAck, ProduceRecord } from '../../src/kafka/types.js'
import { openPglite } from '../../src/store/pglite.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { defer, freshDatabase, pgliteDataDir } from '../helpers/db.js'

/** Runs `lifeline dlq <args>` in this process; returns what it wrote to stdout and stderr. */
const dlq = (args: string[]): Promise<{ stdout: string; stderr: string }> => runCli(['dlq', ...args])

async function dlqFails(args: string[], pattern: RegExp): Promise<void> {
  await assert.rejects(dlq(args), (err: Error) => {
    assert.match(err.message, pattern)
    return true
  })
}

function fakeProducer(sent: ProduceRecord[]): KafkaProducer {
  return {
    connect: async () => undefined,
    send: async (records) => records.map((r): ProduceAck => {
      sent.push(r)
      return { topic: r.topic, partition: r.partition ?? 0, offset: sent.length - 1 }
    }),
    flush: async () => undefined,
    close: async () => undefined,
  }
}

/** A server with 6 orders records (keys k0..k5), 2 payments records, tokens per role; returns its URL and tokens. */
async function server(t: TestContext, approvals: ApprovalPolicy = {}) {
  const db = await freshDatabase(t, 'pglite')
  await migrateLifeline(db)
  await indexRecords(
    db,
    Array.from({ length: 8 }, (_, i) => ({
      record: { topic: 'orders.dlq', partition: 0, offset: i, key: Buffer.from(`k${i}`), value: Buffer.from(`{"n":${i}}`), headers: [], timestamp: Date.UTC(2025, 0, 10) },
      context: { format: 'lifeline' as const, originTopic: i < 6 ? 'orders' : 'payments', originPartition: 0, originOffset: i, consumerGroup: 'billing', errorClass: 'TaxError', errorCode: i < 6 ? 'E_TAX' : 'E_CARD', errorMessage: `failure ${i}`, fingerprint: i < 6 ? 'fp-tax' : 'fp-card', details: {} },
    })),
  )
  const tokens = {} as Record<'viewer' | 'operator' | 'approver' | 'admin', string>
  for (const role of ['viewer', 'operator', 'approver', 'admin'] as Role[]) tokens[role as keyof typeof tokens] = (await createToken(db, { name: `${role}-1`, role, owner: `${role}-owner` })).token
  const sent: ProduceRecord[] = []
  const deps: RedriveDeps = { db, producer: fakeProducer(sent) }
  const runs: Array<Promise<unknown>> = []
  const app = createDlqApi({ db, deps, approvals, onJobReady: (id) => void runs.push(runRedriveJob(deps, id).catch(() => undefined)) })
  const served = await serveDlqApi(app, { port: 0 })
  defer(t, async () => {
    await Promise.all(runs)
    await served.close()
  })
  return { url: served.url, tokens, sent, db }
}

describe('lifeline dlq', () => {
  test('pure helpers: filters, targets, the progress bar', () => {
    assert.deepEqual(filterFrom({ filter: 'topic=orders&status=pending&status=failed-again', errorCode: 'E_TAX' }), { topic: 'orders', status: ['pending', 'failed-again'], errorCode: 'E_TAX' })
    assert.deepEqual(filterFrom({ status: 'pending,replayed' }), { status: ['pending', 'replayed'] })
    assert.deepEqual(targetOption('origin'), { kind: 'origin' })
    assert.deepEqual(targetOption('topic:orders.replay:2'), { kind: 'topic', topic: 'orders.replay', partition: 2 })
    assert.deepEqual(targetOption('tier:1:billing'), { kind: 'retry-tier', tier: 1, service: 'billing' })
    assert.throws(() => targetOption('mars'), /--target must be/)
    assert.equal(progressLine({ id: 1, status: 'running', total: 200, done: 50, succeeded: 45, failed: 1, skipped: 4 }, 10), '[###.......]  25% 50/200 ok 45 failed 1 skipped 4 running')
    assert.equal(progressLine({ id: 1, status: 'completed', total: 0, done: 0, succeeded: 0, failed: 0, skipped: 0 }, 4), '[####] 100% 0/0 ok 0 failed 0 skipped 0 completed')
  })

  test('token create|list|revoke on the database', async (t) => {
    const dir = await pgliteDataDir(t)
    const { stdout } = await dlq(['token', 'create', 'alice', '--role', 'approver', '--owner', 'alice@example.com', '--expires', '90d', '--database', dir])
    const token = /^(llt_[A-Za-z0-9_-]{43})$/m.exec(stdout)?.[1]
    assert.ok(token, stdout)
    assert.match(stdout, /^token alice \(approver, owner alice@example\.com, expires \S+Z\):$/m)
    assert.match(stdout, /cannot be shown again/)
    await dlqFails(['token', 'create', 'bob', '--role', 'root', '--owner', 'bob', '--database', dir], /--role must be one of viewer, operator, approver, admin/)
    await dlqFails(['token', 'create', 'bob', '--role', 'viewer', '--database', dir], /required option '--owner <owner>' not specified/)
    await dlqFails(['token', 'create', 'bob', '--role', 'viewer', '--owner', 'bob', '--expires', 'tomorrow', '--database', dir], /expires must be a duration/)
    await dlqFails(['token', 'create', 'indexer', '--role', 'viewer', '--owner', 'bob', '--database', dir], /system actor/)
    await assert.rejects(dlq(['token', 'create', 'alice', '--role', 'viewer', '--owner', 'alice', '--database', dir]), /already exists/)
    const list = await dlq(['token', 'list', '--database', dir])
    assert.match(list.stdout, /^NAME\s+ROLE\s+OWNER\s+CREATED\s+EXPIRES\s+LAST USED\s+REVOKED\nalice\s+approver\s+alice@example\.com\s+\S+Z\s+\S+Z$/m)
    assert.ok(!list.stdout.includes(token))
    const used = await openPglite({ dataDir: dir })
    try {
      assert.equal((await verifyToken(used, token))?.owner, 'alice@example.com')
    } finally {
      await used.close()
    }
    assert.match((await dlq(['token', 'list', '--database', dir])).stdout, /^alice\s+approver\s+alice@example\.com\s+\S+Z\s+\S+Z\s+\S+Z$/m)
    assert.match((await dlq(['token', 'revoke', 'alice', '--database', dir])).stdout, /revoked alice/)
    const db = await openPglite({ dataDir: dir })
    try {
      assert.equal(await verifyToken(db, token), null)
      const { rows } = await db.query('select action, actor from lifeline_dlq_audit order by id')
      assert.deepEqual(rows.map((r) => r.action), ['token.create', 'token.revoke'])
      assert.match(String(rows[0]!.actor), /^cli:/)
    } finally {
      await db.close()
    }
  })

  test('API client: list, show, groups, replay (one and bulk with progress), discard, audit, errors', async (t) => {
    const s = await server(t)
    const as = (role: keyof typeof s.tokens) => ['--url', s.url, '--token', s.tokens[role]]

    const list = await dlq(['list', '--topic', 'orders', '--limit', '2', ...as('viewer')])
    assert.match(list.stdout, /^ID\s+TOPIC\s+KEY\s+STATUS\s+FORMAT\s+ERROR\s+MESSAGE\s+FAILED AT\n1\s+orders\s+k0\s+pending\s+lifeline\s+TaxError E_TAX\s+failure 0\s+\S+\n2\s+orders\s+k1\s/)
    assert.match(list.stdout, /more: --after 2\n$/)
    const json = JSON.parse((await dlq(['list', '--filter', 'errorCode=E_CARD', '--json', ...as('viewer')])).stdout) as { records: Array<{ keyText: string }> }
    assert.deepEqual(json.records.map((r) => r.keyText), ['k6', 'k7'])

    const show = await dlq(['show', '1', ...as('viewer')])
    assert.match(show.stdout, /^id:\s+1\nstatus:\s+pending\n/)
    assert.match(show.stdout, /^origin:\s+orders\[0\]@0$/m)
    assert.match(show.stdout, /^value:\n\{"n":0\}$/m)

    const groups = await dlq(['groups', ...as('viewer')])
    assert.match(groups.stdout, /^FINGERPRINT\s+COUNT\s+PENDING\s+ERROR\s+TOPICS\s+KEYS\s+LAST SEEN\s+MESSAGE\nfp-tax\s+6\s+6\s+TaxError E_TAX\s+orders\s+6\s/)

    assert.match((await dlq(['replay', '1', ...as('operator')])).stdout, /^replayed record 1 as [0-9a-f-]{36} to orders\[0\]@0\n$/)
    assert.equal(s.sent.length, 1)

    // Bulk: the dry run first; --yes starts the job and follows it.
    const dry = await dlq(['replay', '--topic', 'orders', '--rate', '200', ...as('operator')])
    assert.match(dry.stdout, /^dry run: 6 record\(s\) would be replayed \(orders: 6\)\nrun again with --yes to start the job\n$/)
    assert.equal(s.sent.length, 1)
    const bulk = await dlq(['replay', '--topic', 'orders', '--rate', '200', '--yes', ...as('operator')])
    assert.match(bulk.stdout, /^6 record\(s\) to replay\njob \d+ completed: 5 replayed, 0 failed, 1 skipped of 6\n$/)
    assert.match(bulk.stderr, /\[#+\] 100% 6\/6 ok 5 failed 0 skipped 1 completed\n$/)
    assert.equal(s.sent.length, 6)
    const jobs = await dlq(['jobs', ...as('viewer')])
    assert.match(jobs.stdout, /^ID\s+STATUS\s+TOTAL\s+DONE\s+OK\s+FAILED\s+SKIPPED\s+BY\s+CREATED\n\d+\s+completed\s+6\s+6\s+5\s+0\s+1\s+operator-1\s/)

    assert.match((await dlq(['discard', '7', '--reason', 'test card', ...as('operator')])).stdout, /^record 7 discarded\n$/)
    assert.match((await dlq(['resolve', '8', '--reason', 'refunded', ...as('operator')])).stdout, /^record 8 resolved\n$/)
    await dlqFails(['discard', '7', '--reason', 'again', ...as('operator')], /HTTP 409 LL_DLQ_CONFLICT/)

    const audit = await dlq(['audit', '--action', 'record.discard', ...as('approver')])
    assert.match(audit.stdout, /^ID\s+AT\s+ACTOR\s+ROLE\s+ACTION\s+TARGET\s+DETAIL\n\d+\s+\S+\s+operator-1\s+operator\s+record\.discard\s+record:7\s+\{"reason":"test card","outcome":"ok"\}\n\d+\s+\S+\s+operator-1\s+operator\s+record\.discard\s+record:7\s+.*"outcome":"failed"/)

    await dlqFails(['audit', ...as('operator')], /needs the approver role; operator-1 is operator \(HTTP 403 HTTP_FORBIDDEN\)/)
    await dlqFails(['list', '--url', s.url, '--token', 'llt_nope'], /the token is invalid or revoked \(HTTP 401 HTTP_UNAUTHORIZED\)/)
    const saved = process.env.LIFELINE_TOKEN
    delete process.env.LIFELINE_TOKEN
    try {
      await dlqFails(['list', '--url', s.url], /no API token: pass --token or set LIFELINE_TOKEN/)
    } finally {
      if (saved !== undefined) process.env.LIFELINE_TOKEN = saved
    }
    await dlqFails(['list', '--from', 'yesterday', ...as('viewer')], /filter\.from must be a time.*HTTP 400 LL_ARGUMENT_INVALID/)
    await dlqFails(['show', 'abc', ...as('viewer')], /record id must be a positive integer/)
    await dlqFails(['list', '--url', 'http://127.0.0.1:1', '--token', s.tokens.viewer], /cannot reach the DLQ API at http:\/\/127\.0\.0\.1:1/)
  })

  test('approvals from the command line: discard awaits, another person approves; edit with --reject', async (t) => {
    const s = await server(t, { discards: true, edits: true, bulkThreshold: 3 })
    const as = (role: keyof typeof s.tokens) => ['--url', s.url, '--token', s.tokens[role]]
    const asked = await dlq(['discard', '2', '--reason', 'dup', ...as('operator')])
    const id = /awaits approval (\d+)/.exec(asked.stdout)?.[1]
    assert.ok(id, asked.stdout)
    const approvals = await dlq(['approvals', '--status', 'pending', ...as('viewer')])
    assert.match(approvals.stdout, new RegExp(`^${id}\\s+discard\\s+pending\\s+operator-1\\s`, 'm'))
    await dlqFails(['approve', id, ...as('operator')], /HTTP 403/)
    assert.match((await dlq(['approve', id, ...as('approver')])).stdout, new RegExp(`^approval ${id} \\(discard requested by operator-1\\): executed\\n$`))
    assert.match((await dlq(['show', '2', ...as('viewer')])).stdout, /^status:\s+discarded \(dup\) by operator-1$/m)

    const edit = await dlq(['edit', '3', '--value', '{"n":33}', '--replay', ...as('operator')])
    const editApproval = /awaits approval (\d+)/.exec(edit.stdout)?.[1]
    assert.ok(editApproval, edit.stdout)
    await dlqFails(['approve', editApproval, '--reject', ...as('approver')], /--reject needs --reason/)
    assert.match((await dlq(['approve', editApproval, '--reject', '--reason', 'wrong amount', ...as('approver')])).stdout, /: rejected\n$/)
    assert.equal(s.sent.length, 0)
    await dlqFails(['edit', '3', '--value', '{not json', ...as('operator')], /the new payload is not JSON/)

    const bulk = await dlq(['replay', '--topic', 'orders', '--yes', ...as('operator')])
    assert.match(bulk.stdout, /^6 record\(s\) to replay\njob \d+ created, awaiting approval \d+: another person runs lifeline dlq approve \d+\n$/)
  })
})
