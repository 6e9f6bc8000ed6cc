import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { TestContext } from 'node:test'
import { describe, test } from 'node:test'
import { createTransactionalPipeline, type TransactionalPipeline, type TransactionalPipelineOptions } from '../../src/effects/transactional-pipeline.js'
import { isLifelineError, type LifelineError } from '../../src/errors.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import type { ConsumedRecord, ProduceRecord } from '../../src/kafka/index.js'
import { admin, brokers, consumer, defer, producer, PROBE, randomName, topic, waitFor, waitForCoordinatorAbort } from '../helpers/kafka.js'

const END = '__end__'

function pipeline(t: TestContext, options: Omit<TransactionalPipelineOptions, 'brokers'>): TransactionalPipeline {
  const p = createTransactionalPipeline({ brokers: brokers(), batchMs: 20, retry: { baseMs: 10, maxMs: 100 }, ...options })
  defer(t, () => p.close())
  return p
}

/** An input topic with `count` records `v0..` over `partitions` partitions, and an empty output topic. */
async function setup(t: TestContext, count: number, partitions = 2) {
  const input = await topic(t, { partitions, prefix: 'pipe-in' })
  const output = await topic(t, { partitions, prefix: 'pipe-out' })
  const values = Array.from({ length: count }, (_, i) => `v${i}`)
  await producer(t).send(values.map((value, i) => ({ topic: input, key: `k${i}`, value })))
  return { input, output, values }
}

/** Waits until the group's committed offsets reach the end of `input`: every input's transaction committed. */
async function waitForEnd(t: TestContext, groupId: string, input: string, timeoutMs = 30_000): Promise<void> {
  const a = admin(t)
  const highs = new Map((await a.topicOffsets(input)).map((o) => [o.partition, o.high]))
  const atEnd = async () => {
    const committed = new Map((await a.groupOffsets(groupId, input)).map((o) => [o.partition, o.offset]))
    return [...highs].every(([partition, high]) => committed.get(partition) === high)
  }
  await waitFor(atEnd, `group ${groupId} to commit the end of ${input}`, timeoutMs)
}

/** The values before the end markers written now, as a reader with this isolation level sees them. */
async function readToEnd(t: TestContext, name: string, partitions: number, isolationLevel: 'read_committed' | 'read_uncommitted'): Promise<string[]> {
  await producer(t).send(Array.from({ length: partitions }, (_, partition) => ({ topic: name, partition, key: END, value: END })))
  const c = consumer(t, { groupId: randomName('reader'), isolationLevel })
  c.subscribe([name])
  const values: string[] = []
  const ended = new Set<number>()
  await waitFor(async () => {
    for (const r of await c.poll(500, 200)) {
      if (r.key?.toString() === END) ended.add(r.partition)
      else if (r.key?.toString() !== PROBE && !ended.has(r.partition)) values.push(r.value!.toString())
    }
    return ended.size === partitions
  }, `a ${isolationLevel} reader to reach the end of ${name}`)
  await c.close()
  return values
}

/** A read_uncommitted reader polling in the background: sees records of open transactions too. */
function tail(t: TestContext, name: string): { values: string[] } {
  const c = consumer(t, { groupId: randomName('tail'), isolationLevel: 'read_uncommitted' })
  c.subscribe([name])
  const seen = { values: [] as string[] }
  let stop = false
  const loop = (async () => {
    while (!stop) for (const r of await c.poll(500, 100)) seen.values.push(r.value!.toString())
  })()
  defer(t, async () => {
    stop = true
    await loop
  })
  return seen
}

/** Every record of `name` (all partitions) as a read_committed reader sees it, up to end markers written now. */
async function readRecords(t: TestContext, name: string, partitions: number): Promise<ConsumedRecord[]> {
  await producer(t).send(Array.from({ length: partitions }, (_, partition) => ({ topic: name, partition, key: END, value: END })))
  const c = consumer(t, { groupId: randomName('reader'), isolationLevel: 'read_committed' })
  c.subscribe([name])
  const records: ConsumedRecord[] = []
  const ended = new Set<number>()
  await waitFor(async () => {
    for (const r of await c.poll(500, 200)) {
      if (r.key?.toString() === END) ended.add(r.partition)
      else if (!ended.has(r.partition)) records.push(r)
    }
    return ended.size === partitions
  }, `a read_committed reader to reach the end of ${name}`)
  await c.close()
  return records
}

const header = (r: ConsumedRecord, name: string): string | undefined => r.headers.findLast((h) => h.key === name)?.value?.toString()

/**
 * After a pipeline child with `transactionalId` died before finishing `input`: a restart with the same id
 * (its initTransactions aborts what the child left open) finishes it, and read_committed readers of `output`
 * see every input's output exactly once.
 */
async function restartAndCheck(t: TestContext, o: { groupId: string; transactionalId: string; input: string; output: string; values: string[] }): Promise<void> {
  const highs = new Map((await admin(t).topicOffsets(o.input)).map((x) => [x.partition, x.high]))
  // A partition the group never committed (missing from the answer, or -1) is unfinished too.
  const committedBefore = new Map((await admin(t).groupOffsets(o.groupId, o.input)).map((x) => [x.partition, x.offset]))
  assert.ok([...highs].some(([partition, high]) => (committedBefore.get(partition) ?? -1) < high), `the child died before finishing the input (committed ${JSON.stringify([...committedBefore])}, ends ${JSON.stringify([...highs])})`)
  const restarted = pipeline(t, {
    groupId: o.groupId, transactionalId: o.transactionalId, topics: [o.input], sessionTimeoutMs: 6000,
    transform: (r: ConsumedRecord) => [{ topic: o.output, key: r.key, value: `${r.value!.toString()}:out` }],
  })
  await restarted.start()
  await waitForEnd(t, o.groupId, o.input, 45_000)
  await restarted.close()
  assertExactlyOnce(await readToEnd(t, o.output, 2, 'read_committed'), o.values.map((v) => `${v}:out`), 'read_committed output')
}

const sorted = (values: readonly string[]) => [...values].sort()
/** Every value once, and nothing else. */
function assertExactlyOnce(actual: readonly string[], expected: readonly string[], what: string): void {
  assert.deepEqual(sorted(actual), sorted(expected), what)
}

describe('transactional pipeline', () => {
  test('committed transactions: read_committed sees each input\'s outputs exactly once (fan-out and filtering too), and the group offsets moved', async (t) => {
    const { input, output, values } = await setup(t, 120)
    const groupId = randomName('pipe')
    // v<i>: two outputs when i is even, none when i is a multiple of 3, one otherwise.
    const expected = values.flatMap((v) => {
      const i = Number(v.slice(1))
      return i % 3 === 0 ? [] : i % 2 === 0 ? [`${v}:a`, `${v}:b`] : [`${v}:a`]
    })
    const committed: Array<{ records: number; outputs: number }> = []
    const p = pipeline(t, {
      groupId, transactionalId: randomName('txn'), topics: [input], batchSize: 25,
      transform: (r: ConsumedRecord): ProduceRecord[] => {
        const v = r.value!.toString()
        const i = Number(v.slice(1))
        if (i % 3 === 0) return []
        return (i % 2 === 0 ? ['a', 'b'] : ['a']).map((s) => ({ topic: output, key: r.key, value: `${v}:${s}` }))
      },
    })
    p.on('committed', (info) => committed.push(info))
    await p.start()
    assert.equal(p.stats().state, 'running')
    await waitForEnd(t, groupId, input)
    await p.close()
    await p.done()

    const stats = p.stats()
    assert.equal(stats.state, 'closed')
    assert.equal(stats.records, 120)
    assert.equal(stats.outputs, expected.length)
    assert.equal(stats.abortedTransactions, 0)
    assert.ok(stats.committedTransactions >= 120 / 25, `batches hold at most batchSize records: ${stats.committedTransactions} transactions`)
    assert.ok(committed.every((c) => c.records <= 25))
    assert.equal(committed.reduce((n, c) => n + c.records, 0), 120)
    assertExactlyOnce(await readToEnd(t, output, 2, 'read_committed'), expected, 'read_committed output')
  })

  test('a transform error aborts the transaction: its outputs stay invisible to read_committed (present for read_uncommitted) and the batch is processed again', async (t) => {
    const { input, output, values } = await setup(t, 60, 1)
    const groupId = randomName('pipe')
    const seen = tail(t, output)
    const calls = new Map<string, number>()
    let failed = false
    const aborted: Array<{ records: number; reason: string; error?: unknown }> = []
    const p = pipeline(t, {
      groupId, transactionalId: randomName('txn'), topics: [input], batchSize: 60, batchMs: 500,
      transform: async (r: ConsumedRecord) => {
        const v = r.value!.toString()
        calls.set(v, (calls.get(v) ?? 0) + 1)
        if (v === 'v40' && !failed) {
          // The outputs of v0..v39 are on the log (uncommitted) before the transaction fails.
          await waitFor(() => seen.values.length >= 40, 'the first outputs of the transaction to reach the log')
          failed = true
          throw new Error('transform failed once')
        }
        return [{ topic: output, key: r.key, value: `${v}:out` }]
      },
    })
    p.on('aborted', (info) => aborted.push(info))
    await p.start()
    await waitForEnd(t, groupId, input)
    await p.close()

    assert.equal(aborted.length, 1)
    assert.equal(aborted[0]!.reason, 'error')
    const error = aborted[0]!.error as LifelineError
    assert.ok(isLifelineError(error, 'LL_TRANSACTION'))
    assert.equal((error.cause as Error).message, 'transform failed once')
    assert.equal(error.details.offset, 40)
    // The aborted batch, from its first record to v40, was transformed again; everything else once.
    const twice = values.filter((v) => calls.get(v) === 2)
    const first = Number(twice[0]?.slice(1))
    assert.deepEqual(twice, values.slice(first, 41), 'the records of the aborted batch up to the failure ran twice')
    assert.ok(twice.length > 1, 'the aborted transaction had sent outputs before it failed')
    assert.ok(values.every((v) => calls.get(v) === 1 || twice.includes(v)))
    assert.equal(p.stats().abortedTransactions, 1)
    assertExactlyOnce(await readToEnd(t, output, 1, 'read_committed'), values.map((v) => `${v}:out`), 'read_committed output')
    // The aborted outputs are in the log all the same: read_uncommitted shows them besides the committed ones.
    const uncommitted = await readToEnd(t, output, 1, 'read_uncommitted')
    assertExactlyOnce(uncommitted, [...values, ...twice.slice(0, -1)].map((v) => `${v}:out`), 'read_uncommitted output')
  })

  test('SIGKILL of a pipeline process mid-transaction: no partial output becomes visible, and a restart with the same transactional.id completes every input exactly once', async (t) => {
    const { input, output, values } = await setup(t, 200)
    const groupId = randomName('pipe')
    const transactionalId = randomName('txn')
    const seen = tail(t, output)
    const hangAfter = 120
    const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/transactional-pipeline.ts', import.meta.url).pathname], {
      env: { ...process.env, INPUT: input, OUTPUT: output, GROUP: groupId, TXN_ID: transactionalId, HANG_AFTER: String(hangAfter), BATCH_SIZE: '50' },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    defer(t, () => child.kill('SIGKILL'))
    let stdout = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    await waitFor(() => stdout.includes('HUNG'), 'the child to hang mid-transaction', 30_000)
    // Every output the child sent, the open transaction's included, is on the log before the kill.
    await waitFor(() => seen.values.length >= hangAfter, 'the child\'s outputs to reach the log')
    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    // The restart's initTransactions aborts the open transaction at once.
    await restartAndCheck(t, { groupId, transactionalId, input, output, values })
    const uncommitted = await readToEnd(t, output, 2, 'read_uncommitted')
    assert.ok(uncommitted.length > values.length, `the killed transaction did leave (aborted) records in the log: ${uncommitted.length}`)
  })

  test('zombie fencing: a second pipeline with the same transactional.id fences the first (LL_FENCED) and the first one\'s open transaction never becomes visible', async (t) => {
    const { input, output, values } = await setup(t, 80)
    const groupId = randomName('pipe')
    const transactionalId = randomName('txn')
    const seen = tail(t, output)
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let transformedByA = 0
    const a = pipeline(t, {
      groupId, transactionalId, topics: [input], batchSize: 80, batchMs: 500,
      transform: async (r: ConsumedRecord) => {
        if (++transformedByA === 10) await gate
        return [{ topic: output, key: r.key, value: `${r.value!.toString()}:A` }]
      },
    })
    const fenced: LifelineError[] = []
    a.on('fenced', (err) => fenced.push(err))
    await a.start()
    const aDone = a.done().then(
      () => undefined,
      (err: unknown) => err,
    )
    await waitFor(() => transformedByA >= 10 && seen.values.length >= 9, 'A to be mid-transaction with outputs on the log')

    const b = pipeline(t, {
      groupId, transactionalId, topics: [input], sessionTimeoutMs: 6000,
      transform: (r: ConsumedRecord) => [{ topic: output, key: r.key, value: `${r.value!.toString()}:B` }],
    })
    await b.start() // initTransactions: fences A and aborts its open transaction
    release()
    const stopped = await aDone
    assert.ok(isLifelineError(stopped, 'LL_FENCED'), `A stops with LL_FENCED: ${String(stopped)}`)
    assert.equal(fenced.length, 1)
    assert.equal(fenced[0], stopped)
    assert.equal(a.stats().state, 'stopped')
    assert.equal(a.stats().committedTransactions, 0)

    // A left the group when it stopped: B takes every partition and finishes the input.
    await waitForEnd(t, groupId, input)
    await b.close()
    assertExactlyOnce(await readToEnd(t, output, 2, 'read_committed'), values.map((v) => `${v}:B`), 'read_committed output: all from B')
    assert.ok((await readToEnd(t, output, 2, 'read_uncommitted')).some((v) => v.endsWith(':A')), 'A did write records before it was fenced')
  })

  test('close() mid-transaction aborts it: the transform\'s signal fires, nothing becomes visible, and the next run processes the batch again', async (t) => {
    const { input, output, values } = await setup(t, 30, 1)
    const groupId = randomName('pipe')
    const transactionalId = randomName('txn')
    const seen = tail(t, output)
    let signalled: AbortSignal | undefined
    const first = pipeline(t, {
      groupId, transactionalId, topics: [input], batchSize: 30, batchMs: 500,
      transform: async (r: ConsumedRecord, { signal }) => {
        if (r.value!.toString() === 'v10') {
          signalled = signal
          // A slow call that honours the signal.
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
        }
        return [{ topic: output, key: r.key, value: `${r.value!.toString()}:first` }]
      },
    })
    const aborted: Array<{ reason: string }> = []
    first.on('aborted', (info) => aborted.push(info))
    await first.start()
    await waitFor(() => signalled !== undefined && seen.values.length >= 10, 'the transform to wait mid-transaction with outputs on the log')
    await first.close()
    await first.done()
    assert.equal(signalled!.aborted, true)
    assert.deepEqual(aborted.map((a) => a.reason), ['closing'])
    assert.equal(first.stats().committedTransactions, 0)
    assert.deepEqual((await admin(t).groupOffsets(groupId, input)).filter((o) => o.offset >= 0), [], 'no offset was committed')

    const second = pipeline(t, { groupId, transactionalId, topics: [input], transform: (r: ConsumedRecord) => [{ topic: output, key: r.key, value: `${r.value!.toString()}:second` }] })
    await second.start()
    await waitForEnd(t, groupId, input)
    await second.close()
    assertExactlyOnce(await readToEnd(t, output, 1, 'read_committed'), values.map((v) => `${v}:second`), 'read_committed output')
  })

  test('a member joining mid-stream (cooperative rebalance): partitions move and every input is still committed exactly once', async (t) => {
    const { input, output, values } = await setup(t, 600, 4)
    const groupId = randomName('pipe')
    const transform = (r: ConsumedRecord) => [{ topic: output, key: r.key, value: `${r.value!.toString()}:out` }]
    // A works slowly until B has partitions, so plenty is left to move.
    let slow = true
    const a = pipeline(t, {
      groupId, transactionalId: randomName('txn-a'), topics: [input], batchSize: 10,
      transform: async (r: ConsumedRecord) => {
        if (slow) await new Promise((resolve) => setTimeout(resolve, 10))
        return transform(r)
      },
    })
    const revoked: unknown[] = []
    a.on('partitions-revoked', (parts) => revoked.push(parts))
    await a.start()
    await waitFor(() => a.stats().records >= 40, 'A to make progress')
    const b = pipeline(t, { groupId, transactionalId: randomName('txn-b'), topics: [input], batchSize: 10, transform })
    await b.start()
    await waitFor(() => b.stats().assigned.length > 0, 'B to receive partitions')
    slow = false
    await waitForEnd(t, groupId, input)
    await Promise.all([a.close(), b.close()])

    assert.ok(revoked.length > 0, 'A gave partitions away')
    assert.ok(b.stats().records > 0, 'B processed records')
    assertExactlyOnce(await readToEnd(t, output, 4, 'read_committed'), values.map((v) => `${v}:out`), 'read_committed output')
  })

  test('a transform stalled past transactionTimeoutMs (the broker aborts the transaction and bumps the epoch, INVALID_PRODUCER_EPOCH) is retried, never reported as fenced', async (t) => {
    const { input, output, values } = await setup(t, 20, 1)
    const groupId = randomName('pipe')
    const seen = tail(t, output)
    let stalled = false
    const p = pipeline(t, {
      groupId, transactionalId: randomName('txn'), topics: [input], batchSize: 20, batchMs: 500, transactionTimeoutMs: 5000,
      transform: async (r: ConsumedRecord) => {
        const v = r.value!.toString()
        if (v === 'v10' && !stalled) {
          stalled = true
          // The outputs of v0..v9 are on the log, so the transaction is open on the coordinator; stall until
          // the coordinator aborts it for outliving transaction.timeout.ms.
          await waitFor(() => seen.values.length >= 10, 'the first outputs of the transaction to reach the log')
          await waitForCoordinatorAbort(t, output)
        }
        return [{ topic: output, key: r.key, value: `${v}:out` }]
      },
    })
    const fenced: unknown[] = []
    const aborted: Array<{ reason: string; error?: unknown }> = []
    p.on('fenced', (err) => fenced.push(err))
    p.on('aborted', (info) => aborted.push(info))
    await p.start()
    const stopped = p.done().then(() => 'closed', (err: unknown) => err)
    await waitForEnd(t, groupId, input, 60_000)
    await p.close()
    assert.equal(await stopped, 'closed', 'the pipeline did not stop by itself')
    assert.deepEqual(fenced, [], 'a transaction timeout is not a fence')
    assert.equal(aborted.length, 1)
    const error = aborted[0]!.error as LifelineError
    assert.ok(isLifelineError(error, 'LL_TRANSACTION'), `aborted with LL_TRANSACTION: ${String(error)}`)
    assert.equal(error.details.kind, 'timed-out')
    assertExactlyOnce(await readToEnd(t, output, 1, 'read_committed'), values.map((v) => `${v}:out`), 'read_committed output')
  })

  test('a poison record (a permanent failure) is dead-lettered in the transaction of its batch: read_committed readers see it once in the DLQ with lifeline.* headers, and every other output once', async (t) => {
    const { input, output, values } = await setup(t, 40, 2)
    const service = randomName('svc')
    const dlq = await topic(t, { topic: `${service}.${input}.dlq`, partitions: 2 })
    const groupId = randomName('pipe')
    const calls = new Map<string, number>()
    const deadLetters: Array<{ offset: number; dlqTopic: string; errorCode: string; attempts: number }> = []
    const p = pipeline(t, {
      groupId, service, transactionalId: randomName('txn'), topics: [input], batchSize: 40, batchMs: 500,
      deadLetter: { provision: false },
      transform: (r: ConsumedRecord) => {
        const v = r.value!.toString()
        calls.set(v, (calls.get(v) ?? 0) + 1)
        if (v === 'v7') throw new NonRetriableError('v7 cannot be enriched', { code: 'E_POISON' })
        return [{ topic: output, key: r.key, value: `${v}:out` }]
      },
    })
    p.on('dead-letter', (info) => deadLetters.push(info))
    await p.start()
    await waitForEnd(t, groupId, input)
    await p.close()

    assert.equal(calls.get('v7'), 1, 'a permanent failure is not retried')
    assert.equal(p.stats().abortedTransactions, 0, 'nothing was aborted: the poison record went to the DLQ in its batch')
    assert.equal(p.stats().deadLettered, 1)
    assert.deepEqual(deadLetters.map((d) => ({ dlqTopic: d.dlqTopic, errorCode: d.errorCode, attempts: d.attempts })), [{ dlqTopic: dlq, errorCode: 'E_POISON', attempts: 1 }])
    assertExactlyOnce(await readToEnd(t, output, 2, 'read_committed'), values.filter((v) => v !== 'v7').map((v) => `${v}:out`), 'read_committed output')
    const dead = await readRecords(t, dlq, 2)
    assert.equal(dead.length, 1, 'the poison record is in the DLQ exactly once')
    const d = dead[0]!
    assert.equal(d.value!.toString(), 'v7')
    assert.equal(d.key!.toString(), 'k7')
    assert.equal(header(d, 'lifeline.origin.topic'), input)
    assert.equal(header(d, 'lifeline.origin.offset'), String(deadLetters[0]!.offset))
    assert.equal(header(d, 'lifeline.group'), groupId)
    assert.equal(header(d, 'lifeline.service'), service)
    assert.equal(header(d, 'lifeline.error.class'), 'NonRetriableError')
    assert.equal(header(d, 'lifeline.error.code'), 'E_POISON')
    assert.equal(header(d, 'lifeline.error.message'), 'v7 cannot be enriched')
    assert.equal(header(d, 'lifeline.attempts'), '1')
  })

  test('a record that keeps failing with a retriable error is dead-lettered after retry.maxAttempts attempts; the rest of its batch commits with it', async (t) => {
    const { input, output, values } = await setup(t, 30, 1)
    const service = randomName('svc')
    const dlq = `${service}.${input}.dlq`
    const a = admin(t)
    // Provisioned by start() (deadLetter.provision defaults to true); deleted after the pipeline closed.
    defer(t, () => a.deleteTopics([dlq]))
    const groupId = randomName('pipe')
    const calls = new Map<string, number>()
    const p = pipeline(t, {
      groupId, service, transactionalId: randomName('txn'), topics: [input], batchSize: 30, batchMs: 500,
      retry: { maxAttempts: 3, baseMs: 10, maxMs: 50 },
      transform: (r: ConsumedRecord) => {
        const v = r.value!.toString()
        calls.set(v, (calls.get(v) ?? 0) + 1)
        if (v === 'v12') throw Object.assign(new Error('downstream says no'), { code: 'E_FLAKY' })
        return [{ topic: output, key: r.key, value: `${v}:out` }]
      },
    })
    await p.start()
    await waitForEnd(t, groupId, input)
    await p.close()

    assert.equal(calls.get('v12'), 3, 'three attempts, then the DLQ')
    assert.equal(p.stats().abortedTransactions, 2, 'the first two failures aborted the batch')
    assert.equal(p.stats().deadLettered, 1)
    assertExactlyOnce(await readToEnd(t, output, 1, 'read_committed'), values.filter((v) => v !== 'v12').map((v) => `${v}:out`), 'read_committed output')
    assert.equal((await a.describeTopics([dlq]))[0]!.partitions.length, 1, 'provisioned with the partition count of its source')
    const dead = await readRecords(t, dlq, 1)
    assert.deepEqual(dead.map((r) => r.value!.toString()), ['v12'])
    assert.equal(header(dead[0]!, 'lifeline.attempts'), '3')
    assert.equal(header(dead[0]!, 'lifeline.error.code'), 'E_FLAKY')
  })

  for (const point of ['tx.after-send', 'tx.after-commit'] as const) {
    test(`crash point ${point}: SIGKILL of a pipeline process there, then a restart with the same transactional.id: every input's output exactly once for read_committed readers, nothing lost`, async (t) => {
      const { input, output, values } = await setup(t, 200)
      const groupId = randomName('pipe')
      const transactionalId = randomName('txn')
      // The second pass: one batch committed before (tx.after-send) or the crash right after the second commit.
      const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/transactional-pipeline.ts', import.meta.url).pathname], {
        env: { ...process.env, INPUT: input, OUTPUT: output, GROUP: groupId, TXN_ID: transactionalId, BATCH_SIZE: '50', LIFELINE_CRASH_AT: `${point}:2` },
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      defer(t, () => child.kill('SIGKILL'))
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
      assert.equal(exit.signal, 'SIGKILL', `the child died at the crash point: ${JSON.stringify(exit)} ${stderr}`)
      assert.match(stderr, new RegExp(`crash point ${point.replace('.', '\\.')} \\(pass 2\\)`))
      await restartAndCheck(t, { groupId, transactionalId, input, output, values })
    })
  }

  test('options are validated with their path; start() twice and start() after close() are refused', async (t) => {
    assert.throws(
      () => createTransactionalPipeline({ brokers: brokers(), groupId: 'g', transactionalId: '', topics: ['t'], transform: () => [] }),
      (err: LifelineError) => err.code === 'LL_OPTIONS_INVALID' && err.message.includes('pipeline.transactionalId'),
    )
    assert.throws(
      () => createTransactionalPipeline({ brokers: brokers(), groupId: 'g', transactionalId: 'x', topics: ['t'], transform: 'nope' as never }),
      (err: LifelineError) => err.code === 'LL_OPTIONS_INVALID' && err.message.includes('pipeline.transform'),
    )
    assert.throws(
      () => createTransactionalPipeline({ brokers: brokers(), groupId: 'g', transactionalId: 'x', topics: ['t'], transform: () => [], batchSize: 0 }),
      (err: LifelineError) => err.code === 'LL_OPTIONS_INVALID' && err.message.includes('pipeline.batchSize'),
    )
    const { input } = await setup(t, 1)
    const p = pipeline(t, { groupId: randomName('pipe'), transactionalId: randomName('txn'), topics: [input], transform: () => [] })
    await p.start()
    await assert.rejects(p.start(), (err: unknown) => isLifelineError(err, 'LL_CONSUMER_STATE'))
    const closed = p.close()
    assert.equal(p.close(), closed, 'close() is idempotent')
    await closed
    await p.done()
    await assert.rejects(p.start(), (err: unknown) => isLifelineError(err, 'LL_CONSUMER_STATE'))
  })
})
