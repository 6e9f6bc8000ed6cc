import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { FAULT_KINDS, parseFaults, planSchedule } from '../../src/rehearsal/nemesis.js'

const base = { seed: 42, durationMs: 300_000, periodMs: 30_000, consumers: 3, brokers: 3, sessionTimeoutMs: 6000, crashPoints: ['park.after-state', 'commit.after'] }

describe('nemesis schedule', () => {
  test('the same seed gives the same schedule; faults stay inside their period, after a quiet warm-up', () => {
    const kinds = parseFaults('all')
    const a = planSchedule({ ...base, kinds })
    assert.deepEqual(a, planSchedule({ ...base, kinds }))
    assert.notDeepEqual(a, planSchedule({ ...base, seed: 43, kinds }))
    assert.ok(a.length >= 3)
    for (const f of a) {
      const period = Math.floor(f.startMs / base.periodMs)
      assert.ok(period >= 1, 'the first period is quiet')
      assert.ok(f.endMs > f.startMs)
      assert.ok(f.endMs <= (period + 1) * base.periodMs, `${f.kind} heals within its period`)
      if (f.kind === 'pause') assert.ok(f.endMs - f.startMs > base.sessionTimeoutMs, 'a pause outlasts the session timeout')
      if (f.kind === 'crash-point') assert.match(f.detail!, /^(park\.after-state|commit\.after):[12]$/)
      if (f.target !== undefined && f.kind.startsWith('broker')) assert.ok(f.target >= 1 && f.target <= 3)
    }
  })

  test('only the enabled kinds are scheduled; none schedules nothing', () => {
    assert.ok(planSchedule({ ...base, kinds: ['kill'] }).every((f) => f.kind === 'kill'))
    assert.deepEqual(planSchedule({ ...base, kinds: parseFaults('none') }), [])
  })

  test('--faults takes kinds and groups; an unknown name is refused', () => {
    assert.deepEqual(parseFaults('kill,broker').sort(), ['broker-kill', 'broker-kill-all', 'broker-restart', 'kill'])
    assert.equal(parseFaults('all').length, Object.keys(FAULT_KINDS).length)
    assert.throws(() => parseFaults('kill,meteor'), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /meteor/.test((e as Error).message))
  })
})
