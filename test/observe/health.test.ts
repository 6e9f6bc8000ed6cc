import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { isLifelineError } from '../../src/errors.js'
import { judgeHealth, watchConsumerHealth, type HealthInput, type WatchedConsumer } from '../../src/observe/health.js'

const limits = { pollTimeoutMs: 30_000, stallTimeoutMs: 60_000 }
const base: HealthInput = { now: 1_000_000, watchingSince: 900_000, lastPollAt: 999_900, lastProgressAt: 999_000, assigned: 2, inFlight: 0, buffered: 0 }

describe('judgeHealth (pure)', () => {
  test('a polling, assigned, idle consumer is live and ready', () => {
    const r = judgeHealth(base, limits)
    assert.deepEqual({ live: r.live, ready: r.ready, stalled: r.stalled, reasons: r.reasons, pollAgeMs: r.pollAgeMs, stalledForMs: r.stalledForMs }, { live: true, ready: true, stalled: false, reasons: [], pollAgeMs: 100, stalledForMs: 0 })
  })

  test('no poll within pollTimeoutMs: not live, not ready', () => {
    const r = judgeHealth({ ...base, lastPollAt: base.now - 30_001 }, limits)
    assert.equal(r.live, false)
    assert.equal(r.ready, false)
    assert.deepEqual(r.reasons, ['no poll for 30001 ms'])
    assert.equal(judgeHealth({ ...base, lastPollAt: base.now - 30_000 }, limits).live, true, 'the limit itself is still live')
  })

  test('before the first poll the watch start stands in for it', () => {
    assert.equal(judgeHealth({ ...base, lastPollAt: undefined, watchingSince: base.now - 1000 }, limits).live, true)
    const late = judgeHealth({ ...base, lastPollAt: undefined, watchingSince: base.now - 40_000 }, limits)
    assert.equal(late.live, false)
    assert.deepEqual(late.reasons, ['no poll yet after 40000 ms'])
  })

  test('nothing assigned: live but not ready', () => {
    const r = judgeHealth({ ...base, assigned: 0 }, limits)
    assert.equal(r.live, true)
    assert.equal(r.ready, false)
    assert.deepEqual(r.reasons, ['no partition assigned'])
  })

  test('records waiting with no progress past stallTimeoutMs: stalled, live, not ready', () => {
    const r = judgeHealth({ ...base, inFlight: 3, buffered: 5, lastProgressAt: base.now - 60_001 }, limits)
    assert.equal(r.stalled, true)
    assert.equal(r.live, true)
    assert.equal(r.ready, false)
    assert.deepEqual(r.reasons, ['stalled: 8 record(s) waiting, none finished for 60001 ms'])
    assert.equal(judgeHealth({ ...base, inFlight: 3, lastProgressAt: base.now - 60_000 }, limits).stalled, false, 'the limit itself is not stalled')
  })

  test('an idle consumer is never stalled, however old its last progress', () => {
    const r = judgeHealth({ ...base, lastProgressAt: 0 }, limits)
    assert.equal(r.stalled, false)
    assert.equal(r.stalledForMs, 0)
  })

  test('every reason is listed at once', () => {
    const r = judgeHealth({ ...base, lastPollAt: 0, assigned: 0, buffered: 1, lastProgressAt: 0 }, limits)
    assert.equal(r.reasons.length, 3)
  })
})

/** A stand-in for the consumer's public surface (stats + events): watchConsumerHealth's own logic only. */
function fakeConsumer(stats: ReturnType<WatchedConsumer['stats']>): WatchedConsumer & EventEmitter {
  return Object.assign(new EventEmitter(), { stats: () => stats }) as unknown as WatchedConsumer & EventEmitter
}
const stats = (over: Partial<ReturnType<WatchedConsumer['stats']>> = {}) => ({ inFlight: 0, buffered: 0, assigned: [{ topic: 't', partition: 0 }], paused: [], parkedKeys: 0, reorderBuffered: 0, lastPollAt: Date.now(), ...over })

describe('watchConsumerHealth', () => {
  test('invalid options are refused with LL_OPTIONS_INVALID naming the option', () => {
    const c = fakeConsumer(stats())
    assert.throws(() => watchConsumerHealth({ consumer: c, group: '' }), (e) => isLifelineError(e) && e.code === 'LL_OPTIONS_INVALID' && /health\.group/.test(e.message))
    assert.throws(() => watchConsumerHealth({ consumer: {} as WatchedConsumer, group: 'g' }), (e) => isLifelineError(e) && /health\.consumer/.test(e.message))
    assert.throws(() => watchConsumerHealth({ consumer: c, group: 'g', stallTimeoutMs: 0 }), (e) => isLifelineError(e) && /health\.stallTimeoutMs/.test(e.message))
    assert.throws(() => watchConsumerHealth({ consumer: c, group: 'g', pollTimeoutMs: 1.5 }), (e) => isLifelineError(e) && /health\.pollTimeoutMs/.test(e.message))
  })

  test('gauges per group in the registry; close() removes the listeners and the series, twice returns the same promise', async () => {
    const registry = new Registry()
    const waiting = stats({ inFlight: 2 })
    const c = fakeConsumer(waiting)
    const h = watchConsumerHealth({ consumer: c, group: 'billing', registry, stallTimeoutMs: 1 })
    assert.ok(c.listenerCount('processed') > 0 && c.listenerCount('commit') > 0)
    const started = Date.now()
    while (Date.now() - started < 5) await new Promise((r) => setTimeout(r, 5))
    const text = await registry.metrics()
    assert.match(text, /lifeline_consumer_stalled\{group="billing"\} 1/)
    assert.match(text, /lifeline_consumer_ready\{group="billing"\} 0/)
    assert.match(text, /lifeline_consumer_last_poll_age_seconds\{group="billing"\} \d/)
    c.emit('processed', { topic: 't', partition: 0, offset: 1, attempts: 1, durationMs: 1 })
    assert.equal(h.check().stalled, false, 'a progress event resets the stall clock')
    const first = h.close()
    assert.equal(h.close(), first)
    await first
    assert.equal(c.listenerCount('processed'), 0)
    assert.equal(c.listenerCount('commit'), 0)
    assert.doesNotMatch(await registry.metrics(), /group="billing"/)
  })
})
