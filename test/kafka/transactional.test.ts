import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { describe, test } from 'node:test'
import { isLifelineError, type LifelineError } from '../../src/errors.js'
import { createTransactionalProducer, type ConsumedRecord, type KafkaConsumer, type TopicPartitionOffset, type TransactionalProducer, type TransactionalProducerOptions } from '../../src/kafka/index.js'
import { transactionError, transactionErrorKind } from '../../src/kafka/transactional.js'
import { admin, brokers, consumer, defer, pollUntil, producer, PROBE, randomName, topic, waitFor, waitForCoordinatorAbort } from '../helpers/kafka.js'

const END = '__end__'

function txProducer(t: TestContext, options: Partial<TransactionalProducerOptions> = {}): TransactionalProducer {
  const p = createTransactionalProducer({ brokers: brokers(), transactionalId: randomName('txn'), ...options })
  defer(t, () => p.close())
  return p
}

/** Appends an end marker to every partition: a plain write, after the transactions under test ended. */
async function markEnd(t: TestContext, name: string, partitions: number): Promise<void> {
  await producer(t).send(Array.from({ length: partitions }, (_, partition) => ({ topic: name, partition, key: END, value: END })))
}

/** The values before the end markers, as a reader with this isolation level sees them. */
async function readToEnd(t: TestContext, name: string, partitions: number, isolationLevel: 'read_committed' | 'read_uncommitted'): Promise<string[]> {
  const c = consumer(t, { groupId: randomName('reader'), isolationLevel })
  c.subscribe([name])
  const values: string[] = []
  const ended = new Set<number>()
  await waitFor(async () => {
    for (const r of await c.poll(500, 200)) {
      if (r.key?.toString() === END) ended.add(r.partition)
      else if (!ended.has(r.partition)) values.push(r.value!.toString())
    }
    return ended.size === partitions
  }, `a ${isolationLevel} reader to reach the end of ${name}`)
  await c.close()
  return values
}

/** The offset after the last record of each partition in `records`. */
function nextOffsets(records: readonly ConsumedRecord[]): TopicPartitionOffset[] {
  const next = new Map<number, TopicPartitionOffset>()
  for (const r of records) next.set(r.partition, { topic: r.topic, partition: r.partition, offset: Math.max(next.get(r.partition)?.offset ?? 0, r.offset + 1) })
  return [...next.values()]
}

const sorted = (values: string[]) => [...values].sort()
const outputsOf = (records: readonly ConsumedRecord[], round: string) => records.map((r) => ({ topic: '', key: r.key, value: `${r.value!.toString()}:${round}` }))

/** An input topic with `count` records over 2 partitions, and an empty output topic. */
async function setup(t: TestContext, count: number) {
  const input = await topic(t, { partitions: 2, prefix: 'txn-in' })
  const output = await topic(t, { partitions: 2, prefix: 'txn-out' })
  await producer(t).send(Array.from({ length: count }, (_, i) => ({ topic: input, key: `k${i}`, value: `v${i}` })))
  return { input, output, values: Array.from({ length: count }, (_, i) => `v${i}`) }
}

describe('transactional producer: error classification', () => {
  test('fenced, fatal, abortable and retriable are told apart by code and flags, never by message', () => {
    assert.equal(transactionErrorKind({ code: -144 }), 'fenced') // ERR__FENCED
    assert.equal(transactionErrorKind({ code: 90, isFatal: false }), 'fenced') // PRODUCER_FENCED
    assert.equal(transactionErrorKind({ code: 47 }), 'fenced') // INVALID_PRODUCER_EPOCH (delivery reports)
    assert.equal(transactionErrorKind({ code: -150, isFatal: true }), 'fatal')
    assert.equal(transactionErrorKind({ code: 51, isTxnRequiresAbort: true, isRetriable: true }), 'abortable')
    assert.equal(transactionErrorKind({ code: -185, isRetriable: true }), 'retriable')
    assert.equal(transactionErrorKind({ code: -172, message: 'this instance has been fenced' }), 'failed')
    assert.equal(transactionErrorKind(null), 'failed')
    assert.equal(transactionErrorKind('fenced'), 'failed')
  })

  test('a fenced error becomes LL_FENCED; any other failure LL_TRANSACTION with its cause', () => {
    const fencedCause = Object.assign(new Error('fenced'), { code: -144, isFatal: true })
    const fenced = transactionError('commitTransaction', fencedCause, 'tx-1')
    assert.equal(fenced.code, 'LL_FENCED')
    assert.equal(fenced.retriable, false)
    assert.equal(fenced.cause, fencedCause)
    assert.equal(fenced.details.transactionalId, 'tx-1')

    const abortable = transactionError('sendOffsetsToTransaction', { code: 22, isTxnRequiresAbort: true }, 'tx-1')
    assert.equal(abortable.code, 'LL_TRANSACTION')
    assert.equal(abortable.retriable, true)
    assert.equal(abortable.details.kind, 'abortable')
    assert.equal(abortable.details.nativeCode, 22)

    const fatal = transactionError('commitTransaction', { code: -150, isFatal: true }, 'tx-1')
    assert.equal(fatal.code, 'LL_TRANSACTION')
    assert.equal(fatal.retriable, false)
    assert.equal(fatal.details.kind, 'fatal')
  })

  test('a fenced-looking error is a broker-side timeout only for a transaction older than transaction.timeout.ms (librdkafka reports both as ERR__FENCED, fatal)', () => {
    const reported = Object.assign(new Error('Failed to end transaction: Local: This instance has been fenced by a newer instance'), { code: -144, isFatal: true, isRetriable: false, isTxnRequiresAbort: false })
    const young = transactionError('commitTransaction', reported, 'tx-1', { ageMs: 4_999, timeoutMs: 5_000 })
    assert.equal(young.code, 'LL_FENCED', 'a transaction younger than the timeout cannot have timed out: a real fence')
    const old = transactionError('commitTransaction', reported, 'tx-1', { ageMs: 5_000, timeoutMs: 5_000 })
    assert.equal(old.code, 'LL_TRANSACTION')
    assert.equal(old.details.kind, 'timed-out')
    assert.equal(old.retriable, true)
    assert.equal(old.details.transactionTimeoutMs, 5_000)
    // INVALID_PRODUCER_EPOCH in a delivery report (no flags) is judged the same way.
    assert.equal(transactionError('delivery to out', { code: 47 }, 'tx-1', { ageMs: 61_000, timeoutMs: 60_000 }).details.kind, 'timed-out')
    // Outside a transaction there is nothing to time out.
    assert.equal(transactionError('initTransactions', reported, 'tx-1').code, 'LL_FENCED')
    // A fatal error that is not a fence stays fatal whatever the age.
    assert.equal(transactionError('commitTransaction', { code: -150, isFatal: true }, 'tx-1', { ageMs: 90_000, timeoutMs: 60_000 }).details.kind, 'fatal')
  })

  test('options are validated: transactionalId is required', () => {
    assert.throws(
      () => createTransactionalProducer({ brokers: brokers(), transactionalId: '' }),
      (err: LifelineError) => err.code === 'LL_OPTIONS_INVALID' && err.message.includes('transactionalProducer.transactionalId'),
    )
  })
})

describe('transactional producer against the real broker', () => {
  test('a committed transaction: read_committed sees every output exactly once and the group offsets moved with it', async (t) => {
    const { input, output, values } = await setup(t, 20)
    const groupId = randomName('txn-group')
    const c = consumer(t, { groupId })
    c.subscribe([input])
    const records = await pollUntil(c, 20)
    assert.equal(records.length, 20)

    const p = txProducer(t)
    await p.begin()
    assert.equal(p.inTransaction(), true)
    const acks = await p.send(outputsOf(records, 'r1').map((o) => ({ ...o, topic: output })))
    assert.equal(acks.length, 20)
    for (const ack of acks) assert.ok(ack.topic === output && ack.offset >= 0)
    await p.sendOffsets(nextOffsets(records), c)
    await p.commit()
    assert.equal(p.inTransaction(), false)

    const highs = await admin(t).topicOffsets(input)
    const committed = await admin(t).groupOffsets(groupId, input)
    assert.deepEqual(
      sorted(committed.map((o) => `${o.partition}:${o.offset}`)),
      sorted(highs.map((h) => `${h.partition}:${h.high}`)),
      'the group offsets are the end of the input',
    )
    await markEnd(t, output, 2)
    assert.deepEqual(sorted(await readToEnd(t, output, 2, 'read_committed')), sorted(values.map((v) => `${v}:r1`)))
  })

  test('an aborted transaction: invisible to read_committed, present for read_uncommitted, offsets unchanged so the input is read again', async (t) => {
    const { input, output, values } = await setup(t, 20)
    const groupId = randomName('txn-group')
    const first = consumer(t, { groupId })
    first.subscribe([input])
    const records = await pollUntil(first, 20)
    const p = txProducer(t)
    await p.begin()
    await p.send(outputsOf(records, 'aborted').map((o) => ({ ...o, topic: output })))
    await p.sendOffsets(nextOffsets(records), first)
    await p.abort()
    assert.equal(p.inTransaction(), false)
    assert.deepEqual((await admin(t).groupOffsets(groupId, input)).filter((o) => o.offset >= 0), [], 'no offset was committed')
    await first.close()

    // The same group reads the input again, and the same producer commits the second round.
    const second = consumer(t, { groupId })
    second.subscribe([input])
    const again = await pollUntil(second, 20)
    assert.deepEqual(sorted(again.map((r) => r.value!.toString())), sorted(values), 'the aborted input is read again')
    await p.begin()
    await p.send(outputsOf(again, 'committed').map((o) => ({ ...o, topic: output })))
    await p.sendOffsets(nextOffsets(again), second)
    await p.commit()

    await markEnd(t, output, 2)
    assert.deepEqual(sorted(await readToEnd(t, output, 2, 'read_committed')), sorted(values.map((v) => `${v}:committed`)))
    const uncommitted = await readToEnd(t, output, 2, 'read_uncommitted')
    assert.deepEqual(sorted(uncommitted), sorted([...values.map((v) => `${v}:aborted`), ...values.map((v) => `${v}:committed`)]))
  })

  test('a newer producer with the same transactional.id fences the older one: LL_FENCED, and its open transaction never becomes visible', async (t) => {
    const output = await topic(t, { partitions: 1, prefix: 'txn-out' })
    const transactionalId = randomName('txn')
    const zombie = txProducer(t, { transactionalId })
    await zombie.begin()
    await zombie.send([{ topic: output, value: 'from-zombie' }])
    const successor = txProducer(t, { transactionalId })
    await successor.connect()

    // The broker rejects the zombie's next write (INVALID_PRODUCER_EPOCH in its delivery report).
    // What librdkafka 2.15 reports: INVALID_PRODUCER_EPOCH (47) in the delivery report (flags unset), then
    // ERR__FENCED (-144, isFatal) for every transactional call. A broker-side timeout reports the same.
    await assert.rejects(zombie.send([{ topic: output, value: 'late-zombie' }]), (err: unknown) => isLifelineError(err, 'LL_FENCED') && err.details.nativeCode === 47)
    // Fenced is final: every later call rejects the same way.
    await assert.rejects(zombie.commit(), (err: unknown) => isLifelineError(err, 'LL_FENCED'))
    await assert.rejects(zombie.begin(), (err: unknown) => isLifelineError(err, 'LL_FENCED'))

    await successor.begin()
    await successor.send([{ topic: output, value: 'from-successor' }])
    await successor.commit()
    await markEnd(t, output, 1)
    assert.deepEqual(await readToEnd(t, output, 1, 'read_committed'), ['from-successor'])
    const uncommitted = await readToEnd(t, output, 1, 'read_uncommitted')
    assert.ok(uncommitted.includes('from-zombie'), 'the zombie did write before it was fenced')
    assert.ok(!uncommitted.includes('late-zombie'), 'the broker refused the write after fencing')
  })

  test('a broker-side transaction timeout is not a fence: the stalled transaction fails with LL_TRANSACTION kind timed-out, abort() re-initialises the producer and the next transaction commits', async (t) => {
    const output = await topic(t, { partitions: 1, prefix: 'txn-out' })
    const p = txProducer(t, { transactionTimeoutMs: 5000 })
    await p.begin()
    await p.send([{ topic: output, value: 'timed-out' }])
    // The coordinator aborts a transaction older than transaction.timeout.ms (and bumps the epoch, KIP-588):
    // until then a read_committed reader cannot pass it, after that it can.
    await waitForCoordinatorAbort(t, output)
    // librdkafka reports this exactly like a fence (INVALID_PRODUCER_EPOCH → fatal ERR__FENCED); the transaction
    // outlived transaction.timeout.ms, so it is a timeout, never LL_FENCED.
    await assert.rejects(p.commit(), (err: unknown) => {
      assert.ok(isLifelineError(err, 'LL_TRANSACTION'), `LL_TRANSACTION, not ${String(err)}`)
      assert.equal(err.details.kind, 'timed-out')
      assert.equal(err.retriable, true)
      assert.equal(err.details.nativeCode, -144)
      return true
    })
    await assert.rejects(p.send([{ topic: output, value: 'still-timed-out' }]), (err: unknown) => isLifelineError(err, 'LL_TRANSACTION') && err.details.kind === 'timed-out')
    assert.equal(p.inTransaction(), true, 'the timed-out transaction is open until abort()')
    await p.abort()
    assert.equal(p.inTransaction(), false)
    await p.begin()
    await p.send([{ topic: output, value: 'after-recovery' }])
    await p.commit()
    await markEnd(t, output, 1)
    assert.deepEqual((await readToEnd(t, output, 1, 'read_committed')).filter((v) => v !== PROBE), ['after-recovery'])
  })

  test('close() aborts an open transaction, so read_committed readers are not held back until the timeout', async (t) => {
    const output = await topic(t, { partitions: 1, prefix: 'txn-out' })
    // A reader held back by the open transaction would wait 60 s, twice the reader's deadline.
    const p = txProducer(t, { transactionTimeoutMs: 60_000 })
    await p.begin()
    await p.send([{ topic: output, value: 'never-committed' }])
    const closed = p.close()
    assert.equal(p.close(), closed, 'close() is idempotent')
    await closed
    await markEnd(t, output, 1)
    assert.deepEqual(await readToEnd(t, output, 1, 'read_committed'), [])
  })

  test('misuse is reported: send() outside a transaction, sendOffsets() with a foreign consumer', async (t) => {
    const output = await topic(t, { partitions: 1, prefix: 'txn-out' })
    const p = txProducer(t)
    await p.connect()
    await assert.rejects(p.send([{ topic: output, value: 'x' }]), (err: unknown) => isLifelineError(err, 'LL_TRANSACTION') && !err.retriable)
    await p.begin()
    await assert.rejects(p.sendOffsets([{ topic: output, partition: 0, offset: 1 }], {} as KafkaConsumer), (err: unknown) => isLifelineError(err, 'LL_ARGUMENT_INVALID'))
    await p.abort()
    await p.close()
    await assert.rejects(p.begin(), (err: unknown) => isLifelineError(err, 'LL_KAFKA_CLOSED'))
  })
})
