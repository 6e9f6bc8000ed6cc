/**
 * The rehearsal's workload (pure): N events over K keys, each with its key's next sequence number and a
 * unique event id, and a plan of sends. Fractions of the events are poison (fail until the operator fixes
 * the cause), transient (fail their first few attempts), duplicated (the same id and bytes produced again
 * at a later offset), sent out of order by a second producer (a little late, so later sequences of the key
 * overtake them) or delayed (sent several seconds late). Everything follows from the seed.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import { deriveSeed, randomInt, seededRandom } from './random.js'

export type EventKind = 'ok' | 'poison' | 'transient'

/** A rehearsal event: the value of a record (JSON), its id also in the `event-id` header. */
export interface RehearsalEvent {
  id: string
  key: string
  /** Position in the key's own stream, from 1. */
  seq: number
  kind: EventKind
  /** Transient: attempts that fail before one succeeds (attempt ≤ fail throws). */
  fail: number
  /** Filler to reach the configured payload size. */
  pad: string
}

export type SendReason = 'first' | 'duplicate' | 'out-of-order' | 'delayed'

export interface PlannedSend {
  /** Position in the plan (sorted by `atMs`). */
  index: number
  eventId: string
  /** 0 for the first copy of an event, 1 for its duplicate. */
  copy: number
  /** `a` the main producer, `b` the second producer (out-of-order sends). */
  producer: 'a' | 'b'
  /** When to send, ms after production starts. */
  atMs: number
  reason: SendReason
}

export interface WorkloadOptions {
  events: number
  keys: number
  seed: number
  /** Spread the first sends over this many ms (default 60000). */
  produceMs?: number
  /** Fraction of poison events (default 0.01). */
  poison?: number
  /** Fraction of transient events (default 0.05). */
  transient?: number
  /** Fraction of events produced twice (default 0.02). */
  duplicates?: number
  /** Fraction of events sent late by the second producer (default 0.03). */
  outOfOrder?: number
  /** Fraction of events sent 3-10 s late (default 0.01). */
  delayed?: number
  /** Approximate value size, bytes (default 120). */
  payloadBytes?: number
}

export const workloadDefaults = {
  produceMs: 60_000,
  poison: 0.01,
  transient: 0.05,
  duplicates: 0.02,
  outOfOrder: 0.03,
  delayed: 0.01,
  payloadBytes: 120,
} as const satisfies Partial<WorkloadOptions>

export interface Workload {
  readonly events: readonly RehearsalEvent[]
  /** By event id. */
  readonly byId: ReadonlyMap<string, RehearsalEvent>
  /** Sorted by `atMs`, then index. */
  readonly sends: readonly PlannedSend[]
}

function fraction(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback
  if (!(v >= 0 && v <= 1)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: workload.${name}: must be a fraction in [0, 1], got ${String(value)}`)
  return v
}

/** Builds the workload for these options (the same options give the same workload). */
export function generateWorkload(options: WorkloadOptions): Workload {
  const { events: n, keys: k } = options
  if (!Number.isSafeInteger(n) || n < 1) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: workload.events: must be a positive integer, got ${String(n)}`)
  if (!Number.isSafeInteger(k) || k < 1) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: workload.keys: must be a positive integer, got ${String(k)}`)
  const poison = fraction(options.poison, workloadDefaults.poison, 'poison')
  const transient = fraction(options.transient, workloadDefaults.transient, 'transient')
  const duplicates = fraction(options.duplicates, workloadDefaults.duplicates, 'duplicates')
  const outOfOrder = fraction(options.outOfOrder, workloadDefaults.outOfOrder, 'outOfOrder')
  const delayed = fraction(options.delayed, workloadDefaults.delayed, 'delayed')
  if (poison + transient > 1) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: workload.poison + workload.transient must not exceed 1')
  const produceMs = options.produceMs ?? workloadDefaults.produceMs
  const payloadBytes = options.payloadBytes ?? workloadDefaults.payloadBytes
  const random = seededRandom(deriveSeed(options.seed, 'workload'))
  const width = String(k - 1).length
  const nextSeq = new Array<number>(k).fill(0)
  const events: RehearsalEvent[] = []
  const sends: Omit<PlannedSend, 'index'>[] = []
  for (let i = 0; i < n; i++) {
    const keyIndex = Math.floor(random() * k)
    const seq = ++nextSeq[keyIndex]!
    const roll = random()
    const kind: EventKind = roll < poison ? 'poison' : roll < poison + transient ? 'transient' : 'ok'
    const id = `e${i}`
    const key = `k${String(keyIndex).padStart(width, '0')}`
    const base = { id, key, seq, kind, fail: kind === 'transient' ? randomInt(random, 1, 3) : 0, pad: '' }
    base.pad = 'x'.repeat(Math.max(0, payloadBytes - JSON.stringify(base).length))
    events.push(base)
    const at = Math.floor((i / n) * produceMs)
    const how = random()
    if (how < outOfOrder) sends.push({ eventId: id, copy: 0, producer: 'b', atMs: at + randomInt(random, 300, 2500), reason: 'out-of-order' })
    else if (how < outOfOrder + delayed) sends.push({ eventId: id, copy: 0, producer: 'a', atMs: at + randomInt(random, 3000, 10_000), reason: 'delayed' })
    else sends.push({ eventId: id, copy: 0, producer: 'a', atMs: at, reason: 'first' })
    if (random() < duplicates) sends.push({ eventId: id, copy: 1, producer: 'a', atMs: at + randomInt(random, 11_000, 15_000), reason: 'duplicate' })
  }
  const ordered = sends
    .map((s, i) => ({ s, i }))
    .sort((x, y) => x.s.atMs - y.s.atMs || x.i - y.i)
    .map(({ s }, index) => ({ ...s, index }))
  return { events, byId: new Map(events.map((e) => [e.id, e])), sends: ordered }
}

/** The record value of an event: its JSON bytes (a duplicate sends the very same bytes). */
export function eventValue(event: RehearsalEvent): Buffer {
  return Buffer.from(JSON.stringify(event))
}

/** The header that carries the event id (the inbox's default). */
export const EVENT_ID_HEADER = 'event-id'
