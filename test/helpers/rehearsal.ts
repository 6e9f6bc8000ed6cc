/** A clean synthetic rehearsal history for the checker and report tests (pure data, no I/O). */
import { createHash } from 'node:crypto'
import type { DlqEntry, EffectRow, History, MemberEntry, ProduceEntry } from '../../src/rehearsal/history.js'
import { eventValue, type RehearsalEvent } from '../../src/rehearsal/workload.js'

export const TOPIC = 'rh.events'
export const T0 = 1_700_000_000_000

export function ev(id: string, key: string, seq: number, kind: RehearsalEvent['kind'] = 'ok'): RehearsalEvent {
  return { id, key, seq, kind, fail: kind === 'transient' ? 1 : 0, pad: '' }
}

export const sha = (e: RehearsalEvent) => createHash('sha256').update(eventValue(e)).digest('hex')

/**
 * A clean history of a tiny rehearsal: keys a (partition 0) and b (partition 1); b's second event is
 * poison: it failed before the fix, went to the DLQ, was redriven after the fix and applied, and b's
 * third event (held behind it) applied after it. One member owned both partitions throughout.
 */
export function cleanHistory(): History {
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

