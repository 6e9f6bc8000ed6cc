/**
 * The DLQ processor scaled out: the same work on 1 and on 2 `lifeline dlq serve` replicas (child processes)
 * sharing one PostgreSQL database per round. Two DLQ topics of `records / 2` dead letters each; a round
 * starts its replicas (same indexer group), times the indexing (first to last record stored, read from the
 * database), then creates one unthrottled redrive job per DLQ topic and times both jobs (creation to the
 * last one completed). With one replica the jobs run one after the other; with two, one on each.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { countRecords } from '../../src/dlq/records.js'
import { createRedriveJob, getJob } from '../../src/dlq/redrive/jobs.js'
import type { RedriveJob } from '../../src/dlq/redrive/types.js'
import type { KafkaAdmin, KafkaProducer, ProduceRecord } from '../../src/kafka/index.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { openPostgres } from '../../src/store/postgres.js'
import { perSecond } from './stats.js'
import type { BenchContext } from './types.js'

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname

export interface ReplicaRound {
  replicas: number
  indexRps: number
  redriveRps: number
}

interface Served {
  child: ChildProcess
  exited: Promise<unknown>
  ready: Promise<void>
}

function serve(ctx: BenchContext, dbUrl: string, topics: string[], group: string): Served {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'dlq', 'serve', '--brokers', ctx.brokers.join(','), '--database', dbUrl, '--topics', topics.join(','), '--group-id', group, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LIFELINE_LOG_LEVEL: 'warn' },
    signal: ctx.signal,
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let out = ''
  let err = ''
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)))
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('DLQ processor running')) resolve()
    })
    void exited.then(() => reject(new Error(`lifeline dlq serve exited: ${err}`)))
  })
  ready.catch(() => undefined)
  return { child, exited, ready }
}

async function until(ctx: BenchContext, check: () => Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (ctx.signal.aborted) throw new Error('interrupted')
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** One round on `replicas` processes; a database of its own, dropped at the end. */
async function round(ctx: BenchContext, adminDb: SqlExecutor, baseUrl: string, admin: KafkaAdmin, dlqs: string[], total: number, replicas: number): Promise<ReplicaRound> {
  const name = `lifeline_bench_replicas_${randomBytes(4).toString('hex')}`
  await adminDb.query(`create database ${name}`)
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  const db = await openPostgres({ url: url.href, poolSize: 2 })
  const id = randomBytes(3).toString('hex')
  const targets = dlqs.map((_, i) => `bench-replicas-target-${id}-${i}`)
  const served: Served[] = []
  try {
    await admin.createTopics(targets.map((topic) => ({ topic, partitions: 3 })))
    const group = `bench-replicas-${id}`
    served.push(serve(ctx, url.href, dlqs, group))
    // One replica migrates first; the others start on a migrated database.
    await served[0]!.ready
    for (let i = 1; i < replicas; i++) served.push(serve(ctx, url.href, dlqs, group))
    await Promise.all(served.map((s) => s.ready))
    await until(ctx, async () => (await countRecords(db)) > 0, 'the first record indexed')
    const indexStart = performance.now()
    const first = await countRecords(db)
    await until(ctx, async () => (await countRecords(db)) >= total, 'every record indexed')
    const indexRps = perSecond(total - first, performance.now() - indexStart)

    const redriveStart = performance.now()
    const jobs: RedriveJob[] = []
    for (let i = 0; i < dlqs.length; i++) jobs.push(await createRedriveJob({ db }, { filter: { dlqTopic: dlqs[i] }, target: { kind: 'topic', topic: targets[i]! }, actor: 'bench', batchSize: 2000 }))
    await until(ctx, async () => (await Promise.all(jobs.map((j) => getJob(db, j.id)))).every((j) => j.status === 'completed'), 'both jobs completed')
    const redriveRps = perSecond(total, performance.now() - redriveStart)
    const done = await Promise.all(jobs.map((j) => getJob(db, j.id)))
    if (done.reduce((n, j) => n + j.succeeded, 0) !== total) throw new Error(`the replicas redrove ${done.map((j) => j.succeeded).join(' + ')} of ${total}`)
    return { replicas, indexRps, redriveRps }
  } finally {
    for (const s of served) s.child.kill('SIGTERM')
    await Promise.all(served.map((s) => s.exited))
    await admin.deleteTopics(targets).catch(() => undefined)
    await db.close().catch(() => undefined)
    await adminDb.query(`drop database if exists ${name} with (force)`).catch(() => undefined)
  }
}

/** Rounds on 1 and on 2 replicas over `total` dead letters written to two fresh DLQ topics. */
export async function replicaRounds(ctx: BenchContext, opts: { adminDb: SqlExecutor; url: string; admin: KafkaAdmin; producer: KafkaProducer; total: number; deadLetters: (dlq: string, count: number) => ProduceRecord[] }): Promise<ReplicaRound[]> {
  const id = randomBytes(3).toString('hex')
  const dlqs = [`bench-replicas-a-${id}.dlq`, `bench-replicas-b-${id}.dlq`]
  await opts.admin.createTopics(dlqs.map((topic) => ({ topic, partitions: 3 })))
  try {
    for (const dlq of dlqs) {
      const records = opts.deadLetters(dlq, opts.total / 2)
      for (let i = 0; i < records.length; i += 10_000) await opts.producer.send(records.slice(i, i + 10_000))
    }
    const rounds: ReplicaRound[] = []
    for (const replicas of [1, 2]) {
      rounds.push(await round(ctx, opts.adminDb, opts.url, opts.admin, dlqs, opts.total, replicas))
      ctx.logger.info(rounds[rounds.length - 1], 'replica round done')
    }
    return rounds
  } finally {
    await opts.admin.deleteTopics(dlqs).catch(() => undefined)
  }
}
