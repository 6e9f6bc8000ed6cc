import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import { INDEXER_ACTOR, SYSTEM_ACTOR_NAMES } from '../../src/dlq/actors.js'
import { ACTION_ROLES, createToken, hashToken, listTokens, mayPerform, parseExpiry, revokeToken, roleAtLeast, ROLES, verifyToken, type Action, type Role } from '../../src/dlq/auth.js'
import { appendAudit, listAudit } from '../../src/dlq/audit.js'
import { isLifelineError } from '../../src/errors.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'

async function db(t: TestContext, kind: SqlExecutor['kind']): Promise<SqlExecutor> {
  const d = await freshDatabase(t, kind)
  await migrateLifeline(d)
  return d
}

test('roles are ordered viewer < operator < approver < admin, and every action names its role', () => {
  assert.deepEqual(ROLES, ['viewer', 'operator', 'approver', 'admin'])
  for (const [i, role] of ROLES.entries()) {
    for (const [j, other] of ROLES.entries()) assert.equal(roleAtLeast(role, other), i >= j, `${role} >= ${other}`)
  }
  const expected: Record<Role, Action[]> = {
    viewer: ['read'],
    operator: ['record.replay', 'record.edit', 'record.replay-edited', 'record.discard', 'record.resolve', 'redrive.preview', 'redrive.create', 'job.pause', 'job.cancel', 'job.resume', 'key.release', 'failure.settle'],
    approver: ['approval.decide', 'audit.read'],
    admin: ['token.manage'],
  }
  assert.deepEqual(Object.keys(ACTION_ROLES).sort(), Object.values(expected).flat().sort())
  for (const [needed, actions] of Object.entries(expected) as Array<[Role, Action[]]>) {
    for (const action of actions) {
      assert.equal(ACTION_ROLES[action], needed)
      for (const role of ROLES) assert.equal(mayPerform(role, action), roleAtLeast(role, needed), `${role} may ${action}`)
    }
  }
})

test('token expiry: durations and ISO times, in the future, at most 10 years away', () => {
  const now = Date.UTC(2026, 0, 1)
  assert.equal(parseExpiry('90d', now).getTime(), now + 90 * 86_400_000)
  assert.equal(parseExpiry('12h', now).getTime(), now + 12 * 3_600_000)
  assert.equal(parseExpiry('30m', now).getTime(), now + 30 * 60_000)
  assert.equal(parseExpiry('2w', now).getTime(), now + 14 * 86_400_000)
  assert.equal(parseExpiry('2026-03-01T00:00:00Z', now).toISOString(), '2026-03-01T00:00:00.000Z')
  for (const bad of ['0d', '-1d', '1y', '90', 'd', 'soon', '2025-12-31T00:00:00Z', '3650w', '', 42, null]) {
    assert.throws(() => parseExpiry(bad, now), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.field === 'expires', String(bad))
  }
})

test('system actor names include every actor the processor writes', () => {
  assert.ok(SYSTEM_ACTOR_NAMES.includes(INDEXER_ACTOR))
  for (const name of ['indexer', 'processor', 'anonymous', 'redrive', 'cli']) assert.ok(SYSTEM_ACTOR_NAMES.includes(name), name)
})

for (const kind of databaseKinds()) {
  test(`${kind}: a token is shown once, stored as its SHA-256 only, and verifies to its name and role`, async (t) => {
    const d = await db(t, kind)
    const created = await createToken(d, { name: 'alice', role: 'operator', owner: 'alice@example.com' })
    assert.match(created.token, /^llt_[A-Za-z0-9_-]{43}$/)
    assert.equal(Buffer.from(created.token.slice(4), 'base64url').length, 32)
    assert.equal(created.name, 'alice')
    assert.equal(created.role, 'operator')
    const { rows } = await d.query('select * from lifeline_dlq_tokens')
    assert.equal(rows.length, 1)
    assert.equal(rows[0]!.token_hash, createHash('sha256').update(created.token).digest('hex'))
    assert.equal(rows[0]!.token_hash, hashToken(created.token))
    assert.ok(!JSON.stringify(rows).includes(created.token), 'the clear token is not stored')

    assert.deepEqual(await verifyToken(d, created.token), { name: 'alice', role: 'operator', owner: 'alice@example.com', tokenId: created.id })
    const other = await createToken(d, { name: 'bob', role: 'admin', owner: 'bob' })
    assert.notEqual(other.token, created.token)
    assert.deepEqual(await verifyToken(d, other.token), { name: 'bob', role: 'admin', owner: 'bob', tokenId: other.id })

    // Anything else is null, never an error.
    const wrong = `${created.token.slice(0, -1)}${created.token.endsWith('A') ? 'B' : 'A'}`
    for (const bad of [wrong, '', 'llt_', created.token.slice(4), `${created.token} `, hashToken(created.token), "llt_' or 1=1 --", null, undefined, 42, [created.token], { token: created.token }]) {
      assert.equal(await verifyToken(d, bad), null, `verifyToken(${JSON.stringify(bad)})`)
    }
  })

  test(`${kind}: revoked tokens stop verifying; names are unique; lists never hold hashes`, async (t) => {
    const d = await db(t, kind)
    const a = await createToken(d, { name: 'ci.bot', role: 'viewer', owner: 'ci' })
    await createToken(d, { name: 'carol@example.com', role: 'approver', owner: 'carol@example.com' })
    await assert.rejects(createToken(d, { name: 'ci.bot', role: 'admin', owner: 'ci' }), (err) => isLifelineError(err, 'LL_DLQ_CONFLICT'))
    const revoked = await revokeToken(d, 'ci.bot')
    assert.ok(revoked.revokedAt instanceof Date, 'revokedAt')
    assert.equal(await verifyToken(d, a.token), null)
    await assert.rejects(revokeToken(d, 'ci.bot'), (err) => isLifelineError(err, 'LL_NOT_FOUND'))
    await assert.rejects(revokeToken(d, 'nobody'), (err) => isLifelineError(err, 'LL_NOT_FOUND'))
    // A revoked token's name stays taken (its audit rows keep meaning one holder).
    await assert.rejects(createToken(d, { name: 'ci.bot', role: 'viewer', owner: 'ci' }), (err) => isLifelineError(err, 'LL_DLQ_CONFLICT'))

    const all = await listTokens(d)
    assert.deepEqual(all.map((x) => [x.name, x.role, x.revokedAt !== null]), [['ci.bot', 'viewer', true], ['carol@example.com', 'approver', false]])
    for (const x of all) assert.deepEqual(Object.keys(x).sort(), ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'owner', 'revokedAt', 'role'])
    assert.ok(!/[0-9a-f]{64}/.test(JSON.stringify(all)), 'no hash in the list')
    assert.deepEqual((await listTokens(d, { active: true })).map((x) => x.name), ['carol@example.com'])
  })

  test(`${kind}: bad names and roles are refused`, async (t) => {
    const d = await db(t, kind)
    for (const name of ['', ' ', 'a b', "x'; drop table lifeline_dlq_tokens; --", 'x'.repeat(101), '-lead', 'nul\u0000', 42, null]) {
      await assert.rejects(createToken(d, { name: name as string, role: 'viewer', owner: 'x' }), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'), `name ${JSON.stringify(name)}`)
    }
    for (const role of ['root', '', 'Admin', null, ['admin']]) {
      await assert.rejects(createToken(d, { name: 'ok', role: role as Role, owner: 'x' }), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'), `role ${JSON.stringify(role)}`)
    }
    assert.deepEqual(await listTokens(d), [])
  })

  test(`${kind}: the audit log is append-only: the database refuses UPDATE, DELETE and TRUNCATE`, async (t) => {
    const d = await db(t, kind)
    await appendAudit(d, { actor: 'alice', role: 'operator', action: 'record.replay', target: 'record:1', detail: { reason: 'nul \u0000 and a lone \ud800' } })
    await appendAudit(d, { actor: 'anonymous', action: 'auth.failed', target: 'GET /v1/records' })
    const refused = (err: unknown) => isLifelineError(err, 'LL_DB_QUERY') && /append-only/.test(String((err as Error & { cause?: unknown }).cause ?? err.message) + err.message)
    await assert.rejects(d.query(`update lifeline_dlq_audit set actor = 'mallory'`), refused)
    await assert.rejects(d.query('delete from lifeline_dlq_audit'), refused)
    await assert.rejects(d.query('truncate lifeline_dlq_audit'), refused)
    await assert.rejects(d.transaction(async (tx) => tx.query(`update lifeline_dlq_audit set detail = '{}' where id = 1`)), refused)
    const rows = await listAudit(d)
    assert.deepEqual(rows.map((r) => [r.actor, r.action, r.target]), [['alice', 'record.replay', 'record:1'], ['anonymous', 'auth.failed', 'GET /v1/records']])
    assert.equal(rows[0]!.detail.reason, 'nul \uFFFD and a lone \uFFFD')
    assert.equal(rows[0]!.role, 'operator')

    assert.deepEqual((await listAudit(d, { actor: 'anonymous' })).map((r) => r.action), ['auth.failed'])
    assert.deepEqual((await listAudit(d, { order: 'desc', limit: '1' })).map((r) => r.actor), ['anonymous'])
    assert.deepEqual((await listAudit(d, { afterId: rows[0]!.id })).map((r) => r.actor), ['anonymous'])
    for (const bad of [{ limit: '0' }, { limit: '1e9' }, { from: 'yesterday' }, { from: '2025-13-45' }, { actor: ['a', 'b'] }, { bogus: '1' }, { order: 'sideways' }, { afterId: '-1' }]) {
      await assert.rejects(listAudit(d, bad), (err) => isLifelineError(err, 'LL_ARGUMENT_INVALID'), JSON.stringify(bad))
    }
  })
}
