import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { BAD_KINDS, check, type AnomalyKind } from '../../src/rehearsal/checker.js'
import type { DlqEntry, EffectRow, History, MemberEntry, ProduceEntry } from '../../src/rehearsal/history.js'
import { eventValue, type RehearsalEvent } from '../../src/rehearsal/workload.js'

const TOPIC = 'rh.events'
const T0 = 1_700_000_000_000

function ev(id: string, key: string, seq: number, kind: RehearsalEvent['kind'] = 'ok'): RehearsalEvent {
  return { id, key, seq, kind, fail: kind === 'transient' ? 1 : 0, pad: '' }
}

const sha = (e: RehearsalEvent) => createHash('sha256').update(eventValue(e)).digest('hex')

/**
 * A clean history of a tiny rehearsal: keys a (partition 0) and b (partition 1); b's second event is
 * poison: it failed before the fix, went to the DLQ, was redriven after the fix and applied, and b's
 * third event (held behind it) applied after it. One member owned both partitions throughout.
 */
function cleanHistory(): History {
  const events = [ev('e1', 'a', 1), ev('e2', 'b', 1), ev('e3', 'a', 2, 'transient'), ev('e4', 'b', 2, 'poison'), ev('e5', 'a', 3), ev('e6', 'b', 3)]
  const partitionOf = (e: RehearsalEvent) => (e.key === 'a' ? 0 : 1)
  const next = [0, 0]
  const produces: ProduceEntry[] = events.map((e, i) => {
    const p = partitionOf(e)
    return { eventId: e.id, copy: 0, producer: 'a', at: T0 + i * 10, doneAt: T0 + i * 10 + 5, outcome: 'ok', partition: p, offset: next[p]!++ }
  })
  const member = 'c0.1'
  const members: MemberEntry[] = [{ type: 'assigned', at: T0, member, partitions: [{ topic: TOPIC, partition: 0 }, { topic: TOPIC, partition: 1 }] }]
  const effects: EffectRow[] = []
  let t = T0 + 100
  let inv = 0
  const run = (e: RehearsalEvent, outcome: 'returned' | 'threw', tier?: number, who = member) => {
    const ack = produces.find((p) => p.eventId === e.id)!
    const id = `i${++inv}`
    const base = { type: 'apply' as const, member: who, inv: id, eventId: e.id, key: e.key, seq: e.seq, topic: TOPIC, partition: ack.partition!, offset: ack.offset!, attempt: 1, ...(tier === undefined ? {} : { tier }) }
    members.push({ ...base, at: t++, phase: 'start' })
    if (outcome === 'returned') effects.push({ eventId: e.id, key: e.key, seq: e.seq, inv: id, member: who, at: t })
    members.push({ ...base, at: t++, phase: outcome, ...(outcome === 'threw' ? { error: 'poison' } : {}) })
    return ack
  }
  const [e1, e2, e3, e4, e5, e6] = events as [RehearsalEvent, RehearsalEvent, RehearsalEvent, RehearsalEvent, RehearsalEvent, RehearsalEvent]
  for (const e of [e1, e2]) {
    const ack = run(e, 'returned')
    members.push({ type: 'processed', at: t++, member, topic: TOPIC, partition: ack.partition!, offset: ack.offset! })
  }
  run(e3, 'threw')
  const a3 = run(e3, 'returned')
  members.push({ type: 'processed', at: t++, member, topic: TOPIC, partition: 0, offset: a3.offset! })
  const a4 = run(e4, 'threw')
  members.push({ type: 'retry-tier', at: t++, member, topic: TOPIC, partition: 1, offset: a4.offset! })
  members.push({ type: 'parked', at: t++, member, topic: TOPIC, partition: 1, offset: a4.offset!, key: 'b' })
  const a6 = produces.find((p) => p.eventId === 'e6')!
  members.push({ type: 'record-parked', at: t++, member, topic: TOPIC, partition: 1, offset: a6.offset!, key: 'b' })
  const a5 = run(e5, 'returned')
  members.push({ type: 'processed', at: t++, member, topic: TOPIC, partition: 0, offset: a5.offset! })
  members.push({ type: 'commit', at: t++, member, offsets: [{ topic: TOPIC, partition: 0, offset: 3 }, { topic: TOPIC, partition: 1, offset: 3 }] })
  const dlq: DlqEntry[] = [{ partition: 1, offset: 0, key: 'b', eventId: 'e4', valueSha: sha(e4), originTopic: TOPIC, originPartition: 1, originOffset: a4.offset!, replayId: undefined }]
  const healedAt = t++
  const fixedAt = t++
  // The redriven head runs from retry tier 1 on another member that owns only that tier's partition.
  members.push({ type: 'assigned', at: t++, member: 'c1.1', partitions: [{ topic: `svc.${TOPIC}.retry.1`, partition: 1 }] })
  run(e4, 'returned', 1, 'c1.1')
  run(e6, 'returned')
  return {
    topic: TOPIC,
    partitions: 2,
    events,
    produces,
    members,
    effects,
    dlq,
    offsets: [
      { at: T0 + 50, partitions: [{ partition: 0, committed: -1, high: 3 }, { partition: 1, committed: -1, high: 3 }] },
      { at: t + 10, partitions: [{ partition: 0, committed: 3, high: 3 }, { partition: 1, committed: 3, high: 3 }] },
    ],
    faults: [],
    operator: { fixedAt, redriven: ['e4'], discarded: [], secondRedrive: { sent: 1, effectsBefore: 6, effectsAfter: 6 }, finalState: new Map([['a', [1, 2, 3]], ['b', [1, 2, 3]]]), ran: true },
    healedAt,
    valueSha: new Map(events.map((e) => [e.id, sha(e)])),
  }
}

function flagged(history: History): AnomalyKind[] {
  const result = check(history)
  return BAD_KINDS.filter((k) => result.anomalies[k].count > 0)
}

describe('rehearsal checker', () => {
  test('a clean history passes with no anomaly of any kind', () => {
    const result = check(cleanHistory())
    assert.deepEqual(flagged(cleanHistory()), [])
    assert.equal(result.valid, true)
    assert.equal(result.bad, 0)
    assert.equal(result.counts['outcome.applied'], 6)
    assert.equal(result.counts['outcome.dead-lettered'], 1)
    assert.equal(result.counts['outcome.lost'], 0)
  })

  test('lost: an acknowledged event without an effect and not in the DLQ', () => {
    const h = cleanHistory()
    const effects = h.effects.filter((e) => e.eventId !== 'e3')
    const result = check({ ...h, effects, operator: { ...h.operator, finalState: new Map([['a', [1, 3]], ['b', [1, 2, 3]]]) } })
    assert.deepEqual(flagged({ ...h, effects, operator: { ...h.operator, finalState: new Map([['a', [1, 3]], ['b', [1, 2, 3]]]) } }), ['lost'])
    assert.equal(result.anomalies.lost.examples[0]!.eventId, 'e3')
    assert.equal(result.anomalies.lost.examples[0]!.gap, true)
    assert.equal(result.valid, false)
  })

  test('an event behind an unresolved poison is held for an operator, not lost, when the operator phase did not run', () => {
    const h = cleanHistory()
    const effects = h.effects.filter((e) => e.eventId !== 'e6' && e.eventId !== 'e4')
    const result = check({ ...h, effects, operator: { ...h.operator, ran: false, fixedAt: Number.POSITIVE_INFINITY, redriven: [], secondRedrive: undefined, finalState: new Map([['a', [1, 2, 3]], ['b', [1]]]) } })
    assert.equal(result.valid, true)
    assert.equal(result.counts['outcome.held-for-operator'], 1)
  })

  test('duplicate-effect: two effects for one event id', () => {
    const h = cleanHistory()
    const dup = { ...h.effects.find((e) => e.eventId === 'e5')! }
    assert.deepEqual(flagged({ ...h, effects: [...h.effects, dup] }), ['duplicate-effect'])
  })

  test('duplicate-effect: a key state that holds a sequence twice', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, operator: { ...h.operator, finalState: new Map([['a', [1, 2, 2, 3]], ['b', [1, 2, 3]]]) } }), ['duplicate-effect'])
  })

  test('key-order: a key state applied out of sequence order', () => {
    const h = cleanHistory()
    const result = check({ ...h, operator: { ...h.operator, finalState: new Map([['a', [1, 3, 2]], ['b', [1, 2, 3]]]) } })
    assert.deepEqual(BAD_KINDS.filter((k) => result.anomalies[k].count > 0), ['key-order'])
    assert.equal(result.anomalies['key-order'].examples[0]!.key, 'a')
  })

  test('aborted-effect: an effect of an attempt that threw', () => {
    const h = cleanHistory()
    const inv = h.effects.find((e) => e.eventId === 'e1')!.inv
    const start = h.members.find((m) => m.type === 'apply' && m.inv === inv)!
    assert.deepEqual(flagged({ ...h, members: [...h.members, { ...start, phase: 'threw', at: start.at + 1 } as MemberEntry] }), ['aborted-effect'])
  })

  test('aborted-effect: a retry-tier attempt by a member that does not own that tier partition', () => {
    const h = cleanHistory()
    const members = h.members.map((m) => (m.type === 'assigned' && m.member === 'c1.1' ? { ...m, partitions: [{ topic: `svc.${TOPIC}.retry.2`, partition: 1 }] } : m))
    assert.deepEqual(flagged({ ...h, members }), ['aborted-effect'])
  })

  test('aborted-effect: an effect no logged invocation wrote', () => {
    const h = cleanHistory()
    const effects = h.effects.map((e) => (e.eventId === 'e2' ? { ...e, inv: 'nobody' } : e))
    assert.deepEqual(flagged({ ...h, effects }), ['aborted-effect'])
  })

  test('aborted-effect: an invocation a member started after it lost the partition (zombie)', () => {
    const h = cleanHistory()
    const members = [...h.members]
    const i = members.findIndex((m) => m.type === 'apply' && m.eventId === 'e5')
    members.splice(i, 0, { type: 'revoked', at: members[i]!.at, member: 'c0.1', partitions: [{ topic: TOPIC, partition: 0 }], lost: true })
    const result = check({ ...h, members })
    assert.deepEqual(BAD_KINDS.filter((k) => result.anomalies[k].count > 0), ['aborted-effect'])
    assert.match(String(result.anomalies['aborted-effect'].examples[0]!.reason), /zombie/)
  })

  test('dlq-missing: a poison event that failed before the fix has neither a DLQ record nor an effect', () => {
    const h = cleanHistory()
    const effects = h.effects.filter((e) => e.eventId !== 'e4')
    const result = check({ ...h, dlq: [], effects, operator: { ...h.operator, redriven: [], finalState: new Map([['a', [1, 2, 3]], ['b', [1, 3]]]) } })
    assert.deepEqual(BAD_KINDS.filter((k) => result.anomalies[k].count > 0), ['dlq-missing'])
  })

  test('dlq-spurious: a DLQ record of an event that is not poison', () => {
    const h = cleanHistory()
    const e5 = h.events.find((e) => e.id === 'e5')!
    const ack = h.produces.find((p) => p.eventId === 'e5')!
    const extra: DlqEntry = { partition: 0, offset: 0, key: 'a', eventId: 'e5', valueSha: sha(e5), originTopic: TOPIC, originPartition: 0, originOffset: ack.offset!, replayId: undefined }
    assert.deepEqual(flagged({ ...h, dlq: [...h.dlq, extra] }), ['dlq-spurious'])
  })

  test('dlq-duplicated: one source record dead-lettered twice', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, dlq: [...h.dlq, { ...h.dlq[0]!, offset: 1 }] }), ['dlq-duplicated'])
  })

  test('a record that came back after a redrive is a new life, not a duplicate', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, dlq: [...h.dlq, { ...h.dlq[0]!, offset: 1, originTopic: `${TOPIC}.retry.1`, replayId: 'r-1' }] }), [])
  })

  test('dlq-wrong-metadata: the origin offset does not match the acknowledgement', () => {
    const h = cleanHistory()
    const result = check({ ...h, dlq: [{ ...h.dlq[0]!, originOffset: 0 }] })
    assert.deepEqual(BAD_KINDS.filter((k) => result.anomalies[k].count > 0), ['dlq-wrong-metadata'])
    assert.match(String(result.anomalies['dlq-wrong-metadata'].examples[0]!.problems), /holds e2/)
  })

  test('dlq-wrong-metadata: a key or partition that differs from the source', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, dlq: [{ ...h.dlq[0]!, key: 'a', partition: 0 }] }), ['dlq-wrong-metadata'])
  })

  test('dlq-bytes: value bytes that differ from the produced bytes', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, dlq: [{ ...h.dlq[0]!, valueSha: 'f'.repeat(64) }] }), ['dlq-bytes'])
  })

  test('replay-mismatch: a redriven event not applied after the fix', () => {
    const h = cleanHistory()
    const effects = h.effects.filter((e) => e.eventId !== 'e4')
    assert.deepEqual(flagged({ ...h, effects, operator: { ...h.operator, finalState: new Map([['a', [1, 2, 3]], ['b', [1, 3]]]) } }), ['replay-mismatch'])
  })

  test('replay-mismatch: a second redrive that adds effects', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, operator: { ...h.operator, secondRedrive: { sent: 1, effectsBefore: 6, effectsAfter: 7 } } }), ['replay-mismatch'])
  })

  test('replay-mismatch: a discarded event that was applied anyway', () => {
    const h = cleanHistory()
    assert.deepEqual(flagged({ ...h, operator: { ...h.operator, redriven: [], discarded: ['e4'] } }), ['replay-mismatch'])
  })

  test('offset-backwards: a committed offset that goes backwards, or past the log end', () => {
    const h = cleanHistory()
    const back = [...h.offsets, { at: h.offsets[1]!.at + 1000, partitions: [{ partition: 0, committed: 1, high: 3 }] }]
    assert.deepEqual(flagged({ ...h, offsets: back }), ['offset-backwards'])
    const past = [...h.offsets, { at: h.offsets[1]!.at + 1000, partitions: [{ partition: 1, committed: 9, high: 3 }] }]
    assert.deepEqual(flagged({ ...h, offsets: past }), ['offset-backwards'])
  })

  test('offset-past-unfinished: a commit made before a record below it finished', () => {
    const h = cleanHistory()
    const members = h.members.map((m) => (m.type === 'processed' && m.topic === TOPIC && m.partition === 0 && m.offset === 2 ? { ...m, at: m.at + 1_000_000 } : m))
    const result = check({ ...h, members })
    assert.deepEqual(BAD_KINDS.filter((k) => result.anomalies[k].count > 0), ['offset-past-unfinished'])
    assert.equal(result.anomalies['offset-past-unfinished'].examples[0]!.unfinished, 2)
  })

  test('at most 8 examples per kind, with the full count', () => {
    const h = cleanHistory()
    const extra = Array.from({ length: 12 }, (_, i) => ({ ...h.effects[0]!, eventId: `ghost${i}`, inv: `ghost${i}` }))
    const result = check({ ...h, effects: [...h.effects, ...extra] })
    assert.equal(result.anomalies['aborted-effect'].count, 12)
    assert.equal(result.anomalies['aborted-effect'].examples.length, 8)
  })

  test('liveness: the longest stall is the slowest event from acknowledgement to first effect', () => {
    const result = check(cleanHistory())
    assert.ok(result.liveness.longestStall)
    assert.ok(result.liveness.longestStall.ms > 0)
    assert.ok(result.liveness.latencyP99Ms >= result.liveness.latencyP50Ms)
  })
})
