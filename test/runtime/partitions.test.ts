/**
 * Scenario 15 of issue 10, for every pause reason: a partition paused for it is left unpaused in the client
 * when it is revoked, lost, fenced or closed (stopPartitions: every one of those paths), and a re-assignment
 * sets the client's flag to what the new state says (syncClientPause). Pure bookkeeping, a recording double
 * for the Kafka client; the end-to-end case on the real broker is consumer-protocol's scenario 15 test.
 */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import { KeyScheduler } from '../../src/runtime/key-scheduler.js'
import { newPartitionState, pause, resume, stopPartitions, syncClientPause } from '../../src/runtime/consumer/partitions.js'
import type { ConsumerContext } from '../../src/runtime/consumer/context.js'

/** Every reason the runtime pauses a partition for (grep `pause(ctx` and `retrying(ctx` in src/runtime/consumer). */
const REASONS = ['backpressure', 'memory', 'retry-delay', 'breaker', 'state', 'dead-letter'] as const

function context() {
  const paused = new Set<string>()
  const calls: string[] = []
  const kafka = {
    pause: (tps: Array<{ topic: string; partition: number }>) => tps.forEach((tp) => (paused.add(`${tp.topic}/${tp.partition}`), calls.push(`pause ${tp.topic}/${tp.partition}`))),
    resume: (tps: Array<{ topic: string; partition: number }>) => tps.forEach((tp) => (paused.delete(`${tp.topic}/${tp.partition}`), calls.push(`resume ${tp.topic}/${tp.partition}`))),
  }
  const ctx = {
    kafka,
    options: { tierTopics: new Map() },
    parking: false,
    scheduler: new KeyScheduler({ ordering: 'key', concurrency: Number.MAX_SAFE_INTEGER }),
    bufferedBytes: 0,
    emitter: new EventEmitter(),
    log: { warn: () => undefined },
  } as unknown as ConsumerContext
  return { ctx, paused, calls }
}

for (const reason of REASONS) {
  test(`a partition paused for '${reason}' is unpaused in the client when it is stopped (revoke, loss, fence, close), and a re-assignment starts unpaused`, () => {
    const { ctx, paused } = context()
    const tp = { topic: 't', partition: 0 }
    const state = newPartitionState(ctx, tp)
    pause(ctx, state, reason)
    assert.deepEqual([...paused], ['t/0'])
    stopPartitions(ctx, [state])
    assert.deepEqual([...paused], [], 'stopping a paused partition resumes it in the client')
    // A late resume or pause of the stopped state (a timer, a write finishing) never touches the client.
    pause(ctx, state, 'backpressure')
    resume(ctx, state, reason)
    assert.deepEqual([...paused], [])
    // The client still holds the partition paused (say the stop raced the client's own revocation): the
    // next assignment sets the flag to what the new state says.
    ctx.kafka!.pause([tp])
    const again = newPartitionState(ctx, tp)
    syncClientPause(ctx, [again])
    assert.deepEqual([...paused], [], 'the re-assigned partition runs')
  })
}

test('a pause with several reasons resumes in the client only when the last reason is gone; a re-assignment keeps a partition paused that its new state pauses', () => {
  const { ctx, paused, calls } = context()
  const state = newPartitionState(ctx, { topic: 't', partition: 1 })
  pause(ctx, state, 'backpressure')
  pause(ctx, state, 'state')
  resume(ctx, state, 'backpressure')
  assert.deepEqual([...paused], ['t/1'])
  resume(ctx, state, 'state')
  assert.deepEqual([...paused], [])
  assert.deepEqual(calls, ['pause t/1', 'resume t/1'], 'one client call each way')
  const fresh = newPartitionState(ctx, { topic: 't', partition: 2 })
  fresh.pausedFor.add('retry-delay')
  syncClientPause(ctx, [fresh])
  assert.deepEqual([...paused], ['t/2'])
})
