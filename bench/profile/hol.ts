/**
 * The hol benchmark's timeline (bench/README.md, "hol notes"): the same backlog as `npm run bench -- hol`
 * (3 partitions, 1,000 healthy keys, 1% poison on keys of their own, a 1 ms handler, concurrency 32) is
 * consumed once without failures and once with retry tiers and parking, and each run prints, per 100 ms,
 * the healthy records handled, the failures, the moves to a tier, the partitions of the source topic
 * paused and for what, and the main thread's utilisation — where a run loses its pace, and to what.
 *
 *   KAFKA_BOOTSTRAP=127.0.0.1:9092 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
 *     node --import tsx bench/profile/hol.ts [records=300000] [variants=baseline,tiers]
 *
 * Variants: `baseline`, `tiers`, and `ceiling` (no failure; a poison record's handler takes the time of its
 * three attempts).
 *
 * Each run ends with its CPU time from the first record to the last healthy one, by process (bench/lib/cpu.ts):
 * PostgreSQL's server processes, this process and its main thread, the broker, the rest, and the machine's
 * busy time.
 *
 * With `PROFILE=<dir>`, each run's main thread is CPU-profiled from its first handled record to its last
 * healthy one (`<dir>/hol-<variant>-<n>.cpuprofile`, for Chrome DevTools or a script), start-up excluded.
 * The experiments of bench/README.md's hol notes: `FETCH_WAIT_MS=<ms>` sets librdkafka's `fetch.wait.max.ms`
 * for the consumers; `NO_SOURCE_MAPS=1` turns off the source maps tsx enables (error stacks unmapped).
 *
 * @module
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAdmin, createProducer } from '../../src/kafka/index.js'
import { createConsumer } from '../../src/runtime/consumer.js'
import type { ConsumerOptions } from '../../src/runtime/options.js'
import { postgresDefaults } from '../../src/store/postgres-defaults.js'
import { cpuSnapshot, describeCpu, type CpuSnapshot } from '../lib/cpu.js'
import { benchDatabase, benchPglite } from '../lib/database.js'
import { suffix } from '../lib/topics.js'
import { ceilingAttempts, CONCURRENCY, isPoison, PARTITIONS, POISON_EVERY, produceBacklog } from '../hol.js'

const total = Number(process.argv[2] ?? 300_000)
const variants = (process.argv[3] ?? 'baseline,tiers').split(',')
const bootstrap = process.env.KAFKA_BOOTSTRAP
if (!bootstrap) throw new Error('KAFKA_BOOTSTRAP is required (lifeline dev kafka start prints it)')
const brokers = bootstrap.split(',')
const BUCKET_MS = 100
if (process.env.NO_SOURCE_MAPS) process.setSourceMapsEnabled(false)
let profiled = 0

interface Bucket { healthy: number; failed: number; tier: number; paused: Map<string, number>; elu: number }

async function runOnce(topic: string, variant: string): Promise<void> {
  // A fresh database per run on DATABASE_URL's server (default the local one), dropped after it.
  // STATE=pglite: an embedded PGlite instead (in this thread with PGLITE_THREAD=0; bench/lib/database.ts).
  const server = variant !== 'tiers' ? undefined : process.env.STATE === 'pglite' ? await benchPglite('lifeline-profile-hol') : await benchDatabase('lifeline_profile_hol', postgresDefaults.poolSize)
  const db = server?.db
  const healthyTotal = total - Math.floor(total / POISON_EVERY)
  const buckets: Bucket[] = []
  let first = 0
  let cpu0: CpuSnapshot | undefined
  let done = 0
  let last = 0
  const session = process.env.PROFILE ? new Session() : undefined
  let profiling: Promise<unknown> | undefined
  const bucket = () => {
    const i = Math.floor((performance.now() - first) / BUCKET_MS)
    while (buckets.length <= i) buckets.push({ healthy: 0, failed: 0, tier: 0, paused: new Map(), elu: 0 })
    return buckets[i]!
  }
  const options: ConsumerOptions<Buffer> = {
    ...(process.env.FETCH_WAIT_MS ? { kafkaConfig: { 'fetch.wait.max.ms': Number(process.env.FETCH_WAIT_MS) } } : {}),
    brokers, groupId: `profile-hol-${variant}-${suffix()}`, service: `hol${variant}`, topics: [topic], decoder: 'raw', concurrency: CONCURRENCY, ordering: 'key',
    handler: async ({ key }) => {
      if (first === 0) {
        first = performance.now()
        cpu0 = cpuSnapshot()
        if (session) {
          session.connect()
          profiling = session.post('Profiler.enable').then(() => session.post('Profiler.start'))
        }
      }
      await sleep(1)
      if (variant === 'ceiling' && isPoison(key)) return ceilingAttempts()
      if (variant === 'tiers' && isPoison(key)) {
        bucket().failed++
        throw new Error('poison')
      }
      bucket().healthy++
      done++
      last = performance.now()
    },
  }
  if (variant === 'tiers') Object.assign(options, { retry: { maxAttempts: 1 }, retryTopics: { delaysMs: [1000, 2000] }, state: db })
  const consumer = createConsumer(options)
  const pausedAt = new Map<string, { at: number; reason: string }>()
  const pausedMs = new Map<string, number>()
  const pauses = new Map<string, number>()
  consumer.on('paused', (p, reason) => {
    const k = `${p.topic === topic ? 'source' : p.topic.replace(topic, '')}:${reason}`
    pauses.set(k, (pauses.get(k) ?? 0) + 1)
    if (p.topic !== topic) return
    pausedAt.set(`${p.partition}`, { at: performance.now(), reason })
  })
  consumer.on('resumed', (p) => {
    if (p.topic !== topic) return
    const was = pausedAt.get(`${p.partition}`)
    if (!was || first === 0) return
    pausedAt.delete(`${p.partition}`)
    pausedMs.set(was.reason, (pausedMs.get(was.reason) ?? 0) + performance.now() - was.at)
    const b = bucket()
    b.paused.set(was.reason, (b.paused.get(was.reason) ?? 0) + 1)
  })
  consumer.on('retry-tier', () => bucket().tier++)
  let elu = performance.eventLoopUtilization()
  const timer = setInterval(() => {
    if (first === 0) return
    const now = performance.eventLoopUtilization()
    bucket().elu = performance.eventLoopUtilization(now, elu).utilization
    elu = now
  }, BUCKET_MS)
  await consumer.start()
  while (done < healthyTotal) await sleep(10)
  const cpu1 = cpuSnapshot()
  clearInterval(timer)
  if (session && profiling) {
    await profiling
    const { profile } = await session.post('Profiler.stop')
    const file = `${process.env.PROFILE}/hol-${variant}-${++profiled}.cpuprofile`
    writeFileSync(file, JSON.stringify(profile))
    session.disconnect()
    console.log(`profile: ${file}`)
  }
  await consumer.close()
  await server?.drop()
  const elapsed = last - first
  console.log(`\n${variant}: ${done} healthy in ${elapsed.toFixed(0)} ms = ${Math.round((done / elapsed) * 1000)} rec/s; source partitions paused (ms by reason): ${JSON.stringify(Object.fromEntries([...pausedMs].map(([k, v]) => [k, Math.round(v)])))}`)
  console.log(`pause calls: ${JSON.stringify(Object.fromEntries(pauses))}`)
  if (cpu0) console.log(`cpu (first record to last healthy): ${describeCpu(cpu0, cpu1)}`)
  console.log('t(ms)  healthy failed tier  resumes(reason)  elu')
  buckets.forEach((b, i) => console.log(`${String(i * BUCKET_MS).padStart(5)} ${String(b.healthy).padStart(8)} ${String(b.failed).padStart(6)} ${String(b.tier).padStart(4)}  ${JSON.stringify(Object.fromEntries(b.paused)).padEnd(16)} ${b.elu.toFixed(2)}`))
}

const admin = createAdmin({ brokers })
const producer = createProducer({ brokers })
const topic = `profile-hol-${suffix()}`
try {
  await admin.createTopics([{ topic, partitions: PARTITIONS }])
  await producer.connect()
  await produceBacklog(producer, topic, total)
  for (const v of variants) await runOnce(topic, v)
} finally {
  await producer.close()
  await admin.deleteTopics([topic]).catch(() => undefined)
  await admin.close()
}
