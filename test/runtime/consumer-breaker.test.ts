import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import type { Transition } from '../../src/retry/circuit-breaker.js'
import { NonRetriableError } from '../../src/retry/classify.js'
import { producer, topic, waitFor } from '../helpers/kafka.js'
import { lifeline } from '../helpers/lifeline.js'
import { redisCommand, startRedis } from '../helpers/redis.js'

test('the breaker opens when a real Redis downstream goes away and closes when it returns; nothing is dead-lettered', async (t) => {
  const redis = await startRedis(t)
  const source = await topic(t, { partitions: 2 })
  const registry = new Registry()
  const done = new Set<number>()
  const transitions: Transition[] = []
  let deadLetters = 0
  const c = await lifeline<{ i: number }>(t, {
    topics: [source],
    concurrency: 4,
    metrics: { registry },
    retry: { maxAttempts: 3, backoff: { type: 'fixed', ms: 20 } },
    circuitBreaker: { windowMs: 5_000, minimumCalls: 4, failureRateThreshold: 0.5, openMs: 200, successesToClose: 2 },
    handler: async ({ value }) => {
      await redisCommand(redis.port, ['INCR', `n:${value.i}`])
      done.add(value.i)
    },
  })
  c.on('breaker', (tr) => transitions.push(tr))
  c.on('dead-letter', () => deadLetters++)
  const p = producer(t)
  const send = (from: number, count: number) => p.send(Array.from({ length: count }, (_, k) => ({ topic: source, key: `k${(from + k) % 7}`, value: JSON.stringify({ i: from + k }) })))

  await send(0, 10)
  await waitFor(() => done.size === 10, 'the first records with Redis up')

  await redis.stop()
  await send(10, 30)
  await waitFor(() => transitions.some((tr) => tr.to === 'open'), 'the breaker to open')
  await waitFor(() => c.stats().paused.length === 2, 'every partition to pause')
  assert.match(await registry.getSingleMetricAsString('lifeline_circuit_state'), /lifeline_circuit_state\{group="[^"]+"\} [12]/)
  // While Redis is down, probes keep failing (open → half-open → open): still nothing dead-lettered.
  await waitFor(() => transitions.filter((tr) => tr.to === 'half-open').length >= 2, 'a failed probe')
  assert.equal(deadLetters, 0)

  await redis.start()
  await waitFor(() => transitions.at(-1)?.to === 'closed', 'the breaker to close', 30_000)
  await waitFor(() => done.size === 40, 'every record applied after recovery', 30_000)
  assert.equal(deadLetters, 0, 'an outage sends nothing to the DLQ')
  assert.equal(c.stats().paused.length, 0)
  assert.match(await registry.getSingleMetricAsString('lifeline_circuit_transitions_total'), /to="open"/)
})

test('permanent failures (NonRetriableError from the handler) never open the breaker', async (t) => {
  const source = await topic(t)
  const transitions: Transition[] = []
  let deadLetters = 0
  const c = await lifeline(t, {
    topics: [source],
    circuitBreaker: { minimumCalls: 3, failureRateThreshold: 0.5, openMs: 100 },
    handler: ({ value }) => {
      throw new NonRetriableError(`bad order ${(value as { i: number }).i}`)
    },
  })
  c.on('breaker', (tr) => transitions.push(tr))
  c.on('dead-letter', () => deadLetters++)
  await producer(t).send(Array.from({ length: 8 }, (_, i) => ({ topic: source, key: `k${i}`, value: JSON.stringify({ i }) })))
  await waitFor(() => deadLetters === 8, 'eight bad records dead-lettered')
  assert.deepEqual(transitions, [])
})
