/**
 * The DLQ HTTP API in process (hono's app.request(): no port): the role matrix (every endpoint × every role
 * and no token), approvals, audit, hostile inputs and secrets, on both database kinds. The producer is a fake
 * that acknowledges every send (the redrive itself is tested against a real broker in redrive's tests).
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { ENDPOINTS, createDlqApi } from '../../src/dlq/api.js'
import type { ApprovalPolicy } from '../../src/dlq/approvals.js'
import { requestApproval } from '../../src/dlq/approvals.js'
import { ACTION_ROLES, createToken, roleAtLeast, ROLES, type Role } from '../../src/dlq/auth.js'
import type { DeadLetterContext } from '../../src/failure/formats.js'
import { indexRecords, type IndexItem } from '../../src/dlq/records.js'
import { createDlqProcessor } from '../../src/dlq/processor.js'
import { createRedriveJob } from '../../src/dlq/redrive/jobs.js'
import type { ProduceRecord } from '../../src/kafka/types.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { refusalSamplerDefaults } from '../../src/dlq/refusals.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase, stateDatabase } from '../helpers/db.js'
import { brokers, consumer, defer, pollUntil, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { recordingProducer } from '../helpers/recording-producer.js'

const USERS = ['viewer', 'operator', 'operator2', 'approver', 'approver2', 'admin'] as const
type User = (typeof USERS)[number]
const ROLE_OF: Record<User, Role> = { viewer: 'viewer', operator: 'operator', operator2: 'operator', approver: 'approver', approver2: 'approver', admin: 'admin' }

interface Fixture {
  db: SqlExecutor
  app: ReturnType<typeof createDlqApi>
  tokens: Record<User, string>
  sent: ProduceRecord[]
  ready: string[]
  /** Record ids by name. */
  ids: Record<string, string>
  call(method: string, path: string, opts?: { as?: User | null; token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown> & { error?: { code: string; message: string } } }>
}

const ctx = (over: Partial<DeadLetterContext>): DeadLetterContext => ({ format: 'lifeline', originTopic: 'orders', originPartition: 0, consumerGroup: 'billing', errorClass: 'TaxError', errorCode: 'E_TAX', errorMessage: 'tax service down', fingerprint: 'fp-tax', details: {}, ...over })

async function fixture(t: TestContext, kind: SqlExecutor['kind'], approvals: ApprovalPolicy = {}): Promise<Fixture> {
  const db = await freshDatabase(t, kind)
  await migrateLifeline(db)
  const items: Array<[string, IndexItem]> = []
  const add = (name: string, key: string, over: Partial<DeadLetterContext> = {}, value = `{"order":"${name}","amount":10}`, masked = false) =>
    items.push([name, { record: { topic: 'orders.dlq', partition: 0, offset: items.length, key: Buffer.from(key), value: Buffer.from(value), headers: [{ key: 'trace', value: Buffer.from('t-1') }], timestamp: Date.UTC(2025, 0, 10) }, context: ctx({ originOffset: 100 + items.length, ...over }), masked }])
  add('a', 'k1')
  add('b', 'k1')
  add('c', 'k2', { errorCode: 'E_RANGE', errorMessage: '100% broken', fingerprint: 'fp-range' })
  add('d', 'k3')
  add('e', 'k4')
  add('f', 'k5', { originTopic: 'payments', errorMessage: "O'Reilly's card" })
  add('masked', 'k6', { originTopic: 'payments' }, '{"card":"[REDACTED]","email":"enc:v1:k1:aaaa:bbbb:cccc"}', true)
  const results = await indexRecords(db, items.map(([, i]) => i))
  const ids = Object.fromEntries(items.map(([name], i) => [name, results[i]!.id]))
  const tokens = {} as Record<User, string>
  for (const user of USERS) tokens[user] = (await createToken(db, { name: user, role: ROLE_OF[user], owner: user })).token
  const sent: ProduceRecord[] = []
  const ready: string[] = []
  const app = createDlqApi({ db, deps: { db, producer: recordingProducer(sent) }, approvals, replayTopics: ['orders.manual'], onJobReady: (id) => ready.push(id), onJobResume: (id) => ready.push(`resume:${id}`) })
  const call: Fixture['call'] = async (method, path, opts = {}) => {
    const token = opts.token ?? (opts.as === null || opts.as === undefined ? undefined : tokens[opts.as])
    const headers: Record<string, string> = { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(opts.body === undefined && opts.raw === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers }
    const res = await app.request(path, { method, headers, ...(opts.raw !== undefined ? { body: opts.raw } : opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
  }
  return { db, app, tokens, sent, ready, ids, call }
}

const errorOf = (r: { body: { error?: { code: string; message: string } } }) => r.body.error

for (const kind of databaseKinds()) {
  test(`${kind}: role matrix: every endpoint × every role and no token`, async (t) => {
    const f = await fixture(t, kind)
    const job = await createRedriveJob({ db: f.db }, { filter: { key: 'k4' }, actor: 'operator', status: 'awaiting-approval' })
    const other = await createToken(f.db, { name: 'someone-else', role: 'operator', owner: 'someone-else' })
    const approval = await requestApproval(f.db, { action: 'discard', payload: { id: f.ids.e, reason: 'dup' }, requester: { name: other.name, role: other.role, owner: other.owner, tokenId: other.id } })
    const bodies: Record<string, unknown> = {
      'post /v1/records/:id/replay': {},
      'post /v1/records/:id/edit': { value: { order: 'e', amount: 11 } },
      'post /v1/records/:id/replay-edited': {},
      'post /v1/records/:id/discard': { reason: 'duplicate' },
      'post /v1/records/:id/resolve': { reason: 'fixed by hand' },
      'post /v1/redrives': { filter: { topic: 'orders' }, dryRun: true },
      'post /v1/approvals/:id/reject': { reason: 'no' },
    }
    const idFor = (path: string) => (path.startsWith('/v1/jobs') ? job.id : path.startsWith('/v1/approvals') ? approval.id : f.ids.d!)
    let tokenNo = 0
    const seen = new Set<string>()
    for (const e of ENDPOINTS) {
      const key = `${e.method} ${e.path}`
      seen.add(key)
      for (const who of [null, 'bad', ...USERS] as const) {
        const path = e.path.replace(':id', idFor(e.path)).replace(':name', `nobody-${tokenNo}`)
        const body = key === 'post /v1/tokens' ? { name: `t${tokenNo++}`, role: 'viewer', owner: 'someone' } : bodies[key]
        const r = await f.call(e.method.toUpperCase(), path, who === 'bad' ? { token: `llt_${'A'.repeat(43)}`, body } : { as: who, body })
        const label = `${key} as ${who ?? 'no token'}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`
        if (e.action === null) {
          assert.equal(r.status, 200, label)
        } else if (who === null || who === 'bad') {
          assert.equal(r.status, 401, label)
          assert.equal(errorOf(r)?.code, 'LL_UNAUTHORIZED', label)
        } else if (!roleAtLeast(ROLE_OF[who], ACTION_ROLES[e.action])) {
          assert.equal(r.status, 403, label)
          assert.equal(errorOf(r)?.code, 'LL_FORBIDDEN', label)
          assert.match(errorOf(r)!.message, new RegExp(`needs the ${ACTION_ROLES[e.action]} role`), label)
        } else {
          // Allowed: the action ran (or was refused for the state it left the record in), never a 401/403/500.
          assert.ok([200, 201, 202, 404, 409].includes(r.status), label)
          if (r.status === 404) assert.ok(key === 'delete /v1/tokens/:name' || key === 'post /v1/records/:id/replay-edited', label)
        }
      }
    }
    assert.equal(seen.size, ENDPOINTS.length)
    // Every role is exercised by some endpoint it may not call, except admin.
    for (const role of ROLES.filter((r) => r !== 'admin')) assert.ok(ENDPOINTS.some((e) => e.action !== null && !roleAtLeast(role, ACTION_ROLES[e.action])), role)

    // Other ways of not having a valid token.
    for (const headers of [{ authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` }, { authorization: 'Bearer' }, { authorization: `Bearer ${f.tokens.admin} extra` }, { authorization: f.tokens.admin }]) {
      const r = await f.call('GET', '/v1/records', { headers })
      assert.equal(r.status, 401, JSON.stringify(headers))
    }
    // A revoked token stops working at once.
    assert.equal((await f.call('DELETE', '/v1/tokens/viewer', { as: 'admin' })).status, 200)
    assert.equal((await f.call('GET', '/v1/records', { as: 'viewer' })).status, 401)
    // Refusals are audited.
    // Sampled (per source, per window of a minute): a flood of 401s cannot grow the audit log without bound.
    // The windows are fixed: a run that straddles one boundary may write a window's worth twice.
    const audit = await f.call('GET', '/v1/audit?action=auth.failed&limit=1000', { as: 'approver' })
    const rows = (audit.body.entries as unknown[]).length
    assert.ok(rows >= 1 && rows <= 2 * refusalSamplerDefaults.perSource, `${rows} auth.failed rows`)
    const forbidden = await f.call('GET', '/v1/audit?action=auth.forbidden&limit=1000', { as: 'approver' })
    assert.ok((forbidden.body.entries as Array<{ actor: string }>).some((x) => x.actor === 'viewer'), 'auth.forbidden rows')
  })

  test(`${kind}: records, groups, detail (masked stays masked, reads audited), single replay, discard and resolve`, async (t) => {
    const f = await fixture(t, kind)
    const list = await f.call('GET', '/v1/records?topic=orders&status=pending&limit=2', { as: 'viewer' })
    assert.equal(list.status, 200)
    const records = list.body.records as Array<Record<string, unknown>>
    assert.deepEqual(records.map((r) => r.id), [f.ids.a, f.ids.b])
    assert.equal(list.body.nextAfterId, f.ids.b)
    assert.ok(!('value' in records[0]!), 'lists carry no payload')
    const next = await f.call('GET', `/v1/records?topic=orders&limit=2&afterId=${f.ids.b}`, { as: 'viewer' })
    assert.deepEqual((next.body.records as Array<{ id: string }>).map((r) => r.id), [f.ids.c, f.ids.d])
    assert.equal((await f.call('GET', '/v1/records/count?topic=payments', { as: 'viewer' })).body.count, 2)
    assert.equal((await f.call('GET', '/v1/records/count?status=pending&status=replayed', { as: 'viewer' })).body.count, 7)
    assert.equal((await f.call('GET', '/v1/records/count?status=pending,discarded', { as: 'viewer' })).body.count, 7)
    assert.equal((await f.call('GET', `/v1/records?text=${encodeURIComponent('100%')}`, { as: 'viewer' })).body.records instanceof Array, true)
    assert.deepEqual(((await f.call('GET', `/v1/records?text=${encodeURIComponent('100%')}`, { as: 'viewer' })).body.records as Array<{ id: string }>).map((r) => r.id), [f.ids.c])

    const groups = await f.call('GET', '/v1/groups?limit=1', { as: 'viewer' })
    assert.equal(groups.status, 200)
    assert.deepEqual((groups.body.groups as Array<Record<string, unknown>>).map((g) => [g.fingerprint, g.count]), [['fp-tax', 6]])

    const masked = await f.call('GET', `/v1/records/${f.ids.masked}`, { as: 'viewer' })
    assert.equal(masked.status, 200)
    assert.equal(masked.body.value, '{"card":"[REDACTED]","email":"enc:v1:k1:aaaa:bbbb:cccc"}')
    assert.equal(masked.body.masked, true)
    assert.equal(masked.body.key, 'k6')
    assert.deepEqual(masked.body.headers, [{ key: 'trace', value: 't-1' }])
    const reads = await f.call('GET', `/v1/audit?action=record.read&target=record:${f.ids.masked}`, { as: 'approver' })
    assert.deepEqual((reads.body.entries as Array<{ actor: string; role: string }>).map((e) => [e.actor, e.role]), [['viewer', 'viewer']])

    assert.equal((await f.call('GET', '/v1/records/999999', { as: 'viewer' })).status, 404)
    assert.equal(errorOf(await f.call('GET', '/v1/records/999999', { as: 'viewer' }))?.code, 'LL_NOT_FOUND')

    const replay = await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: {} })
    assert.equal(replay.status, 200, JSON.stringify(replay.body))
    assert.equal(replay.body.topic, 'orders')
    assert.equal(f.sent.length, 1)
    assert.equal(f.sent[0]!.headers!.find((h) => h.key === 'lifeline.replay.actor')?.value?.toString(), 'operator')
    const again = await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: {} })
    assert.equal(again.status, 409, JSON.stringify(again.body))
    assert.equal((await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: { force: true } })).status, 403, 'force needs the approver role')
    assert.equal((await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'approver', body: { force: true } })).status, 200)
    const toTopic = await f.call('POST', `/v1/records/${f.ids.b}/replay`, { as: 'operator', body: { target: { kind: 'topic', topic: 'orders.manual', partition: 3 } } })
    assert.equal(toTopic.status, 200)
    assert.deepEqual([f.sent[2]!.topic, f.sent[2]!.partition], ['orders.manual', 3])

    const edit = await f.call('POST', `/v1/records/${f.ids.c}/edit`, { as: 'operator', body: { value: { order: 'c', amount: 12 }, reason: 'fix amount', replay: true } })
    assert.equal(edit.status, 200, JSON.stringify(edit.body))
    assert.deepEqual(edit.body.diff, [{ op: 'replace', path: '/amount', old: 10, value: 12 }])
    assert.equal(typeof edit.body.editId, 'string')
    assert.equal(f.sent.at(-1)!.value!.toString(), '{"order":"c","amount":12}')

    assert.equal((await f.call('POST', `/v1/records/${f.ids.d}/discard`, { as: 'operator', body: { reason: 'duplicate' } })).status, 200)
    const rediscard = await f.call('POST', `/v1/records/${f.ids.d}/discard`, { as: 'operator', body: { reason: 'duplicate' } })
    assert.equal(rediscard.status, 409)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.d}/resolve`, { as: 'operator', body: { reason: 'x' } })).status, 409)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.e}/resolve`, { as: 'operator', body: { reason: 'handled in the ERP' } })).status, 200)
    const detail = await f.call('GET', `/v1/records/${f.ids.d}`, { as: 'viewer' })
    assert.equal(detail.body.status, 'discarded')
    assert.equal(detail.body.statusReason, 'duplicate')
    assert.equal(detail.body.statusActor, 'operator')

    const writes = await f.call('GET', '/v1/audit?actor=operator&limit=100', { as: 'admin' })
    const actions = (writes.body.entries as Array<{ action: string; detail: { outcome: string } }>).map((e) => `${e.action}:${e.detail.outcome}`)
    // Writes commit with their audit row ('started' for a replay: the row commits with the replaying status,
    // before the send); refusals (403, 409) are rows too.
    assert.deepEqual(actions, ['record.replay:started', 'record.replay:refused', 'record.replay:refused', 'record.replay:started', 'record.edit:ok', 'record.replay-edited:started', 'record.discard:ok', 'record.discard:refused', 'record.resolve:refused', 'record.resolve:ok'])
  })

  test(`${kind}: approvals: a second person approves (and so executes) or rejects; never the requester`, async (t) => {
    const f = await fixture(t, kind, { bulkThreshold: 2, edits: true, discards: true })
    assert.deepEqual((await f.call('GET', '/v1/policy', { as: 'viewer' })).body, { bulkThreshold: 2, edits: true, discards: true })

    // A discard asked for by an operator waits for an approval.
    const asked = await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', body: { reason: 'test data' } })
    assert.equal(asked.status, 202)
    const a1 = asked.body.approval as { id: string; status: string; requestedBy: string }
    assert.deepEqual([a1.status, a1.requestedBy], ['pending', 'operator'])
    assert.equal((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body.status, 'pending')
    // The operator cannot approve (role); nor can an approver their own request.
    assert.equal((await f.call('POST', `/v1/approvals/${a1.id}/approve`, { as: 'operator2' })).status, 403)
    const own = await f.call('POST', `/v1/records/${f.ids.b}/discard`, { as: 'approver', body: { reason: 'noise' } })
    const a2 = own.body.approval as { id: string }
    const self = await f.call('POST', `/v1/approvals/${a2.id}/approve`, { as: 'approver' })
    assert.equal(self.status, 403)
    assert.match(errorOf(self)!.message, /second person/)
    assert.equal((await f.call('POST', `/v1/approvals/${a2.id}/reject`, { as: 'approver', body: { reason: 'changed my mind' } })).status, 403)
    // Another approver approves: executed as the requester.
    const ok = await f.call('POST', `/v1/approvals/${a2.id}/approve`, { as: 'approver2' })
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.equal((ok.body.approval as { status: string }).status, 'executed')
    const b = await f.call('GET', `/v1/records/${f.ids.b}`, { as: 'viewer' })
    assert.deepEqual([b.body.status, b.body.statusActor, b.body.statusReason], ['discarded', 'approver', 'noise'])
    assert.equal((await f.call('POST', `/v1/approvals/${a2.id}/approve`, { as: 'admin' })).status, 409)

    // Reject with a reason; then it cannot be approved.
    assert.equal((await f.call('POST', `/v1/approvals/${a1.id}/reject`, { as: 'approver', body: {} })).status, 400)
    const rejected = await f.call('POST', `/v1/approvals/${a1.id}/reject`, { as: 'approver', body: { reason: 'it is real data' } })
    assert.equal(rejected.status, 200)
    assert.deepEqual([(rejected.body.approval as { status: string }).status, (rejected.body.approval as { reason: string }).reason], ['rejected', 'it is real data'])
    assert.equal((await f.call('POST', `/v1/approvals/${a1.id}/approve`, { as: 'approver2' })).status, 409)
    assert.equal((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body.status, 'pending')

    // An edit (with replay) waits, then runs when approved.
    const edit = await f.call('POST', `/v1/records/${f.ids.c}/edit`, { as: 'operator', body: { value: { order: 'c', amount: 99 }, replay: true } })
    assert.equal(edit.status, 202)
    assert.equal(f.sent.length, 0)
    const done = await f.call('POST', `/v1/approvals/${(edit.body.approval as { id: string }).id}/approve`, { as: 'approver' })
    assert.equal(done.status, 200, JSON.stringify(done.body))
    assert.equal(f.sent.length, 1)
    assert.equal(f.sent[0]!.value!.toString(), '{"order":"c","amount":99}')
    assert.equal((await f.call('GET', `/v1/records/${f.ids.c}`, { as: 'viewer' })).body.status, 'replayed')

    // A bulk redrive: the dry run counts; above the threshold the job awaits an approval.
    const dry = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { topic: 'orders' }, dryRun: true } })
    assert.equal(dry.status, 200)
    assert.deepEqual([dry.body.count, dry.body.needsApproval], [5, true])
    assert.equal((await f.call('GET', '/v1/jobs', { as: 'viewer' })).body.jobs instanceof Array, true)
    assert.equal(((await f.call('GET', '/v1/jobs', { as: 'viewer' })).body.jobs as unknown[]).length, 0, 'a dry run creates nothing')
    const big = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { topic: 'orders' }, ratePerSec: 100 } })
    assert.equal(big.status, 202, JSON.stringify(big.body))
    const job = big.body.job as { id: string; status: string }
    assert.equal(job.status, 'awaiting-approval')
    assert.deepEqual(f.ready, [])
    const approveJob = await f.call('POST', `/v1/approvals/${(big.body.approval as { id: string }).id}/approve`, { as: 'approver' })
    assert.equal(approveJob.status, 200, JSON.stringify(approveJob.body))
    const jobNow = await f.call('GET', `/v1/jobs/${job.id}`, { as: 'viewer' })
    assert.deepEqual([jobNow.body.status, jobNow.body.approvedBy], ['ready', 'approver'])
    assert.deepEqual(f.ready, [job.id])
    // Small enough: ready at once.
    const small = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { topic: 'payments' } } })
    assert.equal(small.status, 201, JSON.stringify(small.body))
    assert.equal((small.body.job as { status: string }).status, 'ready')
    // A rejected redrive's job is cancelled.
    const third = await f.call('POST', '/v1/redrives', { as: 'operator2', body: { filter: { group: 'billing' }, force: true } })
    assert.equal(third.status, 202)
    await f.call('POST', `/v1/approvals/${(third.body.approval as { id: string }).id}/reject`, { as: 'approver2', body: { reason: 'too broad' } })
    assert.equal((await f.call('GET', `/v1/jobs/${(third.body.job as { id: string }).id}`, { as: 'viewer' })).body.status, 'cancelled')
    // Pause, resume, cancel.
    assert.equal((await f.call('POST', `/v1/jobs/${job.id}/resume`, { as: 'operator' })).status, 409)
    assert.equal((await f.call('POST', `/v1/jobs/${job.id}/pause`, { as: 'operator' })).status, 200)
    const resumed = await f.call('POST', `/v1/jobs/${job.id}/resume`, { as: 'operator' })
    assert.equal(resumed.status, 202)
    assert.deepEqual(f.ready.at(-1), `resume:${job.id}`)
    assert.equal((await f.call('POST', `/v1/jobs/${job.id}/cancel`, { as: 'operator' })).status, 200)
    assert.equal((await f.call('POST', `/v1/jobs/${job.id}/cancel`, { as: 'operator' })).status, 200, 'cancelling a cancelled job is idempotent')
    assert.equal((await f.call('GET', '/v1/jobs/424242', { as: 'viewer' })).status, 404)

    const list = await f.call('GET', '/v1/approvals?status=executed', { as: 'viewer' })
    assert.equal((list.body.approvals as unknown[]).length, 3)
    const audit = await f.call('GET', '/v1/audit?limit=1000', { as: 'approver' })
    const actions = new Set((audit.body.entries as Array<{ action: string }>).map((e) => e.action))
    for (const a of ['approval.request', 'approval.approve', 'approval.reject', 'record.discard', 'record.edit', 'record.replay-edited', 'redrive.create', 'job.pause', 'job.resume', 'job.cancel']) assert.ok(actions.has(a), a)
    const executed = (audit.body.entries as Array<{ action: string; actor: string; detail: Record<string, unknown> }>).find((e) => e.action === 'record.discard')!
    assert.deepEqual([executed.actor, executed.detail.approvedBy], ['approver', 'approver2'])
  })

  test(`${kind}: hostile and malformed input gets 400 with a clear message, never a 500 or an SQL error`, async (t) => {
    const f = await fixture(t, kind)
    const hostileQueries = [
      "limit='; drop table lifeline_dlq_records; --",
      'limit=%25',
      'limit=99999999999999999999',
      'limit=1e309',
      'limit=-1',
      'limit=0',
      'afterId=1.5',
      'afterId=18446744073709551616',
      'topic=a&topic=b',
      "topic='; drop table lifeline_dlq_records; --",
      'topic=%25',
      'bogus=1',
      'from=2025-13-45',
      'from=yesterday',
      'from=2025-01-01&to=2024-01-01',
      'to=99999999999999999',
      'status=pending,exploded',
      'format=cobol',
      'order=sideways',
      `text=${'x'.repeat(1001)}`,
      'key=a%00b',
    ]
    for (const q of hostileQueries) {
      for (const path of ['/v1/records', '/v1/records/count', '/v1/groups']) {
        if (path !== '/v1/records' && /^(afterId|order)=/.test(q)) continue
        const r = await f.call('GET', `${path}?${q}`, { as: 'viewer' })
        assert.equal(r.status, 400, `${path}?${q}: ${JSON.stringify(r.body)}`)
        assert.ok(['LL_ARGUMENT_INVALID'].includes(errorOf(r)!.code), q)
        assert.ok(!/syntax|relation|column|SQL/i.test(errorOf(r)!.message), `${q}: ${errorOf(r)!.message}`)
      }
    }
    // Text that only looks dangerous is a search like any other, passed as a parameter.
    const inj = await f.call('GET', `/v1/records?text=${encodeURIComponent("'; drop table lifeline_dlq_records; --")}`, { as: 'viewer' })
    assert.deepEqual([inj.status, inj.body.records], [200, []])
    assert.deepEqual(((await f.call('GET', `/v1/records?text=${encodeURIComponent("O'Reilly")}`, { as: 'viewer' })).body.records as Array<{ id: string }>).map((r) => r.id), [f.ids.f])
    assert.equal((await f.call('GET', '/v1/records/count', { as: 'viewer' })).body.count, 7, 'the table is intact')

    for (const id of ['abc', '0', '-1', '1.5', '99999999999999999999', "1' or '1'='1", '1e3', '%00']) {
      const r = await f.call('GET', `/v1/records/${encodeURIComponent(id)}`, { as: 'viewer' })
      assert.equal(r.status, 400, `record id ${id}: ${JSON.stringify(r.body)}`)
      assert.equal((await f.call('POST', `/v1/records/${encodeURIComponent(id)}/replay`, { as: 'operator', body: {} })).status, 400, id)
      assert.equal((await f.call('GET', `/v1/jobs/${encodeURIComponent(id)}`, { as: 'viewer' })).status, 400, id)
      assert.equal((await f.call('POST', `/v1/approvals/${encodeURIComponent(id)}/approve`, { as: 'approver' })).status, 400, id)
    }

    const badBodies: Array<[string, string, unknown]> = [
      ['POST', '/v1/redrives', { filter: { topic: ['orders'] }, dryRun: true }],
      ['POST', '/v1/redrives', { raw: '{"filter": {"limit": 1e309}, "dryRun": true}' }],
      ['POST', '/v1/redrives', { raw: '{"filter": {"afterId": 123456789012345678901234567890}, "dryRun": true}' }],
      ['POST', '/v1/redrives', { filter: { from: 'not a date' }, dryRun: true }],
      ['POST', '/v1/redrives', { filter: { unknownField: 1 }, dryRun: true }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, bogus: true }],
      ['POST', '/v1/redrives', { filter: 'topic=orders' }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, ratePerSec: 0 }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, ratePerSec: 1.5 }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, maxFailureRate: 2 }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, target: { kind: 'elsewhere' } }],
      ['POST', '/v1/redrives', { filter: { topic: 'orders' }, target: { kind: 'topic', topic: 'a b' } }],
      ['POST', '/v1/redrives', []],
      ['POST', '/v1/redrives', null],
      ['POST', `/v1/records/${f.ids.a}/replay`, { target: { kind: 'topic' } }],
      ['POST', `/v1/records/${f.ids.a}/replay`, { force: 'yes' }],
      ['POST', `/v1/records/${f.ids.a}/discard`, {}],
      ['POST', `/v1/records/${f.ids.a}/discard`, { reason: '' }],
      ['POST', `/v1/records/${f.ids.a}/discard`, { reason: ['x'] }],
      ['POST', `/v1/records/${f.ids.a}/discard`, { reason: 'x'.repeat(2001) }],
      ['POST', `/v1/records/${f.ids.a}/edit`, { reason: 'no value' }],
      ['POST', `/v1/records/${f.ids.a}/replay-edited`, { editId: 'latest' }],
      ['POST', '/v1/tokens', { name: "x'; drop table lifeline_dlq_tokens; --", role: 'viewer', owner: 'x' }],
      ['POST', '/v1/tokens', { name: 'ok', role: 'root', owner: 'x' }],
      ['POST', '/v1/tokens', { name: 'ok', role: 'viewer', owner: 'x', tokenHash: 'mine' }],
    ]
    for (const [method, path, body] of badBodies) {
      const raw = (body as { raw?: string } | null)?.raw
      const r = await f.call(method, path, raw === undefined ? { as: 'admin', body } : { as: 'admin', raw })
      assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`)
      assert.equal(typeof errorOf(r)?.message, 'string')
    }
    const notJson = await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', raw: '{"reason": "x"' })
    assert.deepEqual([notJson.status, errorOf(notJson)?.message], [400, 'the body is not valid JSON'])
    const huge = await f.call('POST', `/v1/records/${f.ids.a}/edit`, { as: 'operator', raw: JSON.stringify({ value: 'x'.repeat(2 * 1024 * 1024) }) })
    assert.equal(huge.status, 413)
    const unknownPath = await f.call('GET', '/v1/nothing', { as: 'viewer' })
    assert.deepEqual([unknownPath.status, errorOf(unknownPath)?.code], [404, 'LL_NOT_FOUND'])
    for (const q of ['limit=5000', 'status=exploded', 'bogus=1']) assert.equal((await f.call('GET', `/v1/jobs?${q}`, { as: 'viewer' })).status, 400, q)
    for (const q of ['limit=0', 'status=maybe']) assert.equal((await f.call('GET', `/v1/approvals?${q}`, { as: 'viewer' })).status, 400, q)
    for (const q of ['from=yesterday', 'limit=x', 'actor=a&actor=b', 'bogus=1']) assert.equal((await f.call('GET', `/v1/audit?${q}`, { as: 'approver' })).status, 400, q)
    assert.equal(f.sent.length, 0)
  })

  test(`${kind}: secrets: a token is returned once; token hashes never leave the database`, async (t) => {
    const f = await fixture(t, kind)
    const created = await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'ci', role: 'operator', owner: 'ci' } })
    assert.equal(created.status, 201)
    const token = created.body.token as string
    assert.match(token, /^llt_/)
    assert.equal((await f.call('GET', '/v1/whoami', { token })).body.name, 'ci')
    assert.equal((await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'ci', role: 'viewer', owner: 'ci' } })).status, 409)
    const { rows } = await f.db.query<{ token_hash: string }>('select token_hash from lifeline_dlq_tokens')
    const everything: string[] = []
    for (const path of ['/v1/tokens', '/v1/audit?limit=1000', '/v1/approvals', '/openapi.json', '/v1/whoami']) {
      const r = await f.call('GET', path, { as: 'admin' })
      assert.equal(r.status, 200, path)
      everything.push(JSON.stringify(r.body))
    }
    const all = everything.join('\n')
    for (const { token_hash } of rows) assert.ok(!all.includes(token_hash), 'a hash left the database')
    for (const clear of [token, ...Object.values(f.tokens)]) assert.ok(!all.includes(clear), 'a clear token was returned again')
    assert.ok(!/token_?hash/i.test(everything[0]!), 'no hash field')
    const tokens = JSON.parse(everything[0]!).tokens as Array<Record<string, unknown>>
    assert.deepEqual(Object.keys(tokens[0]!).sort(), ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'owner', 'revokedAt', 'role'])
  })

  test(`${kind}: /openapi.json describes every endpoint; /health needs no token`, async (t) => {
    const f = await fixture(t, kind)
    assert.deepEqual(await f.call('GET', '/health'), { status: 200, body: { status: 'ok' } })
    const doc = await f.call('GET', '/openapi.json', { as: 'viewer' })
    assert.equal(doc.body.openapi, '3.1.0')
    const paths = doc.body.paths as Record<string, Record<string, { 'x-lifeline-role'?: string; requestBody?: unknown }>>
    for (const e of ENDPOINTS) {
      const op = paths[e.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[e.method]
      assert.ok(op, `${e.method} ${e.path}`)
      if (e.action !== null) assert.equal(op['x-lifeline-role'], ACTION_ROLES[e.action])
      assert.equal(op.requestBody !== undefined, e.body !== undefined, `${e.method} ${e.path} body`)
    }
  })
}

test('processor: indexes a DLQ topic, serves the API and runs a created job in the background (real broker)', async (t) => {
  const db = await stateDatabase(t)
  await migrateLifeline(db)
  const { token } = await createToken(db, { name: 'ops', role: 'operator', owner: 'ops' })
  const origin = await topic(t, { prefix: 'orders' })
  const dlq = await topic(t, { topic: `${origin}.dlq` })
  const target = await topic(t, { prefix: 'orders-replayed' })
  const h = (key: string, value: string) => ({ key, value: Buffer.from(value) })
  await producer(t).send(
    [0, 1, 2].map((i) => ({ topic: dlq, key: `k${i}`, value: `{"n":${i}}`, headers: [h('source_topic', origin), h('source_partition', '0'), h('source_offset', String(i)), h('source_consumer_group', 'karafka-app')] })),
  )
  const processor = createDlqProcessor({ brokers: brokers(), db, topics: [dlq], groupId: randomName('dlq-indexer'), replayTopics: [target], api: { port: 0 }, jobPollMs: 100, indexer: { pollTimeoutMs: 100 } })
  defer(t, () => processor.close())
  await processor.start()
  assert.match(processor.url!, /^http:\/\/127\.0\.0\.1:\d+$/)
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${processor.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  assert.equal((await fetch(`${processor.url}/health`)).status, 200)
  await waitFor(async () => (await api('GET', `/v1/records/count?dlqTopic=${dlq}`)).body.count === 3, 'the indexer to store the 3 dead letters')
  const created = await api('POST', '/v1/redrives', { filter: { dlqTopic: dlq }, target: { kind: 'topic', topic: target } })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const jobId = (created.body.job as { id: string }).id
  await waitFor(async () => (await api('GET', `/v1/jobs/${jobId}`)).body.status === 'completed', 'the runner to complete the job')
  assert.equal((await api('GET', `/v1/jobs/${jobId}`)).body.succeeded, 3)
  const c = consumer(t, { groupId: randomName('check') })
  c.subscribe([target])
  const replayed = await pollUntil(c, 3)
  assert.deepEqual(replayed.map((r) => r.key?.toString()).sort(), ['k0', 'k1', 'k2'])
  // A job's replays carry the job as their actor (its requester is on the job).
  assert.ok(replayed.every((r) => r.headers.some((x) => x.key === 'lifeline.replay.actor' && x.value?.toString() === `redrive:${jobId}`)), 'replay actor header')
  await processor.close()
  await assert.rejects(fetch(`${processor.url}/health`))
})
