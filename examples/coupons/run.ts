/**
 * Runs the coupons example end to end against real Redis, Kafka and a database:
 *
 *   KAFKA_BOOTSTRAP=127.0.0.1:9092 [REDIS_URL=redis://127.0.0.1:6379] [DATABASE_URL=postgres://...] \
 *     node --import tsx examples/coupons/run.ts [stock] [requests]
 *
 * Without DATABASE_URL the embedded PGlite database in `.lifeline/db` (or LIFELINE_DATA_DIR) is used.
 * 1. `requests` (default 400) concurrent requests from `requests * 0.6` users for a coupon of `stock`
 *    (default 100): exactly `stock` coupons are issued, none twice.
 * 2. The consumer writes the issue rows; the event of user-10 fails on every attempt (injected, as in the
 *    seed): dead-lettered, its stock given back in Redis by the compensation, a PENDING failure record.
 * 3. Drift is injected (an issuer that died between Redis and Kafka, a stray decrement), then the
 *    reconciliations run dry, repair, and run clean.
 */
import { listReconciliationFindings, runReconciliation, type AnyReconciliation } from '../../src/effects/reconcile.js'
import { createProducer } from '../../src/kafka/index.js'
import { createLogger } from '../../src/logger.js'
import { databaseFromEnv, describeDatabase } from '../../src/store/index.js'
import { brokersFromEnv, ensureTopic, waitUntil } from '../lib/env.js'
import { connectRedis } from '../lib/redis.js'
import { couponFailures, couponKeyList, couponKeys, couponSnapshot, createCoupon, createCouponConsumer, createCouponIssuer, issueScript, setupCoupons, type IssueOutcome } from './index.js'
import { couponReconciliations } from './reconcile.js'

const TOPIC = 'lifeline-examples.coupons'
const GROUP = 'examples-coupons'
const stock = Number(process.argv[2] ?? 100)
const requests = Number(process.argv[3] ?? 400)
const users = Math.max(1, Math.floor(requests * 0.6))

const brokers = brokersFromEnv()
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const redis = connectRedis({ url: redisUrl })
const db = await databaseFromEnv()
console.log(`database: ${await describeDatabase(db)}; kafka: ${brokers.join(',')}; redis: ${redisUrl} (${String(await redis.command(['PING']))})`)
await setupCoupons(db)
await ensureTopic(brokers, TOPIC, 3)

// 1. The request path: a coupon per run, requests from 8 connections at once.
const coupon = `spring-${Date.now().toString(36)}`
await createCoupon(db, redis, coupon, stock)
const producer = createProducer({ brokers })
const connections = Array.from({ length: 8 }, () => connectRedis({ url: redisUrl }))
const issuers = connections.map((c) => createCouponIssuer({ redis: c, producer, topic: TOPIC }))
const asked = Array.from({ length: requests }, (_, i) => `user-${i % users}`)
const started = Date.now()
const outcomes = await Promise.all(asked.map((userId, i) => issuers[i % issuers.length]!.issue(coupon, userId)))
const tally = (o: IssueOutcome) => outcomes.filter((x) => x === o).length
console.log(`\n${requests} requests from ${users} users for ${stock} coupons in ${Date.now() - started} ms: issued ${tally('issued')}, sold out ${tally('sold-out')}, already issued ${tally('already-issued')}`)
const issuedUsers = new Set(asked.filter((_, i) => outcomes[i] === 'issued'))

// 2. The consumer; user-10's event fails on every attempt (if user-10 got a coupon).
const doomed = issuedUsers.has('user-10') ? 'user-10' : [...issuedUsers][0]!
const { consumer, inbox } = createCouponConsumer({
  brokers, db, redis, topic: TOPIC, groupId: GROUP,
  failWhen: (e) => e.couponId === coupon && e.userId === doomed,
  logger: createLogger({ name: 'coupons-example', level: process.env.LIFELINE_LOG_LEVEL ?? 'error' }),
})
consumer.on('retry', (e) => e.attempt === 1 && console.log(`  ${TOPIC}[${e.partition}]@${e.offset} failed, retrying in ${e.delayMs} ms`))
consumer.on('dead-letter', (e) => console.log(`  ${TOPIC}[${e.partition}]@${e.offset} dead-lettered to ${e.dlqTopic} after ${e.attempts} attempts (${e.errorCode})`))
await consumer.start()
console.log(`\nconsumer started; ${doomed}'s event will fail every attempt`)
const failureOf = async () => (await couponFailures(db, GROUP)).find((f) => f.key?.toString() === `${coupon}:${doomed}`)
await waitUntil(async () => (await couponSnapshot(db, redis, coupon)).rows === issuedUsers.size - 1 && (await failureOf())?.compensations[0]?.status === 'done', 'the rows and the compensation')
const failure = (await failureOf())!
console.log(`failure ${failure.id} ${failure.status}: ${failure.errorCode} ${failure.errorMessage}`)
for (const c of failure.compensations) console.log(`  compensation ${c.name}: ${c.status}, attempts ${c.attempts.map((a) => (a.ok ? 'ok' : `failed (${a.error})`)).join(', ')}`)
console.log(`inbox: ${JSON.stringify(inbox.stats())}; coupon: ${JSON.stringify(await couponSnapshot(db, redis, coupon))}`)
console.log(`(settle it with: npm run lifeline -- failures resolve ${failure.id} --reason "..." )`)
await consumer.close()

// 3. Drift, then reconciliation: dry run, repair, clean run.
await issueScript.run(redis, couponKeyList(coupon), ['crashed-before-publish', Date.now() - 600_000])
await redis.command(['DECR', couponKeys(coupon).stock])
console.log(`\ninjected drift: crashed-before-publish in Redis without a row (10 min old), one stray decrement of the stock`)
const { issues, stock: stockCheck } = couponReconciliations({ redis })
const report = async (def: AnyReconciliation, repair: boolean) => {
  const run = await runReconciliation(def, { db, repair })
  const found = await listReconciliationFindings(db, run.id)
  console.log(`${def.name} ${repair ? 'repair' : 'dry'} run ${run.id}: checked ${run.checked}, missing ${run.missing}, extra ${run.extra}, different ${run.different}, repaired ${run.repaired}`)
  for (const f of found) console.log(`  ${f.kind} ${f.key} ${f.diff === null ? '' : JSON.stringify(f.diff)}${f.repaired ? ' (repaired)' : ''}`)
}
await report(issues, false)
await report(stockCheck, false)
await report(issues, true)
await report(stockCheck, true)
await report(issues, false)
await report(stockCheck, false)
console.log(`coupon: ${JSON.stringify(await couponSnapshot(db, redis, coupon))}`)

await producer.close()
await Promise.all(connections.map((c) => c.close()))
await redis.close()
await db.close()
