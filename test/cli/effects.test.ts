/** `lifeline ignored list` and `lifeline failures list|resolve|ignore`, run in this process against a PGlite directory. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { recordFailure } from '../../src/effects/compensation.js'
import { openPglite } from '../../src/store/open.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { pgliteDataDir } from '../helpers/db.js'

/** Runs `lifeline <args>` in this process and returns what it printed. */
const run = async (args: string[]): Promise<string> => (await runCli(args)).out

test('lifeline ignored list and lifeline failures list|resolve|ignore', async (t) => {
  const dir = await pgliteDataDir(t)
  const db = await openPglite({ dataDir: dir })
  await migrateLifeline(db)
  await db.query(`insert into lifeline_ignored_events (consumer, event_id, topic, partition, "offset", entity, entity_id, reason) values ('orders', 'evt-52', 'orders', 1, 52, 'order', 'o-17', 'transition SHIPPED → PAID not allowed'), ('billing', 'evt-9', 'pay', 0, 9, 'account', 'a-1', 'stale version: expected 2, the row is at 3')`)
  const f1 = await recordFailure(db, { consumer: 'coupons', eventId: 'evt-1', topic: 'coupons', partition: 0, offset: 5, key: Buffer.from('c-1'), errorCode: '23505', errorMessage: 'duplicate key', compensations: ['restore-stock'] })
  const f2 = await recordFailure(db, { consumer: 'coupons', topic: 'coupons', partition: 0, offset: 6, key: null, errorCode: 'E_X', errorMessage: 'boom' })
  await db.close()

  const ignored = await run(['ignored', 'list', '--entity', 'order', '--database', dir])
  assert.match(ignored, /o-17 .*orders\[1\]@52 .*transition SHIPPED → PAID not allowed/)
  assert.doesNotMatch(ignored, /a-1/)
  const json = JSON.parse(await run(['ignored', 'list', '--consumer', 'billing', '--json', '--database', dir])) as Array<{ reason: string }>
  assert.deepEqual(json.map((r) => r.reason), ['stale version: expected 2, the row is at 3'])
  await assert.rejects(run(['ignored', 'list', '--limit', '0', '--database', dir]), /--limit must be an integer from 1 to 10000/)

  const listed = await run(['failures', 'list', '--database', dir])
  assert.match(listed, new RegExp(`${f1.id} +PENDING +coupons +coupons\\[0\\]@5 +c-1 +23505: duplicate key +restore-stock=pending\\(0\\)`))
  assert.match(await run(['failures', 'resolve', f1.id, '--reason', 'stock fixed by hand', '--actor', 'alice', '--database', dir]), /failure \d+ is RESOLVED \(by alice: stock fixed by hand\)/)
  assert.match(await run(['failures', 'ignore', f2.id, '--reason', 'test data', '--database', dir]), /is IGNORED/)
  await assert.rejects(run(['failures', 'ignore', f1.id, '--reason', 'again', '--database', dir]), { code: 'LL_NOT_FOUND', message: /already RESOLVED/ })
  await assert.rejects(run(['failures', 'resolve', 'abc', '--reason', 'x', '--database', dir]), { code: 'LL_ARGUMENT_INVALID' })
  await assert.rejects(run(['failures', 'list', '--status', 'DONE', '--database', dir]), /--status must be PENDING, RESOLVED or IGNORED/)
  assert.match(await run(['inbox', 'cleanup', '--consumer', 'orders', '--older-than', '14d', '--database', dir]), /deleted 0 claim\(s\) of orders older than 14d/)
  await assert.rejects(run(['inbox', 'cleanup', '--consumer', 'orders', '--older-than', 'soon', '--database', dir]), /--older-than must be a duration/)
  const pending = JSON.parse(await run(['failures', 'list', '--status', 'pending', '--json', '--database', dir])) as unknown[]
  assert.deepEqual(pending, [])
})
