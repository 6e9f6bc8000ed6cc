/**
 * The DLQ API's security rules (issue 13), each as black-box requests against the real app (hono's
 * app.request(), in process) with a real producer on the test broker, on both database kinds: who may
 * replay where, four-eyes by owner, approvals that expire or die with their requester's token, the bulk
 * threshold per owner over a window, what a viewer sees of approvals, and tokens (owner, expiry, last use).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import Type from 'typebox'
import { randomBytes } from 'node:crypto'
import { Registry } from 'prom-client'
import { createDlqApi, dlqApiDefaults } from '../../src/dlq/api.js'
import { PROCESSOR_ACTOR } from '../../src/dlq/actors.js'
import { cancelGatedJob, sweepApprovals } from '../../src/dlq/approvals.js'
import { createToken } from '../../src/dlq/auth.js'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { refusalSamplerDefaults } from '../../src/dlq/refusals.js'
import { Masker } from '../../src/failure/masking.js'
import { createDlqProcessor } from '../../src/dlq/processor.js'
import { countRecords, indexRecords } from '../../src/dlq/records.js'
import { encodeFailureHeaders } from '../../src/failure/headers.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'
import { apiFixture, item, spyDb, type ApiResponse, type SeenQuery } from '../helpers/dlq-api.js'
import { brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { readAll } from '../helpers/lifeline.js'

const errorOf = (r: ApiResponse) => r.body.error
const keyring = { currentKeyId: 'k1', keys: { k1: randomBytes(32) }, hashKey: randomBytes(32) }
const approvalOf = (r: ApiResponse) => r.body.approval as { id: string; status: string; action: string; requestedBy: string; owner?: string; expiresAt?: string; createdAt: string }

for (const kind of databaseKinds()) {
  // ---- finding 2: one rule for every closing action ----
  test(`${kind}: resolve under discards: true waits for an approval like discard (finding 2)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { discards: true } })
    const r = await f.call('POST', `/v1/records/${f.ids.a}/resolve`, { as: 'operator', body: { reason: 'handled in the ERP' } })
    assert.equal(r.status, 202, JSON.stringify(r.body))
    assert.deepEqual([approvalOf(r).status, approvalOf(r).action], ['pending', 'resolve'])
    assert.equal((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body.status, 'pending')
    const ok = await f.call('POST', `/v1/approvals/${approvalOf(r).id}/approve`, { as: 'approver' })
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    const record = await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })
    assert.deepEqual([record.body.status, record.body.statusActor, record.body.statusReason], ['resolved', 'operator', 'handled in the ERP'])
  })

  // ---- finding 3: four-eyes by owner; approvals expire and die with the requester's token ----
  test(`${kind}: four-eyes is checked by owner: another token of the requester's owner cannot decide (finding 3)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { discards: true } })
    const asked = await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', body: { reason: 'test data' } })
    assert.equal(asked.status, 202)
    const id = approvalOf(asked).id
    for (const path of [`/v1/approvals/${id}/approve`, `/v1/approvals/${id}/reject`]) {
      const same = await f.call('POST', path, { as: 'olgaApprover', body: path.endsWith('reject') ? { reason: 'mine' } : undefined })
      assert.equal(same.status, 403, `${path}: ${JSON.stringify(same.body)}`)
      assert.equal(errorOf(same)?.code, 'LL_FORBIDDEN')
      assert.match(errorOf(same)!.message, /olga/)
    }
    assert.equal((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body.status, 'pending')
    const ok = await f.call('POST', `/v1/approvals/${id}/approve`, { as: 'approver' })
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.deepEqual([(ok.body.approval as { decidedBy: string }).decidedBy, (ok.body.approval as { owner: string }).owner], ['approver', 'olga'])
  })

  test(`${kind}: a token needs an owner (finding 3)`, async (t) => {
    const f = await apiFixture(t, kind)
    const none = await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'ci', role: 'operator' } })
    assert.equal(none.status, 400, JSON.stringify(none.body))
    assert.match(errorOf(none)!.message, /owner/)
    const created = await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'ci', role: 'operator', owner: 'team-payments' } })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.equal(created.body.owner, 'team-payments')
    assert.deepEqual((await f.call('GET', '/v1/whoami', { token: created.body.token as string })).body, { name: 'ci', role: 'operator', owner: 'team-payments' })
  })

  test(`${kind}: an approval expires after approvals.expiresAfterMs (default 24 h); an expired one cannot be decided (finding 3)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { discards: true } })
    const asked = await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', body: { reason: 'dup' } })
    const a = approvalOf(asked)
    assert.equal(Date.parse(a.expiresAt!) - Date.parse(a.createdAt), 24 * 3600_000)
    const g = await apiFixture(t, kind, { approvals: { discards: true, expiresAfterMs: 3600_000 } })
    const short = approvalOf(await g.call('POST', `/v1/records/${g.ids.a}/discard`, { as: 'operator', body: { reason: 'dup' } }))
    assert.equal(Date.parse(short.expiresAt!) - Date.parse(short.createdAt), 3600_000)
    // An hour later (the clock moved on):
    await g.db.query(`update lifeline_dlq_approvals set created_at = created_at - interval '2 hours', expires_at = expires_at - interval '2 hours'`)
    assert.equal(((await g.call('GET', `/v1/approvals/${short.id}`, { as: 'viewer' })).body as { status: string }).status, 'expired')
    const late = await g.call('POST', `/v1/approvals/${short.id}/approve`, { as: 'approver' })
    assert.equal(late.status, 409, JSON.stringify(late.body))
    assert.match(errorOf(late)!.message, /expired/)
    assert.equal((await g.call('GET', `/v1/records/${g.ids.a}`, { as: 'viewer' })).body.status, 'pending')
    assert.deepEqual(((await g.call('GET', '/v1/approvals?status=expired', { as: 'viewer' })).body.approvals as Array<{ id: string }>).map((x) => x.id), [short.id])
  })

  test(`${kind}: an approval is void once its requester's token is revoked (its job cancelled) (finding 3)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { discards: true, bulkThreshold: 1 } })
    const discard = approvalOf(await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', body: { reason: 'dup' } }))
    const bulk = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k1' } } })
    assert.equal(bulk.status, 202, JSON.stringify(bulk.body))
    assert.equal((await f.call('DELETE', '/v1/tokens/operator', { as: 'admin' })).status, 200)
    for (const id of [discard.id, approvalOf(bulk).id]) {
      const r = await f.call('POST', `/v1/approvals/${id}/approve`, { as: 'approver' })
      assert.equal(r.status, 409, JSON.stringify(r.body))
      assert.match(errorOf(r)!.message, /revoked/)
      assert.equal(((await f.call('GET', `/v1/approvals/${id}`, { as: 'viewer' })).body as { status: string }).status, 'void')
    }
    assert.equal((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body.status, 'pending')
    assert.equal((await f.call('GET', `/v1/jobs/${(bulk.body.job as { id: string }).id}`, { as: 'viewer' })).body.status, 'cancelled')
  })

  test(`${kind}: the processor's sweep closes expired and void approvals and cancels their jobs (finding 3)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { bulkThreshold: 0, discards: true } })
    const bulk = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k1' } } })
    const discard = approvalOf(await f.call('POST', `/v1/records/${f.ids.c}/discard`, { as: 'operator2', body: { reason: 'dup' } }))
    const fresh = approvalOf(await f.call('POST', `/v1/records/${f.ids.d}/discard`, { as: 'approver', body: { reason: 'dup' } }))
    await f.db.query(`update lifeline_dlq_approvals set expires_at = now() - interval '1 second' where id = $1`, [approvalOf(bulk).id])
    assert.equal((await f.call('DELETE', '/v1/tokens/operator2', { as: 'admin' })).status, 200)
    assert.equal(await sweepApprovals(f.db, PROCESSOR_ACTOR, cancelGatedJob), 2)
    const status = async (id: string) => ((await f.call('GET', `/v1/approvals/${id}`, { as: 'viewer' })).body as { status: string }).status
    assert.deepEqual([await status(approvalOf(bulk).id), await status(discard.id), await status(fresh.id)], ['expired', 'void', 'pending'])
    assert.equal((await f.call('GET', `/v1/jobs/${(bulk.body.job as { id: string }).id}`, { as: 'viewer' })).body.status, 'cancelled')
    const rows = ((await f.call('GET', '/v1/audit?actor=processor', { as: 'admin' })).body.entries as Array<{ action: string }>).map((e) => e.action)
    assert.deepEqual(rows, ['approval.expired', 'approval.void'])
    assert.equal(await sweepApprovals(f.db, PROCESSOR_ACTOR, cancelGatedJob), 0)
  })

  // ---- finding 9: tokens expire, record their last use, and never take a system actor's name ----
  test(`${kind}: tokens: optional expiry, last use, system actor names refused (finding 9)`, async (t) => {
    const f = await apiFixture(t, kind)
    const created = await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'ci', role: 'viewer', owner: 'ci-bot', expires: '90d' } })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const expiresAt = Date.parse(created.body.expiresAt as string)
    assert.ok(Math.abs(expiresAt - (Date.now() + 90 * 86_400_000)) < 60_000, String(created.body.expiresAt))
    const token = created.body.token as string
    const listed = () => f.call('GET', '/v1/tokens', { as: 'admin' }).then((r) => (r.body.tokens as Array<Record<string, unknown>>).find((x) => x.name === 'ci')!)
    assert.equal((await listed()).lastUsedAt, null)
    assert.equal((await f.call('GET', '/v1/whoami', { token })).status, 200)
    const used = await listed()
    assert.ok(typeof used.lastUsedAt === 'string' && Math.abs(Date.parse(used.lastUsedAt) - Date.now()) < 60_000, JSON.stringify(used))
    assert.equal(used.expiresAt, created.body.expiresAt)
    // Once expired (the clock moved on), it is refused like a revoked token.
    await f.db.query(`update lifeline_dlq_tokens set expires_at = now() - interval '1 second' where name = 'ci'`)
    const expired = await f.call('GET', '/v1/whoami', { token })
    assert.equal(expired.status, 401)
    assert.match(errorOf(expired)!.message, /expired/)
    for (const expires of ['0d', 'soon', '2001-01-01T00:00:00Z', '99999d']) {
      assert.equal((await f.call('POST', '/v1/tokens', { as: 'admin', body: { name: 'x1', role: 'viewer', owner: 'x', expires } })).status, 400, expires)
    }
    for (const name of ['indexer', 'processor', 'anonymous', 'Indexer', 'cli']) {
      const r = await f.call('POST', '/v1/tokens', { as: 'admin', body: { name, role: 'viewer', owner: 'x' } })
      assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`)
      assert.match(errorOf(r)!.message, /system actor/)
    }
  })

  // ---- finding 5: approvals lists never carry payloads; reading one is a record read ----
  test(`${kind}: approvals lists carry no payload; reading one is audited as a read of its record (finding 5)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { edits: true } })
    const asked = await f.call('POST', `/v1/records/${f.ids.a}/edit`, { as: 'operator', body: { value: { order: 'a', amount: 10, card: '4111111111111111' }, reason: 'card' } })
    assert.equal(asked.status, 202, JSON.stringify(asked.body))
    const id = approvalOf(asked).id
    assert.ok(!JSON.stringify(asked.body).includes('4111111111111111'), 'the request answer has no payload')
    const list = await f.call('GET', '/v1/approvals', { as: 'viewer' })
    assert.equal(list.status, 200)
    assert.ok(!JSON.stringify(list.body).includes('4111111111111111'), JSON.stringify(list.body))
    const listed = (list.body.approvals as Array<Record<string, unknown>>)[0]!
    assert.equal(listed.payload, undefined)
    assert.deepEqual(listed.summary, { record: f.ids.a, replay: false })
    const one = await f.call('GET', `/v1/approvals/${id}`, { as: 'viewer' })
    assert.equal(one.status, 200)
    assert.equal(((one.body.payload as { value: { card: string } }).value).card, '4111111111111111')
    const reads = await f.call('GET', `/v1/audit?action=record.read&target=record:${f.ids.a}`, { as: 'approver' })
    assert.deepEqual((reads.body.entries as Array<{ actor: string; detail: { approval?: string } }>).map((e) => [e.actor, e.detail.approval]), [['viewer', id]])
  })

  // ---- finding 1, 8: replay targets and force need the approver role ----
  test(`${kind}: an operator replays only to the origin, its retry tiers and allow-listed topics; force needs the approver role (findings 1, 8)`, async (t) => {
    const listed = await topic(t, { prefix: 'replays' })
    const other = await topic(t, { prefix: 'exfil' })
    const f = await apiFixture(t, kind, { api: { replayTopics: [listed] } })
    const refused = await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: { target: { kind: 'topic', topic: other } } })
    assert.equal(refused.status, 403, JSON.stringify(refused.body))
    assert.equal(errorOf(refused)?.code, 'LL_FORBIDDEN')
    assert.match(errorOf(refused)!.message, /approver/)
    for (const body of [{ value: { order: 'a', amount: 1 }, replay: true, target: { kind: 'topic', topic: other } }]) {
      const r = await f.call('POST', `/v1/records/${f.ids.b}/edit`, { as: 'operator', body })
      assert.equal(r.status, 403, JSON.stringify(r.body))
    }
    assert.equal((await f.call('POST', `/v1/records/${f.ids.b}/replay-edited`, { as: 'operator', body: { target: { kind: 'topic', topic: other } } })).status, 403)
    const tier = await f.call('POST', `/v1/records/${f.ids.c}/replay`, { as: 'operator', body: { target: { kind: 'retry-tier', tier: 1, service: 'someone-else' } } })
    assert.equal(tier.status, 403, JSON.stringify(tier.body))
    const force = await f.call('POST', `/v1/records/${f.ids.d}/replay`, { as: 'operator', body: { force: true } })
    assert.equal(force.status, 403, JSON.stringify(force.body))
    assert.match(errorOf(force)!.message, /force/)
    assert.equal(await f.endOffset(other), 0, 'nothing reached the other topic')
    assert.equal(await f.endOffset(f.origin), 0, 'nothing was sent at all')
    // Allowed: the origin, an allow-listed topic; the approver anywhere, and with force.
    assert.equal((await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: {} })).status, 200)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.c}/replay`, { as: 'operator', body: { target: { kind: 'topic', topic: listed } } })).status, 200)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.d}/replay`, { as: 'approver', body: { target: { kind: 'topic', topic: other } } })).status, 200)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.d}/replay`, { as: 'approver', body: { force: true } })).status, 200)
    assert.deepEqual([await f.endOffset(f.origin), await f.endOffset(listed), await f.endOffset(other)], [2, 1, 1])
    // A bulk redrive an operator asks for with such a target or force waits for an approver instead.
    const bulk = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k4' }, target: { kind: 'topic', topic: other }, force: true } })
    assert.equal(bulk.status, 202, JSON.stringify(bulk.body))
    const approval = await f.call('GET', `/v1/approvals/${approvalOf(bulk).id}`, { as: 'viewer' })
    assert.deepEqual((approval.body.summary as { reasons: string[] }).reasons, ['target', 'force'])
    assert.deepEqual([(approval.body.payload as { target: unknown }).target, (approval.body.payload as { force: boolean }).force], [{ kind: 'topic', topic: other }, true])
  })

  // ---- finding 4: the bulk threshold counts per owner over a window ----
  test(`${kind}: the bulk threshold counts an owner's unapproved redrives over the window, not each request (finding 4)`, async (t) => {
    const f = await apiFixture(t, kind, { approvals: { bulkThreshold: 3 } })
    const create = (as: 'operator' | 'operator2', key: string, dryRun = false) => f.call('POST', '/v1/redrives', { as, body: { filter: { key }, ...(dryRun ? { dryRun } : {}) } })
    assert.equal((await create('operator', 'k1')).status, 201) // 2 records
    assert.equal((await create('operator', 'k2')).status, 201) // 3 in the window
    const dry = await create('operator', 'k3', true)
    assert.deepEqual([dry.body.count, dry.body.needsApproval, dry.body.windowCount], [1, true, 3])
    const split = await create('operator', 'k3')
    assert.equal(split.status, 202, JSON.stringify(split.body))
    const payload = (await f.call('GET', `/v1/approvals/${approvalOf(split).id}`, { as: 'viewer' })).body.payload as Record<string, unknown>
    assert.deepEqual([payload.count, payload.windowCount, payload.target, payload.force], [1, 3, { kind: 'origin' }, false])
    // Another person has a window of their own.
    assert.equal((await create('operator2', 'k4')).status, 201)
  })

  // ---- finding 8: redrive safety ----
  test(`${kind}: a dry run and a job's creation count in SQL: no query loads the matching records (finding 8)`, async (t) => {
    const seen: SeenQuery[] = []
    const f = await apiFixture(t, kind, { wrapDb: (db) => spyDb(db, seen), records: (origin) => Array.from({ length: 2500 }, (_, i) => [`r${i}`, item(origin, i, `k${i % 50}`, '{}')]) })
    seen.length = 0
    const dry = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { topic: f.origin }, dryRun: true } })
    assert.deepEqual([dry.status, dry.body.count, dry.body.replayable, dry.body.keys], [200, 2500, 2500, 50])
    const job = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { topic: f.origin } } })
    assert.equal(job.status, 201, JSON.stringify(job.body))
    assert.equal((job.body.job as { total: number }).total, 2500)
    const largest = seen.reduce((a, b) => (b.rows > a.rows ? b : a))
    assert.ok(largest.rows <= 10, `a query returned ${largest.rows} rows: ${largest.text.slice(0, 120)}`)
    const widest = seen.reduce((a, b) => (b.longestArray > a.longestArray ? b : a))
    assert.ok(widest.longestArray <= 10, `a query took ${widest.longestArray} ids: ${widest.text.slice(0, 120)}`)
  })

  test(`${kind}: bulk redrives get a server-side default rate and a cap (finding 8)`, async (t) => {
    const f = await apiFixture(t, kind, { api: { redriveRate: { defaultPerSec: 50, maxPerSec: 100 } } })
    const plain = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k1' } } })
    assert.equal(plain.status, 201, JSON.stringify(plain.body))
    assert.equal((plain.body.job as { ratePerSec: number }).ratePerSec, 50)
    const over = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k2' }, ratePerSec: 101 } })
    assert.equal(over.status, 400, JSON.stringify(over.body))
    assert.match(errorOf(over)!.message, /ratePerSec.*100/)
    assert.equal(((await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k2' }, ratePerSec: 100 } })).body.job as { ratePerSec: number }).ratePerSec, 100)
    const g = await apiFixture(t, kind)
    const dflt = await g.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k1' } } })
    assert.equal((dflt.body.job as { ratePerSec: number }).ratePerSec, dlqApiDefaults.ratePerSec)
    assert.equal((await g.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k2' }, ratePerSec: dlqApiDefaults.maxRatePerSec + 1 } })).status, 400)
    assert.throws(() => createDlqApi({ db: g.db, deps: g.deps, redriveRate: { defaultPerSec: 200, maxPerSec: 100 } }), { code: 'LL_OPTIONS_INVALID' })
  })

  test(`${kind}: the processor validates edits against the configured schemas (finding 8)`, async (t) => {
    const db = await freshDatabase(t, kind)
    await migrateLifeline(db)
    const { token } = await createToken(db, { name: 'ops', role: 'operator', owner: 'olga' })
    const origin = await topic(t, { prefix: 'orders' })
    const id = (await indexRecords(db, [item(origin, 0, 'k1', '{"order":"a","amount":-1}')]))[0]!.id
    const schema = Type.Object({ order: Type.String(), amount: Type.Number({ minimum: 0 }) })
    const processor = createDlqProcessor({ brokers: brokers(), db, topics: [`${origin}.dlq`], groupId: randomName('dlq-indexer'), schemas: { [origin]: schema }, api: { port: 0 }, indexer: { pollTimeoutMs: 100 } })
    defer(t, () => processor.close())
    await processor.start()
    const edit = async (value: unknown) => {
      const res = await fetch(`${processor.url}/v1/records/${id}/edit`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ value }) })
      return { status: res.status, body: (await res.json()) as ApiResponse['body'] }
    }
    const bad = await edit({ order: 'a', amount: -5 })
    assert.equal(bad.status, 400, JSON.stringify(bad.body))
    assert.equal(errorOf(bad)?.code, 'LL_SCHEMA_INVALID')
    assert.equal((await edit({ order: 'a', amount: 5 })).status, 200)
  })

  // ---- finding 1, 6: encrypted values decrypt only where they were encrypted; keys and Lifeline records are masked ----
  test(`${kind}: a ciphertext moved to another record's topic or another field is refused at replay (409 LL_DECRYPT), nothing sent (finding 1)`, async (t) => {
    const masker = new Masker([{ topics: ['*'], rules: [{ path: '$.email', action: 'encrypt' }] }], keyring)
    const other = await topic(t, { prefix: 'payments' })
    let token = ''
    const f = await apiFixture(t, kind, {
      masker,
      records: (origin) => {
        const own = masker.mask(origin, { value: Buffer.from('{"email":"ada@example.com","n":1}'), errorMessage: '', headers: [] }).value!.toString()
        token = (JSON.parse(own) as { email: string }).email
        return [
          ['own', item(origin, 0, 'k1', own, {}, true)],
          ['otherTopic', item(other, 1, 'k2', JSON.stringify({ email: token, n: 2 }), {}, true)],
          ['otherField', item(origin, 2, 'k3', JSON.stringify({ email: null, note: token }), {}, true)],
          ['plain', item(origin, 3, 'k4', '{"email":"bob@example.com"}')],
        ]
      },
    })
    for (const name of ['otherTopic', 'otherField']) {
      const r = await f.call('POST', `/v1/records/${f.ids[name]}/replay`, { as: 'operator', body: {} })
      assert.equal(r.status, 409, `${name}: ${JSON.stringify(r.body)}`)
      assert.equal(errorOf(r)?.code, 'LL_DECRYPT')
      assert.equal((await f.call('GET', `/v1/records/${f.ids[name]}`, { as: 'viewer' })).body.status, 'pending')
    }
    // An edit cannot bring it in either.
    const edit = await f.call('POST', `/v1/records/${f.ids.plain}/edit`, { as: 'operator', body: { value: { email: 'bob@example.com', note: token }, replay: true } })
    assert.equal(edit.status, 400, JSON.stringify(edit.body))
    assert.match(errorOf(edit)!.message, /\$\.note/)
    assert.deepEqual([await f.endOffset(other), await f.endOffset(f.origin)], [0, 0], 'nothing was sent')
    // The record's own ciphertext decrypts where it was encrypted.
    assert.equal((await f.call('POST', `/v1/records/${f.ids.own}/replay`, { as: 'operator', body: {} })).status, 200)
    const [replayed] = await readAll(t, f.origin, 1)
    assert.deepEqual(JSON.parse(replayed!.value!.toString()), { email: 'ada@example.com', n: 1 })
  })

  test(`${kind}: an edit typed in clear into a masked field is stored encrypted; its approval holds no clear value (finding 1)`, async (t) => {
    const masker = new Masker([{ topics: ['*'], rules: [{ path: '$.card', action: 'encrypt' }] }], keyring)
    const f = await apiFixture(t, kind, { masker, approvals: { edits: true } })
    const asked = await f.call('POST', `/v1/records/${f.ids.a}/edit`, { as: 'operator', body: { value: { order: 'a', amount: 10, card: '4111111111111111' }, replay: true } })
    assert.equal(asked.status, 202, JSON.stringify(asked.body))
    const approval = await f.call('GET', `/v1/approvals/${approvalOf(asked).id}`, { as: 'viewer' })
    assert.match((approval.body.payload as { value: { card: string } }).value.card, /^enc:v2:/)
    assert.ok(!JSON.stringify(approval.body).includes('4111111111111111'))
    assert.equal((await f.call('POST', `/v1/approvals/${approvalOf(asked).id}/approve`, { as: 'approver' })).status, 200)
    const { rows } = await f.db.query(`select encode(value, 'escape') as v, diff::text as d from lifeline_dlq_edits`)
    assert.ok(!JSON.stringify(rows).includes('4111111111111111'), JSON.stringify(rows))
    const [replayed] = await readAll(t, f.origin, 1)
    assert.deepEqual(JSON.parse(replayed!.value!.toString()), { order: 'a', amount: 10, card: '4111111111111111' })
  })

  test(`${kind}: the processor's policies mask Lifeline records and record keys; lists show no clear key; a replay restores both (finding 6)`, async (t) => {
    const f0 = await apiFixture(t, kind, { records: () => [] })
    const origin = f0.origin
    const policies = [{ topics: [origin], rules: [{ path: '$.email', action: 'encrypt' as const }], key: 'encrypt' as const }]
    const masker = new Masker(policies, keyring)
    const f = { ...f0, app: createDlqApi({ db: f0.db, deps: { ...f0.deps, masker } }) }
    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await f.app.request(path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
      return { status: res.status, text: await res.text() }
    }
    const dlq = await topic(t, { topic: `${origin}.dlq` })
    const now = Date.now()
    const headers = encodeFailureHeaders([], {
      originTopic: origin, originPartition: 0, originOffset: 7, originTimestamp: now, group: 'billing', service: 'billing', errorClass: 'CreditError', errorCode: 'E_CREDIT',
      errorMessage: 'no credit for ada@example.com (customer-ada@example.com)', errorStack: 'CreditError: no credit for ada@example.com\n    at check (credit.ts:1:1)', errorFingerprint: 'fp', attempts: 1, firstFailureAt: now, lastFailureAt: now,
    })
    await producer(t).send([{ topic: dlq, key: 'customer-ada@example.com', value: '{"email":"ada@example.com","n":1}', headers }])
    const indexer = createDlqIndexer({ brokers: brokers(), db: f.db, topics: [dlq], groupId: randomName('dlq-indexer'), masking: { policies, keyring }, pollTimeoutMs: 100 })
    defer(t, () => indexer.close())
    await indexer.start()
    await waitFor(async () => (await countRecords(f.db)) === 1, 'the indexer to store the record')
    const list = await call('GET', '/v1/records', f.tokens.viewer)
    assert.ok(!list.text.includes('ada@example.com'), list.text)
    const [summary] = (JSON.parse(list.text) as { records: Array<{ id: string; keyText: string; masked: boolean }> }).records
    assert.match(summary!.keyText, /^enc:v2:/)
    assert.equal(summary!.masked, true)
    const detail = await call('GET', `/v1/records/${summary!.id}`, f.tokens.viewer)
    assert.ok(!detail.text.includes('ada@example.com'), detail.text)
    assert.equal((await call('POST', `/v1/records/${summary!.id}/replay`, f.tokens.operator, {})).status, 200)
    const [replayed] = await readAll(t, origin, 1)
    assert.equal(replayed!.key!.toString(), 'customer-ada@example.com')
    assert.deepEqual(JSON.parse(replayed!.value!.toString()), { email: 'ada@example.com', n: 1 })
  })

  // ---- finding 7: the audit log ----
  test(`${kind}: an audit row commits with its action: when it cannot be written, the action is not done (finding 7)`, async (t) => {
    const f = await apiFixture(t, kind)
    const ready = await f.call('POST', '/v1/redrives', { as: 'operator', body: { filter: { key: 'k5' } } })
    assert.equal(ready.status, 201)
    await f.db.query('create table audit_refuses (action text primary key)')
    await f.db.query(`create function audit_refuse() returns trigger language plpgsql as $$ begin if exists (select 1 from audit_refuses where action = new.action) then raise exception 'audit refused'; end if; return new; end $$`)
    await f.db.query('create trigger audit_refuse before insert on lifeline_dlq_audit for each row execute function audit_refuse()')
    await f.db.query(`insert into audit_refuses (action) values ('record.discard'), ('record.resolve'), ('record.edit'), ('record.replay'), ('redrive.create'), ('job.pause'), ('job.cancel'), ('token.create'), ('token.revoke')`)
    const attempts: Array<[string, string, unknown]> = [
      ['POST', `/v1/records/${f.ids.a}/discard`, { reason: 'dup' }],
      ['POST', `/v1/records/${f.ids.c}/resolve`, { reason: 'elsewhere' }],
      ['POST', `/v1/records/${f.ids.d}/edit`, { value: { order: 'd', amount: 1 } }],
      ['POST', `/v1/records/${f.ids.e}/replay`, {}],
      ['POST', '/v1/redrives', { filter: { key: 'k2' } }],
      ['POST', `/v1/jobs/${(ready.body.job as { id: string }).id}/pause`, undefined],
      ['POST', `/v1/jobs/${(ready.body.job as { id: string }).id}/cancel`, undefined],
      ['POST', '/v1/tokens', { name: 'ci', role: 'viewer', owner: 'ci' }],
      ['DELETE', '/v1/tokens/viewer', undefined],
    ]
    for (const [method, path, body] of attempts) {
      const r = await f.call(method, path, { as: path.includes('token') ? 'admin' : 'operator', ...(body === undefined ? {} : { body }) })
      assert.equal(r.status, 500, `${method} ${path}: ${JSON.stringify(r.body)}`)
    }
    const status = async (name: string) => (await f.call('GET', `/v1/records/${f.ids[name]}`, { as: 'viewer' })).body.status
    assert.deepEqual([await status('a'), await status('c'), await status('e')], ['pending', 'pending', 'pending'])
    assert.equal(Number((await f.db.query('select count(*)::int8 as n from lifeline_dlq_edits')).rows[0]!.n), 0, 'no edit stored')
    assert.equal(await f.endOffset(f.origin), 0, 'nothing sent')
    assert.deepEqual(((await f.call('GET', '/v1/jobs', { as: 'viewer' })).body.jobs as Array<{ status: string }>).map((j) => j.status), ['ready'])
    assert.deepEqual(((await f.call('GET', '/v1/tokens', { as: 'admin' })).body.tokens as Array<{ name: string; revokedAt: string | null }>).filter((x) => x.name === 'ci' || x.revokedAt !== null), [])
  })

  test(`${kind}: refusals (403, 409, self-approval) are audited, sampled per source; a 401 flood is counted, not written row by row (finding 7)`, async (t) => {
    const registry = new Registry()
    // An hour's window: the whole test sits in one window, or straddles one boundary at most (hence 2 × the limit below).
    const f = await apiFixture(t, kind, { approvals: { discards: true }, api: { metrics: { registry }, refusals: { windowMs: 3_600_000 } } })
    const refusedRows = async (actor: string) =>
      ((await f.call('GET', `/v1/audit?actor=${actor}&limit=1000`, { as: 'admin' })).body.entries as Array<{ action: string; detail: Record<string, unknown> }>).filter((e) => e.detail.outcome === 'refused' || e.action.startsWith('auth.'))
    // A self-approval (same owner), a conflict, a forbidden target, a role too low: each audited.
    const asked = approvalOf(await f.call('POST', `/v1/records/${f.ids.a}/discard`, { as: 'operator', body: { reason: 'dup' } }))
    assert.equal((await f.call('POST', `/v1/approvals/${asked.id}/approve`, { as: 'olgaApprover' })).status, 403)
    assert.equal((await f.call('POST', `/v1/approvals/${asked.id}/approve`, { as: 'approver' })).status, 200)
    assert.equal((await f.call('POST', `/v1/approvals/${asked.id}/approve`, { as: 'approver2' })).status, 409)
    assert.equal((await f.call('POST', `/v1/records/${f.ids.b}/replay`, { as: 'operator2', body: { force: true } })).status, 403)
    assert.equal((await f.call('GET', '/v1/audit', { as: 'viewer' })).status, 403)
    const byActor = async (actor: string) => (await refusedRows(actor)).map((e) => [e.action, e.detail.status, e.detail.code])
    assert.deepEqual(await byActor('olgaApprover'), [['approval.decide', 403, 'LL_FORBIDDEN']])
    assert.deepEqual(await byActor('approver2'), [['approval.decide', 409, 'LL_DLQ_CONFLICT']])
    assert.deepEqual(await byActor('operator2'), [['record.replay', 403, 'LL_FORBIDDEN']])
    assert.deepEqual(await byActor('viewer'), [['auth.forbidden', 403, 'LL_FORBIDDEN']])
    // Many refusals of one token: a few rows, the rest counted in the next row written and in the metric.
    for (let i = 0; i < 30; i++) assert.equal((await f.call('POST', `/v1/records/${f.ids.b}/replay`, { as: 'operator2', body: { force: true } })).status, 403)
    const sampled = await refusedRows('operator2')
    assert.ok(sampled.length <= 2 * refusalSamplerDefaults.perSource, `${sampled.length} rows for 31 refusals`)
    // A 401 flood: counted, a handful of rows.
    const bad = `llt_${'A'.repeat(43)}`
    for (let i = 0; i < 300; i++) assert.equal((await f.call('GET', '/v1/records', { token: bad })).status, 401)
    const failed = ((await f.call('GET', '/v1/audit?action=auth.failed&limit=1000', { as: 'admin' })).body.entries as unknown[]).length
    assert.ok(failed >= 1 && failed <= 2 * refusalSamplerDefaults.perSource, `${failed} auth.failed rows for 300 refusals`)
    const counted = (await registry.getSingleMetric('lifeline_dlq_api_refusals_total')!.get()).values
    const of = (status: number) => counted.filter((v) => v.labels.status === String(status)).reduce((n, v) => n + v.value, 0)
    assert.deepEqual([of(401), of(403), of(409)], [300, 33, 1])
  })

  // ---- finding 10: hostile bodies and internal error text ----
  test(`${kind}: a deeply nested body is a 400, never a 500 (finding 10)`, async (t) => {
    const f = await apiFixture(t, kind)
    for (const depth of [1000, 100_000]) {
      const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`
      for (const [path, raw] of [
        [`/v1/records/${f.ids.a}/edit`, `{"value":${nested}}`],
        ['/v1/redrives', `{"filter":{"topic":${nested}},"dryRun":true}`],
      ] as const) {
        const r = await f.call('POST', path, { as: 'operator', raw })
        assert.equal(r.status, 400, `${path} at depth ${depth}: ${JSON.stringify(r.body).slice(0, 300)}`)
        assert.match(errorOf(r)!.message, /nest/)
      }
    }
    // A value nested within the limit is fine.
    assert.equal((await f.call('POST', `/v1/records/${f.ids.a}/edit`, { as: 'operator', body: { value: { a: { b: { c: [[[1]]] } } } } })).status, 200)
  })

  test(`${kind}: Kafka's error text reaches the operator who asked, never a viewer (finding 10)`, async (t) => {
    const listed = await topic(t, { prefix: 'replays' })
    const f = await apiFixture(t, kind, { api: { replayTopics: [listed] } })
    const failed = await f.call('POST', `/v1/records/${f.ids.a}/replay`, { as: 'operator', body: { target: { kind: 'topic', topic: listed, partition: 99 } } })
    assert.equal(failed.status, 503, JSON.stringify(failed.body))
    assert.match(errorOf(failed)!.code, /^LL_KAFKA_/)
    const kafkaText = errorOf(failed)!.message.replace(/^Kafka: /, '')
    assert.ok(kafkaText.length > 0)
    const seen = JSON.stringify((await f.call('GET', `/v1/records/${f.ids.a}`, { as: 'viewer' })).body)
    assert.ok(!seen.includes(kafkaText), `the viewer saw Kafka's text: ${seen}`)
    assert.match(seen, /send failed: LL_KAFKA_/)
    const audit = JSON.stringify((await f.call('GET', `/v1/audit?target=record:${f.ids.a}`, { as: 'approver' })).body)
    assert.ok(!audit.includes(kafkaText), 'the audit log keeps the code, the processor log the text')
  })
}
