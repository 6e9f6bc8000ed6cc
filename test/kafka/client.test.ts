import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { createAdmin } from '../../src/kafka/index.js'
import { admin, brokers, consumer, pollUntil, producer, randomName, topic, defer } from '../helpers/kafka.js'

describe('kafka client against the real broker', () => {
  test('produce and consume keep keys, values and headers byte-identical', async (t) => {
    const name = await topic(t, { partitions: 3 })
    const p = producer(t)
    const binary = Buffer.from([0, 255, 1, 254, 0x80])
    const acks = await p.send([
      { topic: name, key: 'order-1', value: '{"id":1}', headers: [{ key: 'trace', value: Buffer.from('a') }, { key: 'trace', value: Buffer.from('b') }] },
      { topic: name, key: binary, value: binary, headers: [{ key: 'bin', value: binary }] },
      { topic: name, key: null, value: null, partition: 2 },
    ])
    assert.equal(acks.length, 3)
    assert.equal(acks[2]!.partition, 2)
    for (const ack of acks) assert.ok(ack.offset >= 0)

    const c = consumer(t, { groupId: randomName('g') })
    c.subscribe([name])
    const got = await pollUntil(c, 3)
    assert.equal(got.length, 3)
    const byOffset = (topicPartition: number, offset: number) => got.find((r) => r.partition === topicPartition && r.offset === offset)
    const first = byOffset(acks[0]!.partition, acks[0]!.offset)!
    assert.equal(first.key?.toString(), 'order-1')
    assert.equal(first.value?.toString(), '{"id":1}')
    // Kafka headers are an ordered list: a repeated key is kept twice, in order.
    assert.deepEqual(first.headers.map((h) => [h.key, h.value?.toString()]), [['trace', 'a'], ['trace', 'b']])
    const second = byOffset(acks[1]!.partition, acks[1]!.offset)!
    assert.deepEqual(second.key, binary)
    assert.deepEqual(second.value, binary)
    assert.deepEqual(second.headers[0]!.value, binary)
    const third = byOffset(2, acks[2]!.offset)!
    assert.equal(third.key, null)
    assert.equal(third.value, null)
    assert.ok(third.timestamp > 0)
  })

  test('the same key always lands on the same partition', async (t) => {
    const name = await topic(t, { partitions: 6 })
    const acks = await producer(t).send(Array.from({ length: 20 }, (_, i) => ({ topic: name, key: 'same-key', value: String(i) })))
    assert.equal(new Set(acks.map((a) => a.partition)).size, 1)
    assert.deepEqual(acks.map((a) => a.offset), acks.map((_, i) => acks[0]!.offset + i))
  })

  test('topics are created with their partition count and configs, and creation is idempotent', async (t) => {
    const name = randomName('cfg')
    const a = createAdmin({ brokers: brokers() })
    defer(t, async () => {
      await a.deleteTopics([name])
      await a.close()
    })
    const created = await a.createTopics([{ topic: name, partitions: 4, configs: { 'max.message.bytes': '2048', 'cleanup.policy': 'delete', 'retention.ms': '3600000' } }])
    assert.deepEqual(created, [name])
    assert.deepEqual(await a.createTopics([{ topic: name, partitions: 4 }]), [], 'a second create is a no-op')
    const [described] = await a.describeTopics([name])
    assert.equal(described!.partitions.length, 4)
    assert.ok((await a.listTopics()).includes(name))

    // The config is live on the broker: a record above max.message.bytes is refused, a small one is not.
    const p = producer(t, { deliveryTimeoutMs: 10_000 })
    await p.send([{ topic: name, value: Buffer.alloc(100) }])
    await assert.rejects(p.send([{ topic: name, value: Buffer.alloc(8192, 1) }]), (err: unknown) => {
      assert.ok(isLifelineError(err, 'LL_KAFKA_PRODUCE'))
      assert.match((err as Error).message, /too large|MSG_SIZE_TOO_LARGE|RecordTooLarge/i)
      return true
    })
  })

  test('a consumer group commits and a new member resumes after the committed offset', async (t) => {
    const name = await topic(t, { partitions: 1 })
    const groupId = randomName('resume')
    await producer(t).send(Array.from({ length: 10 }, (_, i) => ({ topic: name, key: `k${i}`, value: `v${i}` })))

    const first = consumer(t, { groupId })
    first.subscribe([name])
    const all = await pollUntil(first, 10)
    assert.equal(all.length, 10)
    // Process 6 records, commit the next offset to read (6), then leave.
    await first.commit([{ topic: name, partition: 0, offset: 6 }])
    assert.deepEqual((await first.committed([{ topic: name, partition: 0 }])).map((o) => o.offset), [6])
    await first.close()

    const a = admin(t)
    assert.deepEqual(await a.groupOffsets(groupId, name), [{ partition: 0, offset: 6 }])
    assert.deepEqual(await a.topicOffsets(name), [{ partition: 0, low: 0, high: 10 }])

    const second = consumer(t, { groupId })
    second.subscribe([name])
    const rest = await pollUntil(second, 4)
    assert.deepEqual(rest.map((r) => r.offset), [6, 7, 8, 9])
    assert.deepEqual(rest.map((r) => r.value?.toString()), ['v6', 'v7', 'v8', 'v9'])
  })

  test('pause stops one partition only, resume delivers what it held back', async (t) => {
    const name = await topic(t, { partitions: 2 })
    const c = consumer(t, { groupId: randomName('pause') })
    c.subscribe([name])
    const p = producer(t)
    await p.send([{ topic: name, partition: 0, value: 'warm-0' }, { topic: name, partition: 1, value: 'warm-1' }])
    assert.equal((await pollUntil(c, 2)).length, 2)

    c.pause([{ topic: name, partition: 0 }])
    await p.send([{ topic: name, partition: 0, value: 'held' }, { topic: name, partition: 1, value: 'flows' }])
    const whilePaused = await pollUntil(c, 2, 3000)
    assert.deepEqual(whilePaused.map((r) => r.value?.toString()), ['flows'])

    c.resume([{ topic: name, partition: 0 }])
    const afterResume = await pollUntil(c, 1)
    assert.deepEqual(afterResume.map((r) => r.value?.toString()), ['held'])
  })

  test('rebalance hooks see the assignment and a revocation waits for the hook', async (t) => {
    const name = await topic(t, { partitions: 2 })
    const events: string[] = []
    const c = consumer(t, {
      groupId: randomName('rb'),
      rebalance: {
        onAssign: (parts) => void events.push(`assign:${parts.map((p) => p.partition).sort().join(',')}`),
        onRevoke: async (parts) => {
          await new Promise((r) => setTimeout(r, 200))
          events.push(`revoke:${parts.map((p) => p.partition).sort().join(',')}`)
        },
      },
    })
    c.subscribe([name])
    await pollUntil(c, 1, 3000)
    assert.deepEqual(events, ['assign:0,1'])
    assert.equal(c.assignment().length, 2)
    await c.close()
    assert.deepEqual(events, ['assign:0,1', 'revoke:0,1'])
  })

  test('close() is idempotent and use after close is a clear error', async (t) => {
    const p = producer(t)
    const first = p.close()
    assert.equal(p.close(), first)
    await first
    await assert.rejects(p.send([{ topic: 'x', value: 'y' }]), (err: unknown) => isLifelineError(err, 'LL_KAFKA_CLOSED'))
  })
})
