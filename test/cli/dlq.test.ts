/**
 * `lifeline dlq`: the token commands on a PGlite directory, and the API client commands against a real HTTP
 * server (serveDlqApi on port 0) in this process. The server's producer is a fake that acknowledges every
 * send; bulk jobs are run by the real redrive job runner.
 */
import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { filterFrom, progressLine, targetOption } from '../../src/cli/commands/dlq.js'
import { createDlqApi, serveDlqApi } from '../../src/dlq/api.js'
import type { ApprovalPolicy } from '../../src/dlq/approvals.js'
import { appendAudit, auditHash, AUDIT_GENESIS } from '../../src/dlq/audit.js'
import { createToken, verifyToken, type Role } from '../../src/dlq/auth.js'
import { indexRecords } from '../../src/dlq/records.js'
import { runRedriveJob } from '../../src/dlq/redrive/runner.js'
import type { RedriveDeps } from '../../src/dlq/redrive/types.js'
import type { ProduceRecord } from '../../src/kafka/types.js'
import { openPglite } from '../../src/store/open.js'
import { LIFELINE_MIGRATIONS_DIR, migrateLifeline } from '../../src/store/schema.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { databaseKinds, databaseUrl, defer, freshDatabase, pgliteDataDir, tempDir } from '../helpers/db.js'
import { recordingProducer } from '../helpers/recording-producer.js'

/** Runs `lifeline dlq <args>` in this process; returns what it wrote to stdout and stderr. */
const dlq = (args: string[]): Promise<{ stdout: string; stderr: string }> => runCli(['dlq', ...args])

async function dlqFails(args: string[], pattern: RegExp): Promise<void> {
  await assert.rejects(dlq(args), (err: Error) => {
    assert.match(err.message, pattern)
    return true
  })
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
  const deps: RedriveDeps = { db, producer: recordingProducer(sent) }
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
    const migrations = readdirSync(LIFELINE_MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort()
    assert.equal((await dlq(['migrate', '--database', dir])).stdout, `applied ${migrations.join(', ')}\n`)
    assert.equal((await dlq(['migrate', '--database', dir])).stdout, 'up to date\n')
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
    assert.match(audit.stdout, /^ID\s+AT\s+ACTOR\s+ROLE\s+ACTION\s+TARGET\s+DETAIL\n\d+\s+\S+\s+operator-1\s+operator\s+record\.discard\s+record:7\s+\{"reason":"test card","outcome":"ok"\}\n\d+\s+\S+\s+operator-1\s+operator\s+record\.discard\s+POST \/v1\/records\/7\/discard\s+\{"code":"LL_DLQ_CONFLICT","status":409,"outcome":"refused"\}/)

    await dlqFails(['audit', ...as('operator')], /needs the approver role; operator-1 is operator \(HTTP 403 LL_FORBIDDEN\)/)
    await dlqFails(['list', '--url', s.url, '--token', 'llt_nope'], /the token is invalid or revoked \(HTTP 401 LL_UNAUTHORIZED\)/)
    const saved = process.env.LIFELINE_TOKEN
    delete process.env.LIFELINE_TOKEN
    try {
      await dlqFails(['list', '--url', s.url], /no API token: set LIFELINE_TOKEN, or pass --token-file <path>/)
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

  test('audit rows and records are printed with their control characters escaped (finding 7)', async (t) => {
    const s = await server(t)
    const as = (role: keyof typeof s.tokens) => ['--url', s.url, '--token', s.tokens[role]]
    await appendAudit(s.db, { actor: 'mallory', action: 'auth.failed', target: 'GET /v1/\u001b[2J\u001b]0;owned\u0007\u009b31m\u202eevil', detail: { reason: 'x\u001b[31my' } })
    const id = (await indexRecords(s.db, [{ record: { topic: 'orders.dlq', partition: 0, offset: 99, key: Buffer.from('k\u001b[1m'), value: Buffer.from('{"a":"\u001b[2J"}'), headers: [], timestamp: 1 }, context: { format: 'lifeline', originTopic: 'orders', errorClass: 'E\u001b[5m', errorMessage: 'boom \u001b[2J\u009b2J', fingerprint: 'fp', details: {} } }]))[0]!.id
    const audit = await dlq(['audit', '--actor', 'mallory', ...as('approver')])
    const show = await dlq(['show', id, ...as('viewer')])
    const list = await dlq(['list', '--key', 'k\u001b[1m', ...as('viewer')])
    for (const [what, text] of [['audit', audit.stdout], ['show', show.stdout], ['list', list.stdout]] as const) {
      // eslint-disable-next-line no-control-regex -- control characters are what this looks for
      assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(text), `${what} printed a raw control character: ${JSON.stringify(text)}`)
    }
    assert.match(audit.stdout, /GET \/v1\/\\x1b\[2J\\x1b\]0;owned\\x07\\x9b31m\\u202eevil/)
    assert.match(show.stdout, /^message:\s+boom \\x1b\[2J\\x9b2J$/m)
    const json = await dlq(['audit', '--actor', 'mallory', '--json', ...as('approver')])
    assert.ok(!/[\u007f-\u009f\u202a-\u202e]/.test(json.stdout), 'JSON output escapes C1 and bidi controls too')
    assert.equal((JSON.parse(json.stdout) as Array<{ target: string }>)[0]!.target, 'GET /v1/\u001b[2J\u001b]0;owned\u0007\u009b31m\u202eevil', 'and still reads back exactly')
  })

  test('serve checks its options before starting: --schemas must be readable JSON of topic → schema, --rate-max an integer (finding 8)', async (t) => {
    const dir = await tempDir(t)
    await dlqFails(['serve', '--brokers', '127.0.0.1:1', '--schemas', join(dir, 'missing.json')], /--schemas: cannot read/)
    writeFileSync(join(dir, 'bad.json'), '{ not json')
    await dlqFails(['serve', '--brokers', '127.0.0.1:1', '--schemas', join(dir, 'bad.json')], /--schemas: .* is not JSON/)
    writeFileSync(join(dir, 'list.json'), '[1, 2]')
    await dlqFails(['serve', '--brokers', '127.0.0.1:1', '--schemas', join(dir, 'list.json')], /must hold an object of topic → JSON Schema/)
    await dlqFails(['serve', '--brokers', '127.0.0.1:1', '--rate-max', '0'], /--rate-max must be an integer/)
  })

  test('the token: --token warns (shell history, process list); LIFELINE_TOKEN and --token-file do not; plain http only to loopback unless --insecure (finding 10)', async (t) => {
    const s = await server(t)
    const viaFlag = await dlq(['list', '--url', s.url, '--token', s.tokens.viewer])
    assert.match(viaFlag.stderr, /warning: --token puts the token in your shell history and the process list: use LIFELINE_TOKEN or --token-file/)
    const file = join(await tempDir(t), 'token')
    writeFileSync(file, `${s.tokens.viewer}\n`, { mode: 0o600 })
    const viaFile = await dlq(['list', '--url', s.url, '--token-file', file])
    assert.equal(viaFile.stderr, '')
    assert.match(viaFile.stdout, /^ID\s+TOPIC/)
    await dlqFails(['list', '--url', s.url, '--token-file', join(file, 'missing')], /--token-file: cannot read/)
    const saved = { token: process.env.LIFELINE_TOKEN, file: process.env.LIFELINE_TOKEN_FILE }
    try {
      process.env.LIFELINE_TOKEN = s.tokens.viewer
      assert.equal((await dlq(['list', '--url', s.url])).stderr, '')
      delete process.env.LIFELINE_TOKEN
      process.env.LIFELINE_TOKEN_FILE = file
      assert.equal((await dlq(['list', '--url', s.url])).stderr, '')
    } finally {
      for (const [k, v] of [['LIFELINE_TOKEN', saved.token], ['LIFELINE_TOKEN_FILE', saved.file]] as const) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    }
    // A token never travels in clear to another host unless asked for.
    for (const url of ['http://dlq.example.com:7480', 'http://10.1.2.3:7480', 'http://[2001:db8::1]:7480']) {
      await dlqFails(['list', '--url', url, '--token-file', file], /refusing to send the token over plain http to a host that is not this machine.*https:\/\/.*--insecure/)
    }
    // Loopback is fine over http (as above); another address of this machine only with --insecure.
    const address = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address
    if (address !== undefined) {
      const wide = await serveDlqApi(createDlqApi({ db: s.db, deps: { db: s.db, producer: recordingProducer([]) } }), { port: 0, host: '0.0.0.0' })
      defer(t, () => wide.close())
      const url = `http://${address}:${wide.port}`
      await dlqFails(['list', '--url', url, '--token-file', file], /refusing to send the token over plain http/)
      assert.match((await dlq(['list', '--url', url, '--token-file', file, '--insecure'])).stdout, /^ID\s+TOPIC/)
    }
  })
})

for (const kind of databaseKinds()) {
  test(`${kind}: lifeline dlq audit verify reports the first row changed, removed or rechained behind the append-only trigger (finding 7)`, async (t) => {
    // PGlite: the command opens the directory itself, so the test's handle is closed around each run.
    let where: string
    let open: () => Promise<SqlExecutor>
    let done: (db: SqlExecutor) => Promise<void>
    if (kind === 'postgres') {
      const db = await freshDatabase(t, 'postgres')
      where = databaseUrl(db)
      open = async () => db
      done = async () => undefined
    } else {
      where = await pgliteDataDir(t)
      open = () => openPglite({ dataDir: where })
      done = (db) => db.close()
    }
    const withDb = async <T>(fn: (db: SqlExecutor) => Promise<T>): Promise<T> => {
      const db = await open()
      try {
        return await fn(db)
      } finally {
        await done(db)
      }
    }
    const details = [{ a: 1 }, { reason: 'café ☕ "quoted"', nested: { list: [1, 2.5, 'x'], flag: true } }, { n: null }, {}, { big: 1e21, small: -0.000001 }]
    const ids = await withDb(async (db) => {
      await migrateLifeline(db)
      for (const [i, detail] of details.entries()) await appendAudit(db, { actor: `user${i}`, role: 'operator', action: 'record.discard', target: `record:${i + 1}`, detail })
      return (await db.query('select id::text as id from lifeline_dlq_audit order by lifeline_dlq_audit.id')).rows.map((r) => r.id as string)
    })
    const verify = (...extra: string[]) => dlq(['audit', 'verify', '--database', where, ...extra])
    const intact = await verify()
    const head = new RegExp(`^audit chain intact: 5 rows chained, 0 before the chain; head: row ${ids[4]} ([0-9a-f]{64})$`, 'm').exec(intact.stdout)
    assert.ok(head, intact.stdout)
    const anchor = `${ids[4]}:${head[1]}`
    // As the table's owner, the trigger switched off: change a row's detail.
    const tamper = (sql: string, params: unknown[] = []) =>
      withDb(async (db) => {
        await db.query('alter table lifeline_dlq_audit disable trigger lifeline_dlq_audit_no_update')
        await db.query(sql, params)
        await db.query('alter table lifeline_dlq_audit enable trigger lifeline_dlq_audit_no_update')
      })
    await tamper(`update lifeline_dlq_audit set detail = '{"reason":"nothing to see"}' where id = $1`, [ids[2]])
    await dlqFails(['audit', 'verify', '--database', where], new RegExp(`audit chain broken at row ${ids[2]}: changed`))
    await tamper(`update lifeline_dlq_audit set detail = '{"n":null}' where id = $1`, [ids[2]])
    assert.match((await verify()).stdout, /^audit chain intact: 5 rows/m)
    // Remove a row: the next one no longer follows its predecessor.
    await tamper('delete from lifeline_dlq_audit where id = $1', [ids[1]])
    await dlqFails(['audit', 'verify', '--database', where], new RegExp(`audit chain broken at row ${ids[2]}: out of chain`))
    // Rechain everything after it (what someone with the code could do): only an anchor written down earlier catches it.
    await withDb(async (db) => {
      await db.query('alter table lifeline_dlq_audit disable trigger lifeline_dlq_audit_no_update')
      let prev = AUDIT_GENESIS
      for (const r of (await db.query('select id::text as id, actor, role, action, target, detail, at from lifeline_dlq_audit order by lifeline_dlq_audit.id')).rows) {
        const hash = auditHash(prev, { id: r.id as string, actor: r.actor as string, role: r.role as string, action: r.action as string, target: r.target as string, detail: r.detail, at: r.at as Date })
        await db.query('update lifeline_dlq_audit set prev_hash = $2, hash = $3 where id = $1', [r.id, prev, hash])
        prev = hash
      }
      await db.query('alter table lifeline_dlq_audit enable trigger lifeline_dlq_audit_no_update')
    })
    assert.match((await verify()).stdout, /^audit chain intact: 4 rows/m)
    await dlqFails(['audit', 'verify', '--database', where, '--anchor', anchor], new RegExp(`audit chain broken at row ${ids[4]}: not the anchor`))
    await dlqFails(['audit', 'verify', '--database', where, '--anchor', 'nonsense'], /--anchor must be <id>:<hash>/)
  })
}
