/**
 * The DLQ API's security rules (issue 13), each as black-box requests against the real app (hono's
 * app.request(), in process) with a real producer on the test broker, on both database kinds: who may
 * replay where, four-eyes by owner, approvals that expire or die with their requester's token, the bulk
 * threshold per owner over a window, what a viewer sees of approvals, and tokens (owner, expiry, last use).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { databaseKinds } from '../helpers/db.js'
import { apiFixture, type ApiResponse } from '../helpers/dlq-api.js'

const errorOf = (r: ApiResponse) => r.body.error
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
}
