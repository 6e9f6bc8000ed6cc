/**
 * Two `lifeline dlq serve` replicas on one PostgreSQL database (issue 14): indexing split by the consumer
 * group, a redrive job run by exactly one of them under its lease; the one running it is killed with
 * SIGKILL mid-job, the other takes the job over once the lease expires, and every record arrives exactly
 * once on the target topic.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeFailureHeaders } from '../../src/failure/headers.js'
import { countRecords } from '../../src/dlq/records.js'
import { createRedriveJob, getJob } from '../../src/dlq/redrive/jobs.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseUrl, freshDatabase } from '../helpers/db.js'
import { brokers, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { assertEachOnce } from '../helpers/lifeline.js'
import { spawnForTest, type Spawned } from '../helpers/process.js'

const N = 4000
const RATE = 800
const HEARTBEAT_MS = 300

test('two dlq serve replicas: one runs the job; killed with SIGKILL mid-job, the other takes it over after the lease and every record arrives exactly once', { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL (replicas share a PostgreSQL server)', timeout: 300_000 }, async (t) => {
  const db = await freshDatabase(t, 'postgres')
  await migrateLifeline(db)
  const origin = await topic(t, { prefix: 'orders', partitions: 3 })
  const dlq = await topic(t, { topic: `${origin}.dlq`, partitions: 3 })
  const target = await topic(t, { prefix: 'redriven', partitions: 3 })
  const group = randomName('dlq-indexer')
  const serve = (): Spawned =>
    spawnForTest(t, process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dlq', 'serve', '--brokers', brokers().join(','), '--database', databaseUrl(db), '--topics', dlq, '--group-id', group, '--port', '0', '--job-heartbeat', String(HEARTBEAT_MS)], {
      env: { ...process.env, LIFELINE_LOG_LEVEL: 'info' },
    })
  const replicas = [serve(), serve()]
  const urls: string[] = []
  for (const r of replicas) {
    await waitFor(() => /API at http:\/\/127\.0\.0\.1:\d+/.test(r.stdout()) || r.child.exitCode !== null, 'a replica to start', 120_000)
    assert.equal(r.child.exitCode, null, `a replica exited: ${r.stderr()}`)
    urls.push(/API at (http:\/\/127\.0\.0\.1:\d+)/.exec(r.stdout())![1]!)
  }
  /** Records the replica's indexer stored (its lifeline_dlq_indexed_total). */
  const indexedBy = async (url: string): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text()
    return [...text.matchAll(/^lifeline_dlq_indexed_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
  }

  // Dead letters in chunks until there are N and both indexers have stored some: indexing is split by the
  // consumer group once the second replica has joined.
  const now = Date.now()
  const deadLetter = (n: number) => ({
    topic: dlq, partition: n % 3, key: `k${n % 50}`, value: JSON.stringify({ n }),
    headers: encodeFailureHeaders([], {
      originTopic: origin, originPartition: n % 3, originOffset: n, originTimestamp: now, group: 'billing', service: 'svc', errorClass: 'Error', errorCode: 'E_BAD',
      errorMessage: 'bad', errorFingerprint: 'fp', attempts: 1, firstFailureAt: now, lastFailureAt: now,
    }),
  })
  let total = 0
  const split = async () => (await Promise.all(urls.map(indexedBy))).every((n) => n > 0)
  while (total < N || !(await split())) {
    assert.ok(total < 5 * N, 'the two indexers never split the DLQ partitions')
    await producer(t).send(Array.from({ length: 200 }, (_, i) => deadLetter(total + i)))
    total += 200
    await waitFor(async () => (await countRecords(db)) === total, 'the replicas to index the chunk', 60_000)
  }
  const byReplica = await Promise.all(urls.map(indexedBy))
  t.diagnostic(`indexed ${byReplica.join(' + ')} of ${total} records`)

  const job = await createRedriveJob({ db }, { filter: { dlqTopic: dlq }, target: { kind: 'topic', topic: target }, actor: 'alice', ratePerSec: RATE })
  const claimed = (r: Spawned) => r.stderr().split('\n').some((line) => line.includes('"msg":"redrive job claimed"') && line.includes(`"jobId":"${job.id}"`))
  await waitFor(() => replicas.some(claimed), 'a replica to claim the job', 30_000)
  const first = replicas.findIndex(claimed)
  const other = replicas[1 - first]!
  assert.equal(claimed(other), false, 'exactly one replica runs the job')

  await waitFor(async () => (await getJob(db, job.id)).done >= total / 3, 'a third of the job to be done', 60_000)
  replicas[first]!.child.kill('SIGKILL')
  await replicas[first]!.exited
  const killed = await getJob(db, job.id)
  assert.equal(killed.status, 'running')
  assert.ok(killed.done < total, 'killed mid-job')
  t.diagnostic(`killed the replica running the job at ${killed.done} of ${total}`)

  await waitFor(() => claimed(other), 'the other replica to take the job over', 30_000)
  const takeover = other.stderr().split('\n').find((line) => line.includes('"msg":"redrive job claimed"') && line.includes(`"jobId":"${job.id}"`))!
  assert.match(takeover, /"resumed":true/, 'taken over as an interrupted job (its lease expired), not as a new one')
  await waitFor(async () => (await getJob(db, job.id)).status === 'completed', 'the job to complete on the other replica', 120_000)
  const final = await getJob(db, job.id)
  assert.deepEqual([final.succeeded, final.failed, final.done], [total, 0, total])

  await assertEachOnce(t, target, total)
})
