/**
 * The audit log's hash chain (src/dlq/audit.ts) and the database roles docs/operations.md recommends: the
 * writer role serves the API and verifies the chain, and cannot alter, update, delete or truncate the log.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { createDlqApi } from '../../src/dlq/api.js'
import { appendAudit, AUDIT_GENESIS, auditHash, verifyAudit } from '../../src/dlq/audit.js'
import { createToken } from '../../src/dlq/auth.js'
import { isLifelineError } from '../../src/errors.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { openPostgres } from '../../src/store/postgres.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, databaseUrl, defer, freshDatabase } from '../helpers/db.js'
import { item } from '../helpers/dlq-api.js'
import { indexRecords } from '../../src/dlq/records.js'
import { producer } from '../helpers/kafka.js'

test('an audit row hash covers the previous hash and every field, whatever the key order of its detail', () => {
  const row = { id: '7', actor: 'alice', role: 'operator', action: 'record.discard', target: 'record:1', detail: { b: 1, a: { y: [1, 'x'], x: null } }, at: new Date(Date.UTC(2026, 0, 1)) }
  const h = auditHash(AUDIT_GENESIS, row)
  assert.match(h, /^[0-9a-f]{64}$/)
  assert.equal(auditHash(AUDIT_GENESIS, { ...row, detail: { a: { x: null, y: [1, 'x'] }, b: 1 } }), h)
  for (const changed of [{ id: '8' }, { actor: 'bob' }, { role: null }, { action: 'record.resolve' }, { target: 'record:2' }, { detail: { b: 2, a: { y: [1, 'x'], x: null } } }, { at: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 1)) }]) {
    assert.notEqual(auditHash(AUDIT_GENESIS, { ...row, ...changed }), h, JSON.stringify(changed))
  }
  assert.notEqual(auditHash('1'.repeat(64), row), h)
})

for (const kind of databaseKinds()) {
  test(`${kind}: appends from concurrent transactions form one chain in id order (finding 7)`, async (t) => {
    const db = await freshDatabase(t, kind)
    await migrateLifeline(db)
    await Promise.all(Array.from({ length: 20 }, (_, i) => db.transaction(async (tx) => appendAudit(tx, { actor: `a${i}`, action: 'x', detail: { i } }))))
    const result = await verifyAudit(db)
    assert.deepEqual([result.ok, result.checked, result.unchained], [true, 20, 0], JSON.stringify(result))
  })
}

/** The SQL block of docs/operations.md § DLQ database roles, for a role named `role`. */
function documentedGrants(role: string): string[] {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')
  const section = doc.slice(doc.indexOf('## DLQ database roles'))
  const sql = /```sql\n([\s\S]*?)```/.exec(section)?.[1]
  assert.ok(sql, 'the roles section has an sql block')
  return sql.replaceAll('lifeline_dlq_writer', role).split(';').map((x) => x.trim()).filter(Boolean)
}

test('postgres: the documented writer role serves the API and verifies the chain, but cannot alter, update, delete or truncate the audit log (finding 7)', { skip: !databaseKinds().includes('postgres') }, async (t) => {
  const owner = await freshDatabase(t, 'postgres')
  await migrateLifeline(owner)
  const role = `lifeline_writer_${randomBytes(4).toString('hex')}`
  const admin = async (sql: string) => {
    const a = await openPostgres({ url: process.env.DATABASE_URL!, poolSize: 1 })
    try {
      await a.query(sql)
    } finally {
      await a.close()
    }
  }
  // Cleanup order: the writer's connection closes, its privileges go, then the role (before the database is dropped).
  defer(t, async () => {
    await owner.query(`drop owned by ${role}`)
    await admin(`drop role if exists ${role}`)
  })
  for (const statement of documentedGrants(role)) await owner.query(statement)
  const url = new URL(databaseUrl(owner))
  url.username = role
  const writer: SqlExecutor = await openPostgres({ url: url.href, poolSize: 2 })
  defer(t, () => writer.close())
  // The owner made the records and the token; the writer serves.
  const id = (await indexRecords(owner, [item("orders", 0, "k1", "{\"a\":1}")]))[0]!.id
  const { token } = await createToken(owner, { name: 'op', role: 'operator', owner: 'olga' })
  const app = createDlqApi({ db: writer, deps: { db: writer, producer: producer(t) } })
  const res = await app.request(`/v1/records/${id}/discard`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'dup' }) })
  assert.equal(res.status, 200, await res.text())
  const verified = await verifyAudit(writer)
  assert.ok(verified.ok && verified.checked >= 1, JSON.stringify(verified))
  const refused = (pattern: RegExp) => (err: unknown) => isLifelineError(err, 'LL_DB_QUERY') && pattern.test(`${(err as Error).message} ${String((err as Error & { cause?: unknown }).cause)}`)
  await assert.rejects(writer.query('alter table lifeline_dlq_audit disable trigger lifeline_dlq_audit_no_update'), refused(/must be owner/))
  await assert.rejects(writer.query(`update lifeline_dlq_audit set detail = '{}'`), refused(/permission denied/))
  await assert.rejects(writer.query('delete from lifeline_dlq_audit'), refused(/permission denied/))
  await assert.rejects(writer.query('truncate lifeline_dlq_audit'), refused(/permission denied/))
  assert.ok((await verifyAudit(writer)).ok)
})
