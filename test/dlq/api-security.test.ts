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
}
