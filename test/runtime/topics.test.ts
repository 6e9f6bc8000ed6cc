import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { ensureTopics } from '../../src/runtime/topics.js'
import { admin, randomName, topic, defer } from '../helpers/kafka.js'

test('ensureTopics creates each DLQ with the source partition count and is idempotent', async (t) => {
  const source = await topic(t, { partitions: 5 })
  const a = admin(t)
  const service = randomName('svc')
  defer(t, () => a.deleteTopics([`${service}.${source}.dlq`]))
  const first = await ensureTopics(a, { service, topics: [source] })
  assert.deepEqual(first, [{ topic: `${service}.${source}.dlq`, role: 'dlq', source, partitions: 5, created: true }])
  const [dlq] = await a.describeTopics([`${service}.${source}.dlq`])
  assert.equal(dlq!.partitions.length, 5)
  const second = await ensureTopics(a, { service, topics: [source] })
  assert.equal(second[0]!.created, false)
})

test('ensureTopics refuses a DLQ with fewer partitions than its source, and a missing source', async (t) => {
  const source = await topic(t, { partitions: 4 })
  const service = randomName('svc')
  await topic(t, { topic: `${service}.${source}.dlq`, partitions: 2 })
  const a = admin(t)
  await assert.rejects(ensureTopics(a, { service, topics: [source] }), (err: unknown) => {
    assert.ok(isLifelineError(err, 'LL_TOPIC_INVALID'))
    assert.match((err as Error).message, /has 2 partition\(s\) but its source .* has 4/)
    return true
  })
  await assert.rejects(ensureTopics(a, { service, topics: [randomName('missing')] }), (err: unknown) => isLifelineError(err, 'LL_TOPIC_INVALID'))
})

test('checkOnly reports a missing DLQ instead of creating it, and reports the DLQ\'s own partition count', async (t) => {
  const source = await topic(t, { partitions: 2 })
  const service = randomName('svc')
  const a = admin(t)
  await assert.rejects(ensureTopics(a, { service, topics: [source], checkOnly: true }), (err: unknown) => isLifelineError(err, 'LL_TOPIC_INVALID') && /missing and provisioning is off/.test((err as Error).message))
  assert.equal((await a.listTopics()).includes(`${service}.${source}.dlq`), false)
  await topic(t, { topic: `${service}.${source}.dlq`, partitions: 6 })
  const [checked] = await ensureTopics(a, { service, topics: [source], checkOnly: true })
  assert.equal(checked!.partitions, 6)
  assert.equal(checked!.created, false)
})
