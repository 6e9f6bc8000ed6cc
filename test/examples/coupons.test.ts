/**
 * The coupons example (examples/coupons) against a real Redis (its own redis-server), the real broker and
 * the database: no oversell under concurrency, compensation on final failure (retried and recorded), and
 * reconciliation of injected drift.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { connectRedis, type RedisClient } from '../../examples/lib/redis.js'
import { couponEventId, couponKeyList, couponKeys, couponSnapshot, createCoupon, createCouponConsumer, createCouponIssuer, issueScript, restoreScript, setupCoupons, type CouponIssued, type IssueOutcome } from '../../examples/coupons/index.js'
import { couponReconciliations } from '../../examples/coupons/reconcile.js'
import { listFailures, settleFailure } from '../../src/effects/compensation.js'
import { listReconciliationFindings, runReconciliation, type AnyReconciliation } from '../../src/effects/reconcile.js'
import { dlqTopicName } from '../../src/runtime/options.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { stateDatabase } from '../helpers/db.js'
import { admin, brokers, defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { fastRetry } from '../helpers/lifeline.js'
import { redisCommand, startRedis } from '../helpers/redis.js'

/** A client of the test's own redis-server, closed when the test ends. */
function client(t: TestContext, port: number): RedisClient {
  const c = connectRedis({ url: `redis://127.0.0.1:${port}` })
  defer(t, () => c.close())
  return c
}

async function setup(t: TestContext, partitions = 2) {
  const server = await startRedis(t)
  const redis = client(t, server.port)
  const db = await stateDatabase(t)
  await setupCoupons(db)
  const source = await topic(t, { partitions })
  const a = admin(t)
  defer(t, () => a.deleteTopics([dlqTopicName('coupons-example', source)]).catch(() => undefined))
  return { server, redis, db, source, groupId: randomName('coupons') }
}

async function issueRows(db: SqlExecutor, couponId: string): Promise<string[]> {
  const { rows } = await db.query<{ user_id: string }>('select user_id from example_coupon_issues where coupon_id = $1 order by user_id', [couponId])
  return rows.map((r) => r.user_id)
}

async function members(redis: RedisClient, couponId: string): Promise<string[]> {
  return ((await redis.command(['SMEMBERS', couponKeys(couponId).issued])) as string[]).sort()
}

describe('examples/coupons', () => {
  test('concurrent requests never oversell: exactly the stock is issued, once per user, and every issue lands in the DB once', async (t) => {
    const { server, redis, db, source, groupId } = await setup(t)
    const stock = 50
    await createCoupon(db, redis, 'launch', stock)
    const p = producer(t)
    // Eight connections issuing at once: 240 requests from 160 users, 80 of whom ask twice.
    const issuers = Array.from({ length: 8 }, () => createCouponIssuer({ redis: client(t, server.port), producer: p, topic: source }))
    const requests = Array.from({ length: 240 }, (_, i) => `user-${i % 160}`)
    const outcomes = await Promise.all(requests.map((userId, i) => issuers[i % issuers.length]!.issue('launch', userId)))
    const tally = (o: IssueOutcome) => outcomes.filter((x) => x === o).length
    assert.equal(tally('issued'), stock, 'exactly the stock is issued')
    assert.equal(tally('issued') + tally('sold-out') + tally('already-issued'), requests.length)
    const issuedUsers = requests.filter((_, i) => outcomes[i] === 'issued')
    assert.equal(new Set(issuedUsers).size, stock, 'no user got two coupons')

    // The same events published again (a producer retry, a replay): the inbox skips them.
    await p.send(issuedUsers.slice(0, 10).map((userId) => ({ topic: source, key: `launch:${userId}`, value: JSON.stringify({ couponId: 'launch', userId, requestedAt: new Date().toISOString() } satisfies CouponIssued), headers: [{ key: 'event-id', value: Buffer.from(couponEventId('launch', userId)) }] })))

    const { consumer, inbox } = createCouponConsumer({ brokers: brokers(), db, redis, topic: source, groupId, retry: fastRetry, commitIntervalMs: 100 })
    defer(t, () => consumer.close())
    await consumer.start()
    await waitFor(() => inbox.stats().applied + inbox.stats().duplicates >= stock + 10, 'every event handled', 30_000)
    assert.deepEqual(inbox.stats(), { applied: stock, duplicates: 10, ignored: 0 })
    assert.deepEqual(await couponSnapshot(db, redis, 'launch'), { couponId: 'launch', total: stock, rows: stock, redisStock: 0, redisIssued: stock })
    assert.deepEqual(await issueRows(db, 'launch'), [...issuedUsers].sort(), 'the DB holds exactly the users Redis issued to')
    assert.deepEqual(await members(redis, 'launch'), [...issuedUsers].sort())
    assert.equal(await createCouponIssuer({ redis, producer: p, topic: source }).issue('launch', 'latecomer'), 'sold-out')
  })

  test('a final failure gives the stock back: a compensation that fails once is retried, and every attempt is recorded', async (t) => {
    const { server, redis, db, source, groupId } = await setup(t)
    await createCoupon(db, redis, 'spring', 10)
    // A coupon Redis was loaded with but the DB does not know: its issue row violates the foreign key.
    await redis.command(['SET', couponKeys('ghost').stock, 3])
    const p = producer(t)
    const issuer = createCouponIssuer({ redis, producer: p, topic: source })
    assert.equal(await issuer.issue('ghost', 'user-1'), 'issued')
    assert.equal(await issuer.issue('spring', 'user-10'), 'issued') // fails in the handler on every attempt (injected)
    assert.equal(await issuer.issue('spring', 'user-11'), 'issued')

    // Redis refuses writes until the test sees the first compensation attempt fail.
    await redisCommand(server.port, ['CONFIG', 'SET', 'min-replicas-to-write', '1'])
    const { consumer, inbox } = createCouponConsumer({
      brokers: brokers(), db, redis, topic: source, groupId, retry: fastRetry, commitIntervalMs: 100,
      compensation: { maxAttempts: 5, backoffMs: 2000 },
      failWhen: (e) => e.userId === 'user-10',
    })
    defer(t, () => consumer.close())
    const deadLetters: Array<{ errorCode: string; attempts: number }> = []
    const errors: unknown[] = []
    consumer.on('dead-letter', (e) => deadLetters.push(e))
    consumer.on('error', (e) => errors.push(e))
    await consumer.start()
    const failures = () => listFailures(db, { consumer: groupId })
    await waitFor(async () => {
      const fs = await failures()
      return fs.length === 2 && fs.every((f) => f.compensations[0]!.attempts.length >= 1)
    }, 'both compensations to fail once', 30_000)
    await redisCommand(server.port, ['CONFIG', 'SET', 'min-replicas-to-write', '0'])
    await waitFor(async () => (await failures()).every((f) => f.compensations[0]!.status === 'done'), 'both compensations to succeed on their retry', 30_000)

    const byUser = new Map((await failures()).map((f) => [f.key!.toString().split(':')[1]!, f]))
    assert.deepEqual([...byUser.keys()].sort(), ['user-1', 'user-10'])
    for (const [user, f] of byUser) {
      assert.equal(f.status, 'PENDING', `${user}: waits for an operator`)
      assert.equal(f.topic, source)
      assert.equal(f.eventId, couponEventId(user === 'user-1' ? 'ghost' : 'spring', user))
      assert.equal(f.compensations.length, 1)
      const [c] = f.compensations as [(typeof f.compensations)[number]]
      assert.equal(c.name, 'restore-redis-stock')
      assert.equal(c.attempts.length, 2, `${user}: one failed attempt, one retry: ${JSON.stringify(c.attempts)}`)
      assert.equal(c.attempts[0]!.ok, false)
      assert.match(c.attempts[0]!.error ?? '', /NOREPLICAS/)
      assert.equal(c.attempts[1]!.ok, true)
    }
    assert.match(byUser.get('user-1')!.errorMessage, /23503/, 'the foreign-key violation is the recorded error')
    assert.match(byUser.get('user-10')!.errorMessage, /injected failure/)
    assert.equal(deadLetters.length, 2)
    assert.equal(deadLetters.find((d) => d.attempts === 1)?.errorCode, 'LL_DB_QUERY', 'the constraint violation is permanent: dead-lettered at once')
    assert.equal(deadLetters.find((d) => d.attempts === fastRetry.maxAttempts)?.errorCode, 'UNKNOWN', 'the injected failure is retried in place first')
    assert.deepEqual(errors, [], 'no hook gave up')
    assert.equal(inbox.stats().applied, 1)

    // The stock is back where it was before the failed issues; the user that succeeded keeps the coupon.
    assert.deepEqual(await couponSnapshot(db, redis, 'ghost'), { couponId: 'ghost', total: null, rows: 0, redisStock: 3, redisIssued: 0 })
    assert.deepEqual(await couponSnapshot(db, redis, 'spring'), { couponId: 'spring', total: 10, rows: 1, redisStock: 9, redisIssued: 1 })
    assert.deepEqual(await members(redis, 'spring'), ['user-11'])
    assert.equal(await issuer.issue('spring', 'user-10'), 'issued', 'the user can ask again')

    // The operator settles the failure records (seed 003: PENDING → RESOLVED / IGNORED).
    const resolved = await settleFailure(db, byUser.get('user-1')!.id, { status: 'RESOLVED', actor: 'ops@example', reason: 'coupon ghost was never launched; stock restored' })
    assert.equal(resolved.status, 'RESOLVED')
    assert.equal(resolved.resolvedBy, 'ops@example')
    const ignored = await settleFailure(db, byUser.get('user-10')!.id, { status: 'IGNORED', actor: 'ops@example', reason: 'test fault' })
    assert.equal(ignored.status, 'IGNORED')
    assert.deepEqual(await listFailures(db, { consumer: groupId, status: 'PENDING' }), [])
  })

  test('reconciliation finds exactly the injected drift (dry run), repairs it, and a second run is clean', async (t) => {
    const { redis, db, source, groupId } = await setup(t)
    const p = producer(t)
    const issuer = createCouponIssuer({ redis, producer: p, topic: source })
    await createCoupon(db, redis, 'a', 10)
    await createCoupon(db, redis, 'b', 5)
    await createCoupon(db, redis, 'c', 4)
    for (let i = 0; i < 6; i++) assert.equal(await issuer.issue('a', `a-user-${i}`), 'issued')
    for (let i = 0; i < 3; i++) assert.equal(await issuer.issue('b', `b-user-${i}`), 'issued')
    const { consumer, inbox } = createCouponConsumer({ brokers: brokers(), db, redis, topic: source, groupId, retry: fastRetry, commitIntervalMs: 100 })
    defer(t, () => consumer.close())
    await consumer.start()
    await waitFor(() => inbox.stats().applied === 9, 'the issues to reach the DB', 30_000)
    await consumer.close()

    // Drift: the issuer died between Redis and Kafka ten minutes ago (a: ghost-1 in Redis, no row), one that
    // is still in flight (a: fresh-1, just now: left alone), Redis lost an issue (b: b-user-0 has a row, is
    // not in the set, its stock is back), the b counter lost two decrements' worth, and c's stock key is gone.
    assert.equal(await issueScript.run(redis, couponKeyList('a'), ['ghost-1', Date.now() - 600_000]), 1)
    assert.equal(await issueScript.run(redis, couponKeyList('a'), ['fresh-1', Date.now()]), 1)
    assert.equal(await restoreScript.run(redis, couponKeyList('b'), ['b-user-0']), 1)
    await redis.command(['DECRBY', couponKeys('b').stock, 2])
    await redis.command(['DEL', couponKeys('c').stock])

    const { issues, stock } = couponReconciliations({ redis, graceMs: 60_000, batchSize: 2 })
    const findings = async (def: AnyReconciliation) => {
      const run = await runReconciliation(def, { db })
      const found = await listReconciliationFindings(db, run.id)
      return { run, found: found.map((f) => `${f.kind} ${f.key}`).sort(), all: found }
    }
    const snapshot = async () => Promise.all(['a', 'b', 'c'].map(async (c) => ({ ...(await couponSnapshot(db, redis, c)), members: await members(redis, c) })))
    const before = await snapshot()

    // 1. Dry runs: exactly the injected drift, nothing changed.
    const dryIssues = await findings(issues)
    assert.deepEqual(dryIssues.found, ['extra a/ghost-1', 'missing b/b-user-0'])
    assert.equal(dryIssues.run.repair, false)
    assert.equal(dryIssues.run.checked, 9 + 1, 'nine rows compared, one extra member')
    assert.ok(dryIssues.run.batches > 2, 'read in several batches')
    const dryStock = await findings(stock)
    assert.deepEqual(dryStock.found, ['different b', 'missing c'])
    assert.deepEqual(dryStock.all.find((f) => f.key === 'b')?.diff, { stock: 1, expected: 3, issued: 2, total: 5 })
    assert.deepEqual(await snapshot(), before, 'a dry run changes nothing')

    // 2. Repair: the issued sets first, then the counters.
    const repairIssues = await runReconciliation(issues, { db, repair: true })
    assert.deepEqual([repairIssues.missing, repairIssues.extra, repairIssues.different, repairIssues.repaired, repairIssues.repairFailed], [1, 1, 0, 2, 0])
    const repairStock = await runReconciliation(stock, { db, repair: true })
    assert.deepEqual([repairStock.missing, repairStock.different, repairStock.repaired, repairStock.repairFailed], [1, 1, 2, 0])
    assert.ok((await listReconciliationFindings(db, repairStock.id)).every((f) => f.repaired))

    // 3. Clean runs, and Redis agrees with the DB (plus the in-flight fresh-1, counted in a's stock).
    assert.deepEqual((await findings(issues)).found, [])
    assert.deepEqual((await findings(stock)).found, [])
    const after = await snapshot()
    assert.deepEqual(after[0], { couponId: 'a', total: 10, rows: 6, redisStock: 3, redisIssued: 7, members: [...(await issueRows(db, 'a')), 'fresh-1'].sort() })
    assert.deepEqual(after[1], { couponId: 'b', total: 5, rows: 3, redisStock: 2, redisIssued: 3, members: await issueRows(db, 'b') })
    assert.deepEqual(after[2], { couponId: 'c', total: 4, rows: 0, redisStock: 4, redisIssued: 0, members: [] })
  })
})
