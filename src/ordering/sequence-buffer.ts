/**
 * Per-key sequence reordering: producers stamp each record of a key with an increasing sequence number, and
 * this buffer hands records to the handler in that order, holding any that arrive ahead of a gap until the
 * gap fills or times out. Pure state: no I/O, no timers; time is passed in as `now` (ms).
 *
 * Decisions the runtime relies on:
 * - A record at or below the key's last applied sequence is a `duplicate` (a redelivery, or a sequence a
 *   `skip`/`dead-letter` expiry already moved past: the buffer does not remember skipped ranges; the
 *   runtime persists them from the {@link Expiry} if it must catch stragglers).
 * - `overflow` stores nothing: the caller keeps the item, pauses the partition (treating it as `hold`) and
 *   offers it again later. The next expected sequence never overflows (it needs no room), so a key can
 *   always make progress; under `hold` a key whose gap never fills stays paused until an operator acts.
 * - Each gap gets its full `timeoutMs`, measured from the earliest arrival among the items held behind it
 *   (the moment the hole became visible). `expire` handles one gap per {@link Expiry}: `skip` applies the
 *   run of items after it; `dead-letter` hands that run out for the DLQ and moves last applied past it so
 *   later records of the key flow; `hold` releases nothing and is reported on every `expire` call (while
 *   `nextDeadline` re-arms every `timeoutMs`, so one timer can re-alert without spinning).
 * - Keys with nothing held keep only their last applied sequence, in an LRU of `maxTrackedKeys`; an evicted
 *   key must come back via `restore` from the durable store, or its next record is taken as its start.
 *
 * Cost: `offer` O(log h) for h items held by the key, plus O(log h) per item it releases; `expire`
 * O(log n) per expired gap (a deadline heap with lazy deletion, compacted once mostly stale) plus one line
 * per overdue `hold` key; `nextDeadline` amortized O(1).
 *
 * @module
 * @example
 * const buffer = new SequenceBuffer<Rec>({ maxPerKey: 100, maxTotal: 10_000, timeoutMs: 30_000, policy: 'skip' })
 * buffer.restore('order-7', 41) // from the durable store at assignment
 * buffer.offer('order-7', 43, r43, now) // { kind: 'buffered' }
 * buffer.offer('order-7', 42, r42, now) // { kind: 'apply', items: [r42, r43] }
 */
import { LifelineError } from '../errors.js'

/** What happens to a key whose oldest gap waited `timeoutMs`. */
export type GapPolicy = 'hold' | 'skip' | 'dead-letter'

export interface SequenceBufferOptions {
  /** Most items held for one key: a positive integer or Infinity. */
  maxPerKey: number
  /** Most items held over all keys (the memory bound): a positive integer or Infinity. */
  maxTotal: number
  /** How long a gap may stay open before `policy` applies, ms: > 0, or Infinity (never). */
  timeoutMs: number
  policy: GapPolicy
  /** The sequence of a key's first record (integer >= 0). Default: a key's first offered sequence is its start. */
  firstSequence?: number
  /** Keys with nothing held whose last applied sequence stays in memory (LRU): positive integer or Infinity (default). */
  maxTrackedKeys?: number
}

/** Missing sequences, both ends inclusive. */
export type SeqRange = readonly [from: number, to: number]

/** The answer to {@link SequenceBuffer.offer}. */
export type Verdict<T> =
  /** Apply these now, in order: the offered item, then any held successors it made contiguous. */
  | { readonly kind: 'apply'; readonly items: T[] }
  /** At or below last applied, or already held: do not apply (complete its offset). Counted. */
  | { readonly kind: 'duplicate' }
  /** Held behind a gap. */
  | { readonly kind: 'buffered' }
  /** Not stored: the key (`'key'`) or the buffer (`'total'`) is full. Pause and offer it again later. */
  | { readonly kind: 'overflow'; readonly item: T; readonly reason: 'key' | 'total' }

/** One timed-out gap, as handled by {@link SequenceBuffer.expire}. */
export type Expiry<T> =
  | { readonly key: string; readonly kind: 'skip' | 'dead-letter'; readonly missing: SeqRange; readonly items: T[] }
  | { readonly key: string; readonly kind: 'hold'; readonly waitingMs: number; readonly missing: SeqRange }

/** Items a {@link SequenceBuffer.markApplied} or {@link SequenceBuffer.restore} let go. */
export interface Released<T> {
  /** Held successors that became contiguous: apply them in order. */
  readonly apply: T[]
  /** Held items at or below the new last applied: do not apply them (complete their offsets). */
  readonly duplicates: T[]
}

interface Held<T> {
  readonly seq: number
  readonly item: T
  readonly at: number
  released: boolean
}

/** A key with held items. `byArrival` is cleaned lazily: released entries are dropped when they surface. */
interface Blocked<T> {
  readonly key: string
  last: number
  readonly bySeq: MinHeap<Held<T>>
  readonly byArrival: MinHeap<Held<T>>
  readonly seqs: Set<number>
  /** When the oldest gap became visible: the earliest arrival among held items. */
  since: number
  /** Bumped whenever `since` is rescheduled or the key unblocks: older deadline entries are stale. */
  version: number
}

/** A deadline entry: live while `version` equals its key's. */
type Due<T> = { readonly since: number; readonly state: Blocked<T>; readonly version: number }

/** A binary min-heap ordered by `before`: push/pop O(log n). A sorted array is a valid heap. */
class MinHeap<E> {
  items: E[] = []
  constructor(readonly before: (a: E, b: E) => boolean) {}

  peek(): E | undefined { return this.items[0] }

  push(entry: E): void {
    const a = this.items
    let i = a.push(entry) - 1
    for (let p = (i - 1) >> 1; i > 0 && this.before(entry, a[p] as E); i = p, p = (i - 1) >> 1) a[i] = a[p] as E
    a[i] = entry
  }

  pop(): E | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop() as E
    if (a.length === 0) return top
    let i = 0
    for (let c = 1; c < a.length; i = c, c = 2 * i + 1) {
      if (c + 1 < a.length && this.before(a[c + 1] as E, a[c] as E)) c++
      if (!this.before(a[c] as E, last)) break
      a[i] = a[c] as E
    }
    a[i] = last
    return top
  }
}

function invalid(code: 'LL_OPTIONS_INVALID' | 'LL_ARGUMENT_INVALID', path: string, expected: string, value: unknown): LifelineError {
  return new LifelineError(code, `${path}: expected ${expected}, got ${String(value)}`, { details: { path, value } })
}

function checkLimit(path: string, value: unknown): number {
  if (value === Infinity || (Number.isSafeInteger(value) && (value as number) >= 1)) return value as number
  throw invalid('LL_OPTIONS_INVALID', path, 'a positive integer or Infinity', value)
}

const checkSeq = (path: string, seq: number): void => {
  if (!Number.isSafeInteger(seq) || seq < 0) throw invalid('LL_ARGUMENT_INVALID', path, 'a safe integer >= 0', seq)
}
const checkNow = (path: string, now: number): void => {
  if (!Number.isFinite(now)) throw invalid('LL_ARGUMENT_INVALID', path, 'a finite time in ms', now)
}

const DUPLICATE = Object.freeze({ kind: 'duplicate' as const })
const BUFFERED = Object.freeze({ kind: 'buffered' as const })

/** Reorders items per key by sequence number; see the module documentation for the guarantees. */
export class SequenceBuffer<T> {
  readonly policy: GapPolicy
  readonly timeoutMs: number
  readonly #maxPerKey: number
  readonly #maxTotal: number
  readonly #maxTrackedKeys: number
  readonly #first: number | undefined
  /** Key → last applied, for keys with nothing held; Map order is the LRU order (oldest first). */
  readonly #idle = new Map<string, number>()
  readonly #blocked = new Map<string, Blocked<T>>()
  #due = new MinHeap<Due<T>>((a, b) => a.since < b.since)
  /** `hold` keys past their deadline (no live `#due` entry): reported by every `expire`. */
  readonly #overdue = new Set<Blocked<T>>()
  #holdReportedAt = 0
  #buffered = 0
  #duplicates = 0
  #gapsSkipped = 0

  /** @throws LifelineError `LL_OPTIONS_INVALID` naming the bad option. */
  constructor(options: SequenceBufferOptions) {
    this.#maxPerKey = checkLimit('maxPerKey', options.maxPerKey)
    this.#maxTotal = checkLimit('maxTotal', options.maxTotal)
    this.#maxTrackedKeys = checkLimit('maxTrackedKeys', options.maxTrackedKeys ?? Infinity)
    const { timeoutMs, policy, firstSequence } = options
    if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) throw invalid('LL_OPTIONS_INVALID', 'timeoutMs', 'a number > 0 or Infinity', timeoutMs)
    if (policy !== 'hold' && policy !== 'skip' && policy !== 'dead-letter') {
      throw invalid('LL_OPTIONS_INVALID', 'policy', "'hold', 'skip' or 'dead-letter'", policy)
    }
    if (firstSequence !== undefined && !(Number.isSafeInteger(firstSequence) && firstSequence >= 0)) {
      throw invalid('LL_OPTIONS_INVALID', 'firstSequence', 'a safe integer >= 0', firstSequence)
    }
    this.timeoutMs = timeoutMs
    this.policy = policy
    this.#first = firstSequence
  }

  /** Items held over all keys. */
  get buffered(): number { return this.#buffered }

  /** Keys whose last applied sequence is in memory (held keys plus the LRU). */
  get keys(): number { return this.#idle.size + this.#blocked.size }

  /** Keys waiting on a gap (later holes of the same key wait behind the first and are not counted). */
  get gaps(): number { return this.#blocked.size }

  /** Offers (and `markApplied`/`restore` drops) found to be duplicates so far. */
  get duplicatesSkipped(): number { return this.#duplicates }

  /** Gaps that last applied moved past unfilled, by a `skip` or `dead-letter` expiry. */
  get gapsSkipped(): number { return this.#gapsSkipped }

  /**
   * Offers the item with sequence `seq` of `key`, received at `now`.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `seq` is not a safe integer >= 0 or `now` is not finite.
   */
  offer(key: string, seq: number, item: T, now: number): Verdict<T> {
    checkSeq('offer(seq)', seq)
    checkNow('offer(now)', now)
    const state = this.#blocked.get(key)
    const last = state?.last ?? this.#touch(key) ?? (this.#first ?? seq) - 1
    if (seq <= last || state?.seqs.has(seq) === true) {
      this.#duplicates++
      return DUPLICATE
    }
    if (seq === last + 1) {
      if (state === undefined) {
        this.#setIdle(key, seq)
        return { kind: 'apply', items: [item] }
      }
      state.last = seq
      const items = [item, ...this.#drain(state)]
      this.#settle(state)
      return { kind: 'apply', items }
    }
    if ((state?.seqs.size ?? 0) >= this.#maxPerKey) return { kind: 'overflow', item, reason: 'key' }
    if (this.#buffered >= this.#maxTotal) return { kind: 'overflow', item, reason: 'total' }
    const target = state ?? this.#block(key, last)
    const held: Held<T> = { seq, item, at: now, released: false }
    target.bySeq.push(held)
    target.byArrival.push(held)
    target.seqs.add(seq)
    this.#buffered++
    this.#settle(target)
    return BUFFERED
  }

  /** The last applied sequence of `key`; undefined when unknown (never seen, evicted, or forgotten). */
  lastApplied(key: string): number | undefined {
    return this.#blocked.get(key)?.last ?? this.#idle.get(key)
  }

  /**
   * Records that `seq` of `key` was applied by other means; ignored unless above the last applied.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `seq` is not a safe integer >= 0.
   */
  markApplied(key: string, seq: number): Released<T> {
    checkSeq('markApplied(seq)', seq)
    const last = this.lastApplied(key)
    return last !== undefined && seq <= last ? { apply: [], duplicates: [] } : this.#moveTo(key, seq)
  }

  /**
   * Sets the last applied sequence of `key` from durable storage (at assignment, or after LRU eviction).
   * Unlike `markApplied` it may move back.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `lastAppliedSeq` is not a safe integer >= 0.
   */
  restore(key: string, lastAppliedSeq: number): Released<T> {
    checkSeq('restore(lastAppliedSeq)', lastAppliedSeq)
    return this.#moveTo(key, lastAppliedSeq)
  }

  /** Drops everything known about `key` (for revocation). @returns its held items in sequence order. */
  forget(key: string): T[] {
    this.#idle.delete(key)
    const state = this.#blocked.get(key)
    if (state === undefined) return []
    const items: T[] = []
    while (state.bySeq.items.length > 0) items.push(this.#take(state).item)
    this.#blocked.delete(key)
    this.#overdue.delete(state)
    state.version++ // its deadline entry goes stale
    return items
  }

  /**
   * Applies the policy to every gap that has waited `timeoutMs` by `now`, oldest first. A `hold` key is
   * reported on every call until its gap fills.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `now` is not finite.
   */
  expire(now: number): Array<Expiry<T>> {
    checkNow('expire(now)', now)
    const out: Array<Expiry<T>> = []
    for (let top = this.#liveDue(); top !== undefined && top.since + this.timeoutMs <= now; top = this.#liveDue()) {
      this.#due.pop()
      const state = top.state
      if (this.policy === 'hold') {
        this.#overdue.add(state)
        continue
      }
      const first = this.#take(state)
      const missing: SeqRange = [state.last + 1, first.seq - 1]
      state.last = first.seq
      const items = [first.item, ...this.#drain(state)]
      this.#gapsSkipped++
      state.since = Number.NaN // its entry was popped: reschedule even if the clock of the next gap is the same
      this.#settle(state) // a later gap that is due too expires in this same loop
      out.push({ key: state.key, kind: this.policy, missing, items })
    }
    if (this.#overdue.size > 0) this.#holdReportedAt = now
    for (const state of this.#overdue) {
      const next = (state.bySeq.peek() as Held<T>).seq
      out.push({ key: state.key, kind: 'hold', waitingMs: Math.max(0, now - state.since), missing: [state.last + 1, next - 1] })
    }
    return out
  }

  /** When `expire` next has work: the earliest gap deadline, or the next `hold` re-alert; undefined: none. */
  nextDeadline(): number | undefined {
    const top = this.#liveDue()
    let next = top === undefined ? Infinity : top.since + this.timeoutMs
    if (this.#overdue.size > 0) next = Math.min(next, this.#holdReportedAt + this.timeoutMs)
    return Number.isFinite(next) ? next : undefined
  }

  /** How long the oldest open gap has been waiting at `now`, ms; 0 when none. */
  oldestGapAgeMs(now: number): number {
    let since = this.#liveDue()?.since ?? Infinity
    for (const state of this.#overdue) since = Math.min(since, state.since)
    return Number.isFinite(since) ? Math.max(0, now - since) : 0
  }

  /** The last applied of an idle key, refreshed in the LRU. */
  #touch(key: string): number | undefined {
    const last = this.#idle.get(key)
    if (last !== undefined) this.#setIdle(key, last)
    return last
  }

  #setIdle(key: string, last: number): void {
    this.#idle.delete(key)
    this.#idle.set(key, last)
    if (this.#idle.size > this.#maxTrackedKeys) this.#idle.delete(this.#idle.keys().next().value as string)
  }

  #block(key: string, last: number): Blocked<T> {
    this.#idle.delete(key)
    const bySeq = new MinHeap<Held<T>>((a, b) => a.seq < b.seq)
    const byArrival = new MinHeap<Held<T>>((a, b) => a.at < b.at)
    const state: Blocked<T> = { key, last, bySeq, byArrival, seqs: new Set(), since: Number.NaN, version: 0 }
    this.#blocked.set(key, state)
    return state
  }

  #moveTo(key: string, seq: number): Released<T> {
    const state = this.#blocked.get(key)
    if (state === undefined) {
      this.#setIdle(key, seq)
      return { apply: [], duplicates: [] }
    }
    const duplicates: T[] = []
    while ((state.bySeq.peek()?.seq ?? Infinity) <= seq) duplicates.push(this.#take(state).item)
    this.#duplicates += duplicates.length
    state.last = seq
    const apply = this.#drain(state)
    this.#settle(state)
    return { apply, duplicates }
  }

  /** Removes the lowest held item of a key. */
  #take(state: Blocked<T>): Held<T> {
    const held = state.bySeq.pop() as Held<T>
    held.released = true
    state.seqs.delete(held.seq)
    this.#buffered--
    return held
  }

  /** Takes the held items contiguous with `last`, advancing it. */
  #drain(state: Blocked<T>): T[] {
    const items: T[] = []
    for (let top = state.bySeq.peek(); top?.seq === state.last + 1; top = state.bySeq.peek()) {
      items.push(this.#take(state).item)
      state.last = top.seq
    }
    return items
  }

  /** After a change to a blocked key: unblock it when empty, or reschedule it when its gap clock moved. */
  #settle(state: Blocked<T>): void {
    if (state.bySeq.items.length === 0) {
      this.#blocked.delete(state.key)
      this.#overdue.delete(state)
      state.version++
      this.#setIdle(state.key, state.last)
      return
    }
    while (state.byArrival.peek()?.released === true) state.byArrival.pop()
    const since = (state.byArrival.peek() as Held<T>).at
    if (since === state.since) return
    state.since = since
    state.version++
    this.#overdue.delete(state)
    this.#due.push({ since, state, version: state.version })
    if (this.#due.items.length > 2 * this.#blocked.size + 64) {
      this.#due.items = this.#due.items.filter((d) => d.version === d.state.version).sort((a, b) => a.since - b.since)
    }
  }

  /** The earliest live deadline entry, dropping stale ones from the top. */
  #liveDue(): Due<T> | undefined {
    for (let top = this.#due.peek(); top !== undefined && top.version !== top.state.version; top = this.#due.peek()) this.#due.pop()
    return this.#due.peek()
  }
}
