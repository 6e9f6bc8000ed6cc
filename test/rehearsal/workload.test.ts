import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { eventValue, generateWorkload } from '../../src/rehearsal/workload.js'

describe('rehearsal workload', () => {
  test('the same seed gives the same workload; another seed another', () => {
    const a = generateWorkload({ events: 2000, keys: 50, seed: 7 })
    const b = generateWorkload({ events: 2000, keys: 50, seed: 7 })
    const c = generateWorkload({ events: 2000, keys: 50, seed: 8 })
    assert.deepEqual(a, b)
    assert.notDeepEqual(a.sends, c.sends)
  })

  test('per-key sequences run 1..n without gaps, ids are unique', () => {
    const w = generateWorkload({ events: 5000, keys: 40, seed: 1 })
    assert.equal(new Set(w.events.map((e) => e.id)).size, 5000)
    const byKey = new Map<string, number[]>()
    for (const e of w.events) byKey.set(e.key, [...(byKey.get(e.key) ?? []), e.seq])
    for (const seqs of byKey.values()) assert.deepEqual(seqs, seqs.map((_, i) => i + 1))
  })

  test('fractions of poison, transient, duplicates, out-of-order and delayed sends are close to the asked ones', () => {
    const w = generateWorkload({ events: 20_000, keys: 500, seed: 3, poison: 0.01, transient: 0.05, duplicates: 0.02, outOfOrder: 0.03, delayed: 0.01 })
    const near = (n: number, expected: number) => assert.ok(Math.abs(n / 20_000 - expected) < expected * 0.3 + 0.001, `${n / 20_000} vs ${expected}`)
    near(w.events.filter((e) => e.kind === 'poison').length, 0.01)
    near(w.events.filter((e) => e.kind === 'transient').length, 0.05)
    near(w.sends.filter((s) => s.reason === 'duplicate').length, 0.02)
    near(w.sends.filter((s) => s.reason === 'out-of-order').length, 0.03)
    near(w.sends.filter((s) => s.reason === 'delayed').length, 0.01)
    assert.ok(w.events.filter((e) => e.kind === 'transient').every((e) => e.fail >= 1 && e.fail <= 3))
    assert.ok(w.sends.filter((s) => s.reason === 'out-of-order').every((s) => s.producer === 'b'))
  })

  test('sends are ordered by time, every event is sent at least once, and a duplicate carries the same bytes', () => {
    const w = generateWorkload({ events: 1000, keys: 20, seed: 5, duplicates: 0.2 })
    for (let i = 1; i < w.sends.length; i++) assert.ok(w.sends[i]!.atMs >= w.sends[i - 1]!.atMs)
    assert.equal(new Set(w.sends.map((s) => s.eventId)).size, 1000)
    const dup = w.sends.find((s) => s.copy === 1)!
    assert.deepEqual(eventValue(w.byId.get(dup.eventId)!), eventValue(w.byId.get(dup.eventId)!))
    assert.ok(eventValue(w.events[0]!).length >= 100)
  })

  test('bad options are refused with LL_OPTIONS_INVALID naming the option', () => {
    assert.throws(() => generateWorkload({ events: 0, keys: 1, seed: 1 }), (e: unknown) => isLifelineError(e, 'LL_OPTIONS_INVALID') && /workload.events/.test((e as Error).message))
    assert.throws(() => generateWorkload({ events: 10, keys: 1, seed: 1, poison: 2 }), (e: unknown) => isLifelineError(e, 'LL_OPTIONS_INVALID') && /workload.poison/.test((e as Error).message))
  })
})
