/**
 * The rehearsal checker (pure): reads a {@link History} — the produce log, the handler log and consumer
 * events, the effects table, the DLQ topic, committed offsets sampled from the broker, the operator's
 * actions — and reports every property of the rehearsal specification, each anomaly with examples.
 * It knows nothing of the runtime's internals, so it can judge any consumer (Jepsen-style: the history
 * is the only evidence).
 *
 * Bad anomalies (any makes the run invalid): lost, duplicate-effect, key-order, aborted-effect,
 * dlq-missing, dlq-spurious, dlq-duplicated, dlq-wrong-metadata, dlq-bytes, replay-mismatch,
 * offset-backwards, offset-past-unfinished. Liveness (drain time, longest stall) is reported, never bad.
 *
 * @module
 */
import type { DlqEntry, EffectRow, History, MemberEntry, ProduceEntry } from './history.js'
import type { RehearsalEvent } from './workload.js'
import { Anomalies, BAD_KINDS, MAX_EXAMPLES, PROPERTY_TEXT, type AnomalyKind, type AnomalyReport } from './anomalies.js'
import { checkOffsets } from './offset-checks.js'

export { BAD_KINDS, MAX_EXAMPLES, PROPERTY_TEXT, type AnomalyKind, type AnomalyReport }

/** How late a member's `partitions-assigned` event may follow the first handler of that partition, ms. */
export const ASSIGN_GRACE_MS = 15_000

export interface Liveness {
  /** From the last heal (or the last acknowledgement, whichever is later) to the last first-effect of an event not held for the operator, ms. */
  drainMs: number
  /** The longest time an event (not held behind poison) waited from its acknowledgement to its first effect. */
  longestStall: { key: string; eventId: string; ms: number } | undefined
  latencyP50Ms: number
  latencyP99Ms: number
}

export interface CheckResult {
  valid: boolean
  bad: number
  anomalies: Record<AnomalyKind, AnomalyReport>
  counts: Record<string, number>
  liveness: Liveness
  /** Anomaly times (ms since the epoch) for the report's timeline marks. */
  marks: Array<{ at: number; kind: AnomalyKind }>
}

function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>()
  for (const item of items) {
    const k = key(item)
    const list = out.get(k)
    if (list) list.push(item)
    else out.set(k, [item])
  }
  return out
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

type ApplyEntry = Extract<MemberEntry, { type: 'apply' }>

/** Checks a history against every property; pure and deterministic. */
export function check(history: History): CheckResult {
  const a = new Anomalies()
  const { events, operator } = history
  const byId = new Map(events.map((e) => [e.id, e]))
  const producesByEvent = groupBy(history.produces, (p) => p.eventId)
  const ok = (id: string): ProduceEntry[] => (producesByEvent.get(id) ?? []).filter((p) => p.outcome === 'ok')
  const firstAck = (id: string): number | undefined => {
    const acks = ok(id)
    return acks.length === 0 ? undefined : Math.min(...acks.map((p) => p.doneAt))
  }
  const ackByOffset = new Map<string, ProduceEntry>()
  for (const p of history.produces) if (p.outcome === 'ok' && p.partition !== undefined && p.offset !== undefined) ackByOffset.set(`${p.partition}:${p.offset}`, p)
  const effectsByEvent = groupBy(history.effects, (e) => e.eventId)
  const firstLives = history.dlq.filter((d) => d.replayId === undefined)
  const dlqByEvent = groupBy(history.dlq.filter((d) => d.eventId !== undefined), (d) => d.eventId!)
  const applies = history.members.filter((m): m is ApplyEntry => m.type === 'apply')
  const appliesByInv = groupBy(applies, (m) => m.inv)
  const redriven = new Set(operator.redriven)
  const discarded = new Set(operator.discarded)

  // Poison events that ran before the fix, by key: later events of the key are held for the operator.
  const poisonRanBeforeFix = new Set(applies.filter((m) => m.phase === 'start' && m.at < operator.fixedAt && byId.get(m.eventId)?.kind === 'poison').map((m) => m.eventId))
  const lowestPoisonSeq = new Map<string, number>()
  for (const e of events) {
    if (e.kind !== 'poison' || ok(e.id).length === 0) continue
    const seen = lowestPoisonSeq.get(e.key)
    if (seen === undefined || e.seq < seen) lowestPoisonSeq.set(e.key, e.seq)
  }
  const heldBehindPoison = (e: RehearsalEvent) => {
    const p = lowestPoisonSeq.get(e.key)
    return p !== undefined && e.seq > p
  }

  const counts: Record<string, number> = {
    events: events.length,
    'events.poison': events.filter((e) => e.kind === 'poison').length,
    'events.transient': events.filter((e) => e.kind === 'transient').length,
    'produce.ok': history.produces.filter((p) => p.outcome === 'ok').length,
    'produce.failed': history.produces.reduce((n, p) => n + (p.outcome === 'failed' ? 1 + (p.repeats ?? 0) : 0), 0),
    'produce.unknown': history.produces.reduce((n, p) => n + (p.outcome === 'unknown' ? 1 + (p.repeats ?? 0) : 0), 0),
    'handler.invocations': applies.filter((m) => m.phase === 'start').length,
    'handler.threw': applies.filter((m) => m.phase === 'threw').length,
    'effects.rows': history.effects.length,
    'dlq.records': history.dlq.length,
    'dlq.redrive-lives': history.dlq.length - firstLives.length,
    'dlq.copies-folded': 0,
    'produce.unacked-copies': Object.keys(history.unackedCopies ?? {}).length,
    'operator.redriven': redriven.size,
    'operator.discarded': discarded.size,
    'outcome.applied': 0,
    'outcome.dead-lettered': 0,
    'outcome.held-for-operator': 0,
    'outcome.never-acknowledged': 0,
    'outcome.unknown-not-applied': 0,
    'outcome.lost': 0,
  }

  // ---- per event: lost, duplicate effects, DLQ expectations -----------------------------------------
  for (const e of events) {
    const acks = ok(e.id)
    const effects = effectsByEvent.get(e.id) ?? []
    const inDlq = (dlqByEvent.get(e.id) ?? []).length > 0
    if (effects.length > 0) counts['outcome.applied']!++
    if (inDlq) counts['outcome.dead-lettered']!++
    if (effects.length > 1) {
      a.add('duplicate-effect', e.id, { eventId: e.id, key: e.key, seq: e.seq, effects: effects.length, by: effects.map((f) => `${f.member}/${f.inv}`) }, effects[1]!.at)
    }
    if (acks.length === 0) {
      const unknown = (producesByEvent.get(e.id) ?? []).some((p) => p.outcome === 'unknown')
      if (unknown && effects.length === 0) counts['outcome.unknown-not-applied']!++
      if (!unknown) counts['outcome.never-acknowledged']!++
      continue
    }
    if (e.kind === 'poison') {
      if (discarded.has(e.id)) continue
      if (effects.length === 0 && !inDlq) {
        if (!operator.ran && heldBehindPoison(e)) counts['outcome.held-for-operator']!++
        else if (poisonRanBeforeFix.has(e.id)) a.add('dlq-missing', e.id, { eventId: e.id, key: e.key, seq: e.seq, acks: acks.map((p) => `${p.partition}@${p.offset}`) }, firstAck(e.id))
        else if (operator.ran) {
          counts['outcome.lost']!++
          a.add('lost', e.id, { eventId: e.id, key: e.key, seq: e.seq, kind: e.kind, acks: acks.map((p) => `${p.partition}@${p.offset}`) }, firstAck(e.id))
        } else counts['outcome.held-for-operator']!++
      }
      continue
    }
    if (effects.length === 0 && !inDlq) {
      if (!operator.ran && heldBehindPoison(e)) {
        counts['outcome.held-for-operator']!++
        continue
      }
      counts['outcome.lost']!++
      const state = operator.finalState.get(e.key) ?? []
      a.add('lost', e.id, { eventId: e.id, key: e.key, seq: e.seq, kind: e.kind, acks: acks.map((p) => `${p.partition}@${p.offset}`), gap: state.some((s) => s > e.seq) }, firstAck(e.id))
    }
  }

  // ---- key order and state against the oracle --------------------------------------------------------
  const eventsByKey = groupBy(events, (e) => e.key)
  for (const [key, seqs] of operator.finalState) {
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i]! < seqs[i - 1]!) {
        a.add('key-order', key, { key, applied: seqs.slice(Math.max(0, i - 4), i + 3), at: i, expectedAfter: seqs[i - 1] })
        break
      }
      if (seqs[i] === seqs[i - 1]) {
        const e = eventsByKey.get(key)?.find((x) => x.seq === seqs[i])
        a.add('duplicate-effect', e?.id ?? `${key}#${seqs[i]}`, { eventId: e?.id, key, seq: seqs[i], reason: 'the key state has this sequence twice' })
      }
    }
    if (!operator.ran) continue
    const known = new Map((eventsByKey.get(key) ?? []).map((e) => [e.seq, e]))
    for (const s of seqs) {
      const e = known.get(s)
      if (e === undefined) a.add('replay-mismatch', `${key}#${s}`, { key, seq: s, reason: 'the key state holds a sequence the workload never produced' }, operator.fixedAt)
      else if (discarded.has(e.id)) a.add('replay-mismatch', e.id, { eventId: e.id, key, seq: s, reason: 'discarded through the DLQ processor, yet applied' }, operator.fixedAt)
    }
  }

  // ---- aborted effects: rolled-back attempts, effects from nowhere, zombies ---------------------------
  // Ownership over time, per member and topic-partition, from its own assigned/revoked events (file order).
  const memberLogs = groupBy(history.members, (m) => m.member)
  const ownership = new Map<string, Array<{ owned: boolean; index: number; at: number }>>()
  for (const [member, log] of memberLogs) {
    log.forEach((m, index) => {
      if (m.type !== 'assigned' && m.type !== 'revoked') return
      for (const tp of m.partitions) {
        const k = `${member}\0${tp.topic}\0${tp.partition}`
        const list = ownership.get(k) ?? []
        list.push({ owned: m.type === 'assigned', index, at: m.at })
        ownership.set(k, list)
      }
    })
  }
  const tierTopics = new Set(history.members.flatMap((m) => (m.type === 'assigned' ? m.partitions.map((p) => p.topic) : [])).filter((t) => t !== history.topic))
  const applyIndex = new Map<ApplyEntry, number>()
  for (const log of memberLogs.values()) log.forEach((m, i) => m.type === 'apply' && applyIndex.set(m, i))
  /**
   * Whether `start`'s member owned the partition it ran from (a tier record: its tier topic) when it started.
   * The runtime emits `partitions-assigned` before it claims the partitions (since finding F7); before that
   * it came once every partition's state had loaded, which could be after the first records of a partition
   * claimed early: for such histories an `assigned` that follows within {@link ASSIGN_GRACE_MS} counts.
   */
  const owned = (start: ApplyEntry): 'owned' | 'zombie' | 'never' => {
    const topics = start.tier === undefined ? [history.topic] : [...tierTopics].filter((t) => t.endsWith(`.retry.${start.tier}`))
    const index = applyIndex.get(start) ?? 0
    let verdict: 'zombie' | 'never' = 'never'
    for (const topic of topics) {
      const events = ownership.get(`${start.member}\0${topic}\0${start.partition}`) ?? []
      const last = events.filter((o) => o.index < index).at(-1)
      const next = events.find((o) => o.index > index)
      if (last?.owned === true) return 'owned'
      if (next?.owned === true && next.at - start.at <= ASSIGN_GRACE_MS) return 'owned'
      if (last !== undefined) verdict = 'zombie'
    }
    return verdict
  }
  for (const effect of history.effects) {
    const attempts = appliesByInv.get(effect.inv) ?? []
    const start = attempts.find((m) => m.phase === 'start')
    if (start === undefined) {
      a.add('aborted-effect', `${effect.eventId}/${effect.inv}`, { eventId: effect.eventId, inv: effect.inv, member: effect.member, reason: 'no logged handler invocation wrote this effect' }, effect.at)
      continue
    }
    if (attempts.some((m) => m.phase === 'threw')) {
      a.add('aborted-effect', `${effect.eventId}/${effect.inv}`, { eventId: effect.eventId, inv: effect.inv, member: effect.member, reason: 'the attempt threw: its transaction should have rolled back', error: attempts.find((m) => m.phase === 'threw')?.error }, effect.at)
      continue
    }
    const ok = owned(start)
    if (ok !== 'owned') {
      a.add('aborted-effect', `${effect.eventId}/${effect.inv}`, { eventId: effect.eventId, inv: effect.inv, member: effect.member, partition: start.partition, offset: start.offset, ...(start.tier === undefined ? {} : { tier: start.tier }), reason: ok === 'never' ? 'started by a member that was never assigned the partition' : 'started by a member after it lost the partition (zombie)' }, effect.at)
    }
  }

  // ---- the DLQ ----------------------------------------------------------------------------------------
  // When each source record was dead-lettered, by the members' own `dead-letter` events (a DLQ record keeps
  // its source's timestamp, so the DLQ cannot say when it was written).
  const deadLettered = groupBy(history.members.filter((m) => m.type === 'dead-letter' && m.topic === history.topic), (m) => `${(m as { partition: number }).partition}:${(m as { offset: number }).offset}`)
  const byOrigin = groupBy(firstLives, (d) => `${d.originPartition}:${d.originOffset}`)
  for (const [origin, list] of byOrigin) {
    const times = (deadLettered.get(origin) ?? []).map((m) => m.at).sort((x, y) => x - y)
    if (list.length < 2) continue
    const places = list.map((d) => `${d.partition}@${d.offset}`)
    // Several records in the topic that the DLQ processor stored as one dead letter (the others recorded
    // as its copies: a cut-off member's late write, which Kafka cannot fence) reach the operator once.
    const stored = new Set(places.map((p) => history.dlqIndex?.[p]))
    if (stored.size === 1 && !stored.has(undefined)) {
      counts['dlq.copies-folded']! += list.length - 1
      continue
    }
    a.add('dlq-duplicated', origin, { origin, eventId: list[0]!.eventId, dlq: places, ...(history.dlqIndex === undefined ? {} : { stored: places.map((p) => history.dlqIndex?.[p] ?? null) }) }, times[1] ?? times[0])
  }
  for (const d of history.dlq) checkDlqEntry(d, history, byId, ackByOffset, producesByEvent, a)

  // ---- redrive ----------------------------------------------------------------------------------------
  if (operator.ran) {
    for (const id of redriven) {
      const n = (effectsByEvent.get(id) ?? []).length
      if (n !== 1) a.add('replay-mismatch', id, { eventId: id, effects: n, reason: 'redriven after the fix: expected exactly one effect' }, operator.fixedAt)
    }
    const second = operator.secondRedrive
    if (second !== undefined && second.effectsAfter !== second.effectsBefore) {
      a.add('replay-mismatch', 'second-redrive', { sent: second.sent, effectsBefore: second.effectsBefore, effectsAfter: second.effectsAfter, reason: 'a second redrive of the same records added effects' }, operator.fixedAt)
    }
  }

  checkOffsets(history, ackByOffset, a)

  const valid = BAD_KINDS.every((k) => a.byKind[k].count === 0)
  return {
    valid,
    bad: BAD_KINDS.reduce((n, k) => n + a.byKind[k].count, 0),
    anomalies: a.byKind,
    counts,
    liveness: liveness(history, effectsByEvent, firstAck, heldBehindPoison),
    marks: a.marks.sort((x, y) => x.at - y.at),
  }
}

function checkDlqEntry(d: DlqEntry, history: History, byId: Map<string, RehearsalEvent>, ackByOffset: Map<string, ProduceEntry>, producesByEvent: Map<string, ProduceEntry[]>, a: Anomalies): void {
  const where = `${d.partition}@${d.offset}`
  const event = d.eventId === undefined ? undefined : byId.get(d.eventId)
  if (event === undefined) {
    a.add('dlq-spurious', where, { dlq: where, eventId: d.eventId, reason: 'no such event in the workload' })
    return
  }
  if (event.kind !== 'poison') a.add('dlq-spurious', where, { dlq: where, eventId: event.id, kind: event.kind, key: event.key, seq: event.seq })
  if (d.valueSha !== history.valueSha.get(event.id)) a.add('dlq-bytes', where, { dlq: where, eventId: event.id, reason: 'value bytes differ from the produced bytes' })
  if (d.replayId !== undefined) return // a later life: its origin is the redrive target, checked by the redrive
  const wrong: string[] = []
  if (d.originTopic !== history.topic) wrong.push(`origin topic ${String(d.originTopic)} (expected ${history.topic})`)
  if (d.key !== event.key) wrong.push(`key ${String(d.key)} (expected ${event.key})`)
  const ack = ackByOffset.get(`${d.originPartition}:${d.originOffset}`)
  if (ack === undefined) {
    const unknown = (producesByEvent.get(event.id) ?? []).some((p) => p.outcome === 'unknown')
    // A copy the producer's retry left in the log, found there after the run (F6): the event's real place.
    const copy = history.unackedCopies?.[`${d.originPartition}@${d.originOffset}`] === event.id
    if (!unknown && !copy) wrong.push(`origin ${d.originPartition}@${d.originOffset} is not an acknowledged offset of this event`)
  } else if (ack.eventId !== event.id) wrong.push(`origin ${d.originPartition}@${d.originOffset} holds ${ack.eventId}, not ${event.id}`)
  if (d.originPartition !== undefined && d.partition !== d.originPartition) wrong.push(`DLQ partition ${d.partition} is not the origin partition ${d.originPartition}`)
  if (wrong.length > 0) a.add('dlq-wrong-metadata', where, { dlq: where, eventId: event.id, problems: wrong })
}

function liveness(history: History, effectsByEvent: Map<string, EffectRow[]>, firstAck: (id: string) => number | undefined, held: (e: RehearsalEvent) => boolean): Liveness {
  const latencies: number[] = []
  let longest: Liveness['longestStall']
  let lastFirstEffect = Number.NEGATIVE_INFINITY
  let lastAck = Number.NEGATIVE_INFINITY
  for (const e of history.events) {
    if (e.kind === 'poison' || held(e)) continue
    const ack = firstAck(e.id)
    const effects = effectsByEvent.get(e.id)
    if (ack === undefined || effects === undefined || effects.length === 0) continue
    const first = Math.min(...effects.map((f) => f.at))
    if (first >= history.operator.fixedAt) continue
    lastAck = Math.max(lastAck, ack)
    lastFirstEffect = Math.max(lastFirstEffect, first)
    const ms = Math.max(0, first - ack)
    latencies.push(ms)
    if (longest === undefined || ms > longest.ms) longest = { key: e.key, eventId: e.id, ms }
  }
  latencies.sort((x, y) => x - y)
  const from = Math.max(history.healedAt, lastAck)
  return {
    drainMs: Number.isFinite(lastFirstEffect) ? Math.max(0, lastFirstEffect - from) : 0,
    longestStall: longest,
    latencyP50Ms: percentile(latencies, 0.5),
    latencyP99Ms: percentile(latencies, 0.99),
  }
}
