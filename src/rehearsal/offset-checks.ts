/**
 * The rehearsal checker's offset properties (pure): the group's committed offsets never go backwards or
 * past the log end (broker samples), and no member commits past a record that has not finished.
 *
 * @module
 */
import type { Anomalies } from './anomalies.js'
import type { History, ProduceEntry } from './history.js'

export function checkOffsets(history: History, ackByOffset: Map<string, ProduceEntry>, a: Anomalies): void {
  // Broker samples: never backwards, never past the log end.
  const last = new Map<number, number>()
  for (const sample of [...history.offsets].sort((x, y) => x.at - y.at)) {
    for (const p of sample.partitions) {
      if (p.committed < 0) continue
      const before = last.get(p.partition)
      if (before !== undefined && p.committed < before) a.add('offset-backwards', `${p.partition}@${sample.at}`, { partition: p.partition, from: before, to: p.committed, at: new Date(sample.at).toISOString() }, sample.at)
      if (p.committed > p.high && p.high >= 0) a.add('offset-backwards', `${p.partition}:end@${p.committed}`, { partition: p.partition, committed: p.committed, logEnd: p.high, reason: 'committed past the log end' }, sample.at)
      last.set(p.partition, Math.max(before ?? -1, p.committed))
    }
  }
  // Commits reported by members: every acknowledged record below the offset finished before the commit.
  const finished = new Map<string, number>()
  for (const m of history.members) {
    if (m.type !== 'processed' && m.type !== 'dead-letter' && m.type !== 'retry-tier' && m.type !== 'parked' && m.type !== 'record-parked' && m.type !== 'duplicate') continue
    if (m.topic !== history.topic) continue
    const k = `${m.partition}:${m.offset}`
    const t = finished.get(k)
    if (t === undefined || m.at < t) finished.set(k, m.at)
  }
  const perPartition = new Map<number, Array<{ offset: number; finishedAt: number }>>()
  for (const [k, ack] of ackByOffset) {
    const list = perPartition.get(ack.partition!) ?? []
    list.push({ offset: ack.offset!, finishedAt: finished.get(k) ?? Number.POSITIVE_INFINITY })
    perPartition.set(ack.partition!, list)
  }
  // Prefix maxima of finish times, by offset: the latest finish among records below an offset.
  const prefix = new Map<number, { offsets: number[]; latest: number[]; culprit: number[] }>()
  for (const [partition, list] of perPartition) {
    list.sort((x, y) => x.offset - y.offset)
    const latest: number[] = []
    const culprit: number[] = []
    let max = Number.NEGATIVE_INFINITY
    let who = -1
    for (const r of list) {
      if (r.finishedAt > max) {
        max = r.finishedAt
        who = r.offset
      }
      latest.push(max)
      culprit.push(who)
    }
    prefix.set(partition, { offsets: list.map((r) => r.offset), latest, culprit })
  }
  for (const m of history.members) {
    if (m.type !== 'commit') continue
    for (const c of m.offsets) {
      if (c.topic !== history.topic) continue
      const p = prefix.get(c.partition)
      if (p === undefined) continue
      // Index of the last acknowledged offset below c.
      let lo = 0
      let hi = p.offsets.length - 1
      let idx = -1
      while (lo <= hi) {
        const mid = (lo + hi) >> 1
        if (p.offsets[mid]! < c.offset) {
          idx = mid
          lo = mid + 1
        } else hi = mid - 1
      }
      if (idx < 0 || p.latest[idx]! <= m.at) continue
      const offset = p.culprit[idx]!
      const ack = ackByOffset.get(`${c.partition}:${offset}`)
      a.add('offset-past-unfinished', `${c.partition}:${offset}`, { member: m.member, partition: c.partition, committed: c.offset, unfinished: offset, eventId: ack?.eventId, committedAt: new Date(m.at).toISOString(), finishedAt: Number.isFinite(p.latest[idx]!) ? new Date(p.latest[idx]!).toISOString() : 'never' }, m.at)
    }
  }
}
