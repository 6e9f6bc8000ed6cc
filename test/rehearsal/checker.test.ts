import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { BAD_KINDS, check, type AnomalyKind } from '../../src/rehearsal/checker.js'
import type { DlqEntry, History, MemberEntry } from '../../src/rehearsal/history.js'
import { cleanHistory, sha, TOPIC } from '../helpers/rehearsal.js'

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

  test('an assignment announced a few ms after the first handler of the partition is not a zombie', () => {
    const h = cleanHistory()
    const first = h.members.findIndex((m) => m.type === 'assigned')
    const members = [...h.members]
    const [assigned] = members.splice(first, 1)
    const afterFirstApply = members.findIndex((m) => m.type === 'apply') + 2
    members.splice(afterFirstApply, 0, { ...assigned!, at: members[afterFirstApply - 1]!.at + 4 })
    assert.deepEqual(flagged({ ...h, members }), [])
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

  test('two DLQ records the DLQ processor stored as one dead letter and its copy are folded, not dlq-duplicated; stored as two, or unknown to it, they are', () => {
    const h = cleanHistory()
    const first = h.dlq[0]!
    const dlq = [...h.dlq, { ...first, offset: first.offset + 1 }]
    const at = (d: DlqEntry) => `${d.partition}@${d.offset}`
    const folded = check({ ...h, dlq, dlqIndex: { [at(first)]: '7', [at(dlq.at(-1)!)]: '7' } })
    assert.equal(folded.valid, true)
    assert.equal(folded.counts['dlq.copies-folded'], 1)
    assert.deepEqual(flagged({ ...h, dlq, dlqIndex: { [at(first)]: '7', [at(dlq.at(-1)!)]: '8' } }), ['dlq-duplicated'])
    assert.deepEqual(flagged({ ...h, dlq, dlqIndex: { [at(first)]: '7' } }), ['dlq-duplicated'])
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

  test('dlq-wrong-metadata: an origin no acknowledgement names is right only where the log holds a copy of that event (F6)', () => {
    const h = cleanHistory()
    const d = h.dlq[0]!
    const moved = { ...d, originOffset: 999 }
    // A producer retry wrote the event again after its first, stored write was never acknowledged: the log
    // holds it at 999 too, and the dead letter of that copy names its real place.
    const copy = check({ ...h, dlq: [moved], unackedCopies: { [`${d.originPartition}@999`]: d.eventId! } })
    assert.deepEqual(BAD_KINDS.filter((k) => copy.anomalies[k].count > 0), [])
    assert.equal(copy.counts['produce.unacked-copies'], 1)
    // Nothing there, or another event there: still wrong.
    assert.deepEqual(flagged({ ...h, dlq: [moved] }), ['dlq-wrong-metadata'])
    assert.deepEqual(flagged({ ...h, dlq: [moved], unackedCopies: { [`${d.originPartition}@999`]: 'e-other' } }), ['dlq-wrong-metadata'])
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
