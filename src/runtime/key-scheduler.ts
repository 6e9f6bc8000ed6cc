/**
 * In-process scheduling of records for concurrent handling with ordering guarantees, in the manner of
 * Confluent's Parallel Consumer ordering modes:
 *
 * - `'key'`: records with the same topic and key run one at a time, in enqueue (offset) order; different
 *   keys run concurrently. A null key has no ordering: each null-key record runs independently.
 * - `'partition'`: records of the same topic-partition run one at a time, in order (keys are ignored).
 * - `'none'`: any record may run at any time; only the concurrency limit applies.
 *
 * Each ordering unit is a *lane*. Lanes that have queued work and nothing in flight wait in a FIFO ready
 * queue, and a lane goes to the back of it after each item: a busy key cannot starve the others.
 * `enqueue`, `next` and `done` are amortized O(1); `removePartition` is O(queued).
 *
 * @module
 * @example
 * const scheduler = new KeyScheduler<Work>({ ordering: 'key', concurrency: 16 })
 * scheduler.enqueue(work)
 * for (let item = scheduler.next(); item !== undefined; item = scheduler.next()) start(item)
 * // when an item settles:
 * scheduler.done(item)
 */
import { LifelineError } from '../errors.js'
import { Fifo } from './fifo.js'

/** How records are ordered relative to each other. */
export type Ordering = 'key' | 'partition' | 'none'

/** What the scheduler needs to know about a unit of work. Items are compared by identity. */
export interface SchedulableItem {
  readonly topic: string
  readonly partition: number
  /** The ordering key in `'key'` mode (see {@link schedulingKey}); null = unordered. */
  readonly schedulingKey: string | null
  /** Bytes the item holds, for backpressure accounting (see `ConsumedRecord.size`). */
  readonly size: number
  /**
   * The scheduler's own bookkeeping on the item (its lane while queued or in flight, its enqueue order):
   * kept on the item rather than in maps, so a record costs no map entries. Declare the fields (initialised
   * to undefined) on item classes to keep their shape stable; never set them yourself.
   */
  schedLane?: unknown
  schedOrder?: number
}

export interface KeySchedulerOptions {
  /** Ordering guarantee (default `'key'`). */
  ordering?: Ordering
  /** Maximum items in flight at once: a positive integer or `Infinity` (default 1). */
  concurrency?: number
}

/** Defaults of {@link KeySchedulerOptions}. */
export const keySchedulerDefaults = { ordering: 'key', concurrency: 1 } as const satisfies KeySchedulerOptions

/**
 * An ordering unit. Its queue is its first item inline plus, only when a second item waits, a FIFO for the
 * rest: a key with one record at a time (the common case) costs one small object and no array.
 */
interface Lane<T> {
  /** Where the lane is registered (undefined for an unordered item's lane of its own) and under which key. */
  readonly home: Map<string, Lane<T>> | undefined
  readonly id: string
  first: T | undefined
  rest: Fifo<T> | undefined
  /** Queued items (first + rest). */
  size: number
  /** The item in flight, if any. */
  running: T | undefined
  /** Whether the lane has an entry in the ready queue (possibly stale after removePartition). */
  inReady: boolean
}

/**
 * The scheduling key of a record key: its bytes as a latin1 string (one char per byte: a bijection, so
 * distinct keys never collide, and half the length of hex). Null stays null.
 */
export function schedulingKey(key: Buffer | null): string | null {
  return key === null ? null : key.toString('latin1')
}

/**
 * Hands out queued items for concurrent execution, at most one in flight per ordering lane and at most
 * `concurrency` overall. Pure state: no I/O, no timers.
 */
export class KeyScheduler<T extends SchedulableItem> {
  /** The ordering this scheduler enforces. */
  readonly ordering: Ordering
  /** The global in-flight limit. */
  readonly concurrency: number
  /** Lanes with queued or in-flight work: per topic by key (`'key'`), or by topic-partition (`'partition'`). */
  #byTopic = new Map<string, Map<string, Lane<T>>>()
  #byPartition = new Map<string, Lane<T>>()
  #ready = new Fifo<Lane<T>>()
  #running = 0
  #seq = 0
  #queued = 0
  #queuedBytes = 0
  #inFlightBytes = 0

  /** @throws LifelineError `LL_OPTIONS_INVALID` naming the bad option. */
  constructor(options: KeySchedulerOptions = {}) {
    const ordering = options.ordering ?? keySchedulerDefaults.ordering
    const concurrency = options.concurrency ?? keySchedulerDefaults.concurrency
    if (ordering !== 'key' && ordering !== 'partition' && ordering !== 'none') {
      throw new LifelineError('LL_OPTIONS_INVALID', `ordering: expected 'key', 'partition' or 'none', got ${String(ordering)}`)
    }
    if (!(Number.isSafeInteger(concurrency) && concurrency >= 1) && concurrency !== Infinity) {
      throw new LifelineError('LL_OPTIONS_INVALID', `concurrency: expected a positive integer or Infinity, got ${String(concurrency)}`)
    }
    this.ordering = ordering
    this.concurrency = concurrency
  }

  /** Items waiting to run. */
  get queued(): number {
    return this.#queued
  }

  /** Items handed out by `next()` and not yet `done()`. */
  get inFlight(): number {
    return this.#running
  }

  /** Sum of `size` over queued items. */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Sum of `size` over in-flight items. */
  get inFlightBytes(): number {
    return this.#inFlightBytes
  }

  /**
   * Queues `item` behind earlier items of its lane. Enqueue the records of a partition in offset order.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when this very object is already queued or in flight, or its
   *   `size` is not a finite number >= 0 (it would poison the byte counters).
   */
  enqueue(item: T): void {
    const problem = item.schedLane !== undefined
      ? 'this item is already queued or in flight'
      : Number.isFinite(item.size) && item.size >= 0
        ? undefined
        : `size must be a finite number >= 0, got ${String(item.size)}`
    if (problem !== undefined) {
      throw new LifelineError('LL_ARGUMENT_INVALID', `enqueue(item): ${problem}`, {
        details: { topic: item.topic, partition: item.partition },
      })
    }
    const lane = this.#laneOf(item)
    if (lane.size === 0) lane.first = item
    else (lane.rest ??= new Fifo<T>()).push(item)
    lane.size++
    item.schedLane = lane
    item.schedOrder = this.#seq++
    this.#queued++
    this.#queuedBytes += item.size
    if (lane.running === undefined && !lane.inReady) this.#makeReady(lane)
  }

  /** Nothing queued and nothing in flight: an item may run at once without breaking any ordering. */
  get idle(): boolean {
    return this.#running === 0 && this.#queued === 0
  }

  /**
   * Counts an item that started running without being queued (only while {@link idle}: its lane is then
   * free) as in flight, so later items of its lane wait for its `done()`.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when the scheduler is not idle or the item is already known.
   */
  adopt(item: T): void {
    if (!this.idle || item.schedLane !== undefined) {
      throw new LifelineError('LL_ARGUMENT_INVALID', `adopt(item): ${item.schedLane !== undefined ? 'this item is already queued or in flight' : 'only an idle scheduler adopts a running item'}`, {
        details: { topic: item.topic, partition: item.partition },
      })
    }
    const lane = this.#laneOf(item)
    lane.running = item
    item.schedLane = lane
    item.schedOrder = this.#seq++
    this.#running++
    this.#inFlightBytes += item.size
  }

  /**
   * The next item to run, now counted as in flight; undefined when the concurrency limit is reached or no
   * lane has a runnable item. Lanes take turns in the order they became ready.
   */
  next(): T | undefined {
    if (this.#running >= this.concurrency) return undefined
    for (let lane = this.#ready.shift(); lane !== undefined; lane = this.#ready.shift()) {
      lane.inReady = false
      const item = this.#shift(lane)
      if (item === undefined) continue // emptied by removePartition after it became ready
      lane.running = item
      this.#running++
      this.#queued--
      this.#queuedBytes -= item.size
      this.#inFlightBytes += item.size
      return item
    }
    return undefined
  }

  /**
   * Marks an item from `next()` as finished and frees its lane for the lane's next item.
   *
   * @returns false when `item` is not in flight (never handed out, or already done).
   */
  done(item: T): boolean {
    const lane = item.schedLane as Lane<T> | undefined
    if (lane === undefined || lane.running !== item) return false
    item.schedLane = undefined
    lane.running = undefined
    this.#running--
    this.#inFlightBytes -= item.size
    if (lane.size > 0) this.#makeReady(lane)
    else this.#forget(lane)
    return true
  }

  /**
   * Drops the queued items of a topic-partition, for revocation. In-flight items stay in flight (their
   * lanes stay busy) until `done()`. O(queued).
   *
   * @returns the dropped items in enqueue order
   */
  removePartition(topic: string, partition: number): T[] {
    const dropped: T[] = []
    const lanes = this.ordering === 'key' ? [...(this.#byTopic.get(topic)?.values() ?? []), ...this.#unordered] : this.ordering === 'partition' ? [...this.#byPartition.values()] : [...this.#unordered]
    for (const lane of lanes) {
      if (lane.size === 0) continue
      const queued = this.#drainQueue(lane)
      for (const item of queued) {
        if (item.topic === topic && item.partition === partition) dropped.push(item)
        else this.#push(lane, item)
      }
      if (lane.size === 0 && lane.running === undefined) this.#forget(lane)
    }
    // A partition's records spread over many lanes: give them back in enqueue order.
    dropped.sort((a, b) => (a.schedOrder as number) - (b.schedOrder as number))
    for (const item of dropped) {
      item.schedLane = undefined
      this.#queued--
      this.#queuedBytes -= item.size
    }
    return dropped
  }

  /** Lanes of unordered items (a null key in `'key'` mode, every item in `'none'` mode) with queued work. */
  #unordered = new Set<Lane<T>>()

  #laneOf(item: T): Lane<T> {
    let home: Map<string, Lane<T>> | undefined
    let id: string
    if (this.ordering === 'key' && item.schedulingKey !== null) {
      home = this.#byTopic.get(item.topic)
      if (home === undefined) this.#byTopic.set(item.topic, (home = new Map()))
      id = item.schedulingKey
    } else if (this.ordering === 'partition') {
      home = this.#byPartition
      // Topic names cannot contain NUL (Kafka allows [a-zA-Z0-9._-]), so ids cannot collide.
      id = `${item.topic}\0${item.partition}`
    } else {
      const lane: Lane<T> = { home: undefined, id: '', first: undefined, rest: undefined, size: 0, running: undefined, inReady: false }
      this.#unordered.add(lane)
      return lane
    }
    let lane = home.get(id)
    if (lane === undefined) {
      lane = { home, id, first: undefined, rest: undefined, size: 0, running: undefined, inReady: false }
      home.set(id, lane)
    }
    return lane
  }

  #forget(lane: Lane<T>): void {
    if (lane.home === undefined) this.#unordered.delete(lane)
    else lane.home.delete(lane.id) // a topic's map stays (topics are few)
  }

  #shift(lane: Lane<T>): T | undefined {
    if (lane.size === 0) return undefined
    const item = lane.first as T
    lane.size--
    lane.first = lane.size > 0 ? lane.rest!.shift() : undefined
    return item
  }

  #push(lane: Lane<T>, item: T): void {
    if (lane.size === 0) lane.first = item
    else (lane.rest ??= new Fifo<T>()).push(item)
    lane.size++
  }

  /** Takes every queued item of the lane, in order (the lane is left empty). */
  #drainQueue(lane: Lane<T>): T[] {
    const out: T[] = []
    for (let item = this.#shift(lane); item !== undefined; item = this.#shift(lane)) out.push(item)
    return out
  }

  #makeReady(lane: Lane<T>): void {
    lane.inReady = true
    this.#ready.push(lane)
  }
}
