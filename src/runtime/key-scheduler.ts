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
}

export interface KeySchedulerOptions {
  /** Ordering guarantee (default `'key'`). */
  ordering?: Ordering
  /** Maximum items in flight at once: a positive integer or `Infinity` (default 1). */
  concurrency?: number
}

/** Defaults of {@link KeySchedulerOptions}. */
export const keySchedulerDefaults = { ordering: 'key', concurrency: 1 } as const satisfies KeySchedulerOptions

interface Entry<T> {
  readonly item: T
  /** Enqueue sequence number, to give removePartition's result back in enqueue order. */
  readonly seq: number
}

interface Lane<T> {
  readonly id: string
  readonly queue: Fifo<Entry<T>>
  busy: boolean
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
  /** Lanes with queued or in-flight work, by id. */
  #lanes = new Map<string, Lane<T>>()
  #ready = new Fifo<Lane<T>>()
  #running = new Map<T, Lane<T>>()
  /** Every item queued or in flight, to reject a second enqueue of the same object. */
  #members = new Set<T>()
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
    return this.#running.size
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
    const problem = this.#members.has(item)
      ? 'this item is already queued or in flight'
      : Number.isFinite(item.size) && item.size >= 0
        ? undefined
        : `size must be a finite number >= 0, got ${String(item.size)}`
    if (problem !== undefined) {
      throw new LifelineError('LL_ARGUMENT_INVALID', `enqueue(item): ${problem}`, {
        details: { topic: item.topic, partition: item.partition },
      })
    }
    this.#members.add(item)
    const id = this.#laneId(item)
    let lane = this.#lanes.get(id)
    if (lane === undefined) {
      lane = { id, queue: new Fifo<Entry<T>>(), busy: false, inReady: false }
      this.#lanes.set(id, lane)
    }
    lane.queue.push({ item, seq: this.#seq++ })
    this.#queued++
    this.#queuedBytes += item.size
    if (!lane.busy && !lane.inReady) this.#makeReady(lane)
  }

  /**
   * The next item to run, now counted as in flight; undefined when the concurrency limit is reached or no
   * lane has a runnable item. Lanes take turns in the order they became ready.
   */
  next(): T | undefined {
    if (this.#running.size >= this.concurrency) return undefined
    for (let lane = this.#ready.shift(); lane !== undefined; lane = this.#ready.shift()) {
      lane.inReady = false
      const entry = lane.queue.shift()
      if (entry === undefined) continue // emptied by removePartition after it became ready
      const item = entry.item
      lane.busy = true
      this.#running.set(item, lane)
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
    const lane = this.#running.get(item)
    if (lane === undefined) return false
    this.#running.delete(item)
    this.#members.delete(item)
    this.#inFlightBytes -= item.size
    lane.busy = false
    if (lane.queue.length > 0) this.#makeReady(lane)
    else this.#lanes.delete(lane.id)
    return true
  }

  /**
   * Drops the queued items of a topic-partition, for revocation. In-flight items stay in flight (their
   * lanes stay busy) until `done()`. O(queued).
   *
   * @returns the dropped items in enqueue order
   */
  removePartition(topic: string, partition: number): T[] {
    const dropped: Array<Entry<T>> = []
    for (const lane of this.#lanes.values()) {
      const removed = lane.queue.removeWhere(({ item }) => item.topic === topic && item.partition === partition)
      if (removed.length === 0) continue
      dropped.push(...removed)
      // A stale ready-queue entry of an emptied lane is skipped by next(); deleting while iterating a Map is safe.
      if (lane.queue.length === 0 && !lane.busy) this.#lanes.delete(lane.id)
    }
    // A partition's records spread over many lanes: give them back in enqueue order.
    dropped.sort((a, b) => a.seq - b.seq)
    for (const { item } of dropped) {
      this.#members.delete(item)
      this.#queued--
      this.#queuedBytes -= item.size
    }
    return dropped.map(({ item }) => item)
  }

  #makeReady(lane: Lane<T>): void {
    lane.inReady = true
    this.#ready.push(lane)
  }

  /** The lane of an item. Topic names cannot contain NUL (Kafka allows [a-zA-Z0-9._-]), so ids cannot collide. */
  #laneId(item: T): string {
    if (this.ordering === 'partition') return `p\0${item.topic}\0${item.partition}`
    if (this.ordering === 'key' && item.schedulingKey !== null) return `k\0${item.topic}\0${item.schedulingKey}`
    return `u\0${this.#seq}` // unordered: a lane of its own (#seq is unique per enqueue)
  }
}
