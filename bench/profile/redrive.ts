/**
 * The redrive's database profile (bench/README.md, "redrive notes"): on a fresh PostgreSQL database
 * (`DATABASE_URL`'s server), N dead letters are indexed, then a job over them is created and run
 * unthrottled. Prints each statement's total time and count for the creation and for the run, and the CPU
 * time the PostgreSQL backends and this process used.
 *
 *   KAFKA_BOOTSTRAP=127.0.0.1:9092 node --import tsx bench/profile/redrive.ts [records=100000]
 *
 * The job runs after `vacuum analyze`; with `STALE_STATS=1` it runs on the table as the indexer left it.
 * The last line splits the machine's CPU time over the creation and the run (/proc) between PostgreSQL's
 * processes, this process (and its main thread), java (the broker) and the rest, and gives the machine's busy CPU-seconds
 * (/proc/stat). Processes that ended within the window (a parallel query's workers, a pool's closed
 * connections) are missing from the split, not from the machine's total.
 * With `PROFILE=<dir>`, this process's main thread is CPU-profiled while the job runs (redrive.cpuprofile).
 *
 * The CPU figures need Linux and the server on this machine. The database and the topics are dropped at
 * the end.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { countRecords } from '../../src/dlq/records.js'
import { createRedriveJob } from '../../src/dlq/redrive/jobs.js'
import { runRedriveJob } from '../../src/dlq/redrive/runner.js'
import { encodeFailureHeaders } from '../../src/failure/headers.js'
import { createAdmin, createProducer } from '../../src/kafka/index.js'
import type { SqlExecutor, SqlQueryable, SqlResult } from '../../src/store/executor.js'
import { openPostgres } from '../../src/store/postgres.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { cpuSnapshot, describeCpu } from '../lib/cpu.js'

const n = Number(process.argv[2] ?? 100_000)
if (!Number.isSafeInteger(n) || n < 1) throw new Error(`records must be a positive integer, got ${process.argv[2]}`)
const bootstrap = process.env.KAFKA_BOOTSTRAP
if (!bootstrap) throw new Error('KAFKA_BOOTSTRAP is required (lifeline dev kafka start prints it)')
const brokers = bootstrap.split(',')
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** Statement text (first 90 characters, spaces folded) → total ms and count; `TX` for whole transactions. */
const stats = new Map<string, { n: number; ms: number }>()
const note = (key: string, started: number) => {
  const e = stats.get(key) ?? { n: 0, ms: 0 }
  e.n++
  e.ms += performance.now() - started
  stats.set(key, e)
}
const timed = (q: SqlQueryable): SqlQueryable => ({
  async query<R extends Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<SqlResult<R>> {
    const started = performance.now()
    try {
      return await q.query<R>(text, params)
    } finally {
      note(text.replace(/\s+/g, ' ').slice(0, 90), started)
    }
  },
})
const dump = (title: string) => {
  console.log(`-- ${title}: ms, statements, statement`)
  for (const [k, v] of [...stats].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) console.log(v.ms.toFixed(0).padStart(7), String(v.n).padStart(6), k)
  stats.clear()
}

const id = randomBytes(4).toString('hex')
const dbName = `lifeline_profile_redrive_${id}`
const dlq = `profile-redrive-${id}.dlq`
const target = `profile-redrive-target-${id}`
const adminDb = await openPostgres({ url: serverUrl, poolSize: 1 })
await adminDb.query(`create database ${dbName}`)
const url = new URL(serverUrl)
url.pathname = `/${dbName}`
const raw = await openPostgres({ url: url.href, poolSize: 8 })
const db: SqlExecutor = {
  kind: raw.kind,
  query: timed(raw).query,
  close: () => raw.close(),
  async transaction(fn) {
    const started = performance.now()
    try {
      return await raw.transaction((tx) => fn(timed(tx)))
    } finally {
      note('TX', started)
    }
  },
}
const admin = createAdmin({ brokers })
const producer = createProducer({ brokers })
try {
  await migrateLifeline(raw)
  await admin.createTopics([{ topic: dlq, partitions: 3 }, { topic: target, partitions: 3 }])
  const now = Date.now()
  for (let i = 0; i < n; i += 10_000) {
    await producer.send(Array.from({ length: Math.min(10_000, n - i) }, (_, k) => {
      const j = i + k
      return {
        topic: dlq, partition: j % 3, key: `key-${j % 100}`, value: JSON.stringify({ i: j, pad: 'x'.repeat(200) }),
        headers: encodeFailureHeaders([{ key: 'trace-id', value: Buffer.from(`t-${j}`) }], {
          originTopic: `profile-origin-${id}`, originPartition: j % 3, originOffset: j, originTimestamp: now, group: 'bench', service: 'bench', errorClass: 'Error',
          errorCode: 'E_BENCH', errorMessage: 'bench failure', errorFingerprint: 'bench', attempts: 3, firstFailureAt: now, lastFailureAt: now,
        }),
      }
    }))
  }
  const indexer = createDlqIndexer({ brokers, db: raw, topics: [dlq], groupId: `profile-indexer-${id}`, migrate: false, pollTimeoutMs: 100 })
  await indexer.start()
  while ((await countRecords(raw)) < n) await new Promise((r) => setTimeout(r, 200))
  await indexer.close()
  // STALE_STATS=1 leaves the table as the indexer left it (what the bench's job meets: no statistics yet).
  if (!process.env.STALE_STATS) await raw.query('vacuum analyze')
  const cpu0 = cpuSnapshot()
  stats.clear()

  let started = performance.now()
  const job = await createRedriveJob({ db }, { filter: { dlqTopic: dlq }, target: { kind: 'topic', topic: target }, actor: 'profile', batchSize: 2000 })
  console.log(`create: ${(performance.now() - started).toFixed(0)} ms for ${job.total} items`)
  dump('create')
  const session = process.env.PROFILE ? new Session() : undefined
  if (session) {
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.start')
  }
  started = performance.now()
  const done = await runRedriveJob({ db, producer }, job.id)
  const ms = performance.now() - started
  const cpu1 = cpuSnapshot()
  if (session) {
    const { profile } = await session.post('Profiler.stop')
    writeFileSync(`${process.env.PROFILE}/redrive.cpuprofile`, JSON.stringify(profile))
    session.disconnect()
    console.log(`profile: ${process.env.PROFILE}/redrive.cpuprofile`)
  }
  console.log(`run: ${ms.toFixed(0)} ms, ${((done.succeeded / ms) * 1000).toFixed(0)} records/s, ${done.status}, ${done.succeeded} sent`)
  dump('run')
  console.log(`cpu (create + run): ${describeCpu(cpu0, cpu1)}`)
} finally {
  await producer.close().catch(() => undefined)
  await admin.deleteTopics([dlq, target]).catch(() => undefined)
  await admin.close().catch(() => undefined)
  await raw.close().catch(() => undefined)
  await adminDb.query(`drop database if exists ${dbName} with (force)`).catch(() => undefined)
  await adminDb.close().catch(() => undefined)
}
