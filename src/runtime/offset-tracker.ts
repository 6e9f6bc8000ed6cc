/**
 * Per-partition offset tracking for out-of-order completion.
 *
 * With per-key concurrency, records of one partition finish in any order, but Kafka stores one committed
 * offset per partition: "the offset of the next record to read". Committing offset N promises that every
 * record below N is done, so the committable offset is the lowest offset still unfinished, or the last
 * tracked offset + 1 when everything is done. Committing anything higher would lose the unfinished
 * records on a crash (at-least-once broken); this tracker never returns such an offset.
 *
 * Offsets arrive in increasing order with gaps allowed: compacted topics drop offsets and transaction
 * markers occupy offsets that are never delivered (KIP-98), so "last + 1" is not always the next record.
 *
 * Cost: `track` and `markCommitted` O(1); `complete` O(log n) (binary search over the in-flight window);
 * the window's dead prefix is dropped in amortized O(1) per offset.
 *
 * @module
 * @example
 * const offsets = new PartitionOffsets(100)
 * offsets.track(100); offsets.track(101); offsets.track(105)
 * offsets.complete(101)
 * offsets.committable() // 100: offset 100 is still running
 * offsets.complete(100)
 * offsets.committable() // 102: everything up to 101 is done, 105 is not
 */
import { LifelineError } from '../errors.js'

/** Below this many dead slots, compacting costs more than it saves. */
const MIN_COMPACT = 1024

function checkOffset(name: string, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new LifelineError('LL_ARGUMENT_INVALID', `${name}: expected a safe integer >= 0, got ${String(offset)}`, {
      details: { offset },
    })
  }
}

/**
 * Tracks the offsets of one partition from delivery to completion and answers which offset is safe to
 * commit. Pure state: no I/O, no timers.
 */
export class PartitionOffsets {
  /** Tracked offsets not yet passed by the commit point, increasing; `#done[i]` says whether `#offsets[i]` finished. */
  #offsets: number[] = []
  #done: boolean[] = []
  /** Index of the lowest unfinished offset in `#offsets` (== length when all are done). */
  #head = 0
  #inFlight = 0
  #lastTracked: number | undefined
  #committed: number | undefined
  #generation = 0

  /**
   * @param fromOffset the partition's start position (its committed offset, or where the consumer was told
   *   to start); behaves like {@link PartitionOffsets.reset}. Omitted: the first tracked offset is the start
   *   and nothing counts as committed yet.
   */
  constructor(fromOffset?: number) {
    if (fromOffset !== undefined) this.reset(fromOffset)
  }

  /** Offsets tracked but not completed. */
  get inFlight(): number {
    return this.#inFlight
  }

  /** The lowest tracked offset that has not completed; undefined when none is in flight. */
  get lowestUnfinished(): number | undefined {
    return this.#head < this.#offsets.length ? this.#offsets[this.#head] : undefined
  }

  /** The highest offset tracked since the last reset (`fromOffset - 1` right after a reset). */
  get lastTracked(): number | undefined {
    return this.#lastTracked
  }

  /**
   * Incremented by every {@link PartitionOffsets.reset}. Capture it when sending a commit and pass it to
   * `markCommitted`, so an acknowledgement that arrives after a seek cannot move the new position.
   */
  get generation(): number {
    return this.#generation
  }

  /** The highest offset recorded by {@link PartitionOffsets.markCommitted} (or the reset position). */
  get committed(): number | undefined {
    return this.#committed
  }

  /**
   * Records that `offset` was delivered and is now in flight. Offsets must increase; gaps are fine.
   *
   * @returns false (and changes nothing) when `offset` is not above the last tracked offset: a stale or
   *   duplicate delivery the caller must not process a second time.
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `offset` is not a safe integer >= 0.
   */
  track(offset: number): boolean {
    checkOffset('track(offset)', offset)
    if (this.#lastTracked !== undefined && offset <= this.#lastTracked) return false
    this.#offsets.push(offset)
    this.#done.push(false)
    this.#lastTracked = offset
    this.#inFlight++
    return true
  }

  /**
   * Records that `offset` finished (handled, dead-lettered or skipped: anything after which it must not be
   * redelivered).
   *
   * @returns false when `offset` is not in flight: never tracked, already completed, or dropped by a reset
   *   (a handler finishing after its partition was revoked and reassigned).
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `offset` is not a safe integer >= 0.
   */
  complete(offset: number): boolean {
    checkOffset('complete(offset)', offset)
    const index = this.#indexOf(offset)
    if (index < 0 || this.#done[index] === true) return false
    this.#done[index] = true
    this.#inFlight--
    if (index === this.#head) this.#advance()
    return true
  }

  /**
   * The offset to commit now, Kafka style (the next offset to read): the lowest unfinished offset, or the
   * last tracked offset + 1 when all are done.
   *
   * @returns undefined when there is nothing new to commit: nothing tracked yet, or the answer is not above
   *   the last committed offset. Never above an unfinished offset; never below a committed one.
   */
  committable(): number | undefined {
    const candidate = this.lowestUnfinished ?? (this.#lastTracked === undefined ? undefined : this.#lastTracked + 1)
    if (candidate === undefined) return undefined
    if (this.#committed !== undefined && candidate <= this.#committed) return undefined
    return candidate
  }

  /**
   * Records that `offset` was committed (acknowledged by the broker). The committed offset never goes back.
   *
   * @param generation the {@link PartitionOffsets.generation} the commit was sent in (default: current)
   * @returns false (and changes nothing) when `offset` is not above the committed offset (a late
   *   acknowledgement of an older commit, which must not move the position back), or when `generation`
   *   is not the current one (the commit was sent before a reset).
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `offset` is not a safe integer >= 0.
   */
  markCommitted(offset: number, generation: number = this.#generation): boolean {
    checkOffset('markCommitted(offset)', offset)
    if (generation !== this.#generation) return false
    if (this.#committed !== undefined && offset <= this.#committed) return false
    this.#committed = offset
    return true
  }

  /**
   * Forgets every tracked offset and restarts at `fromOffset`, for a seek or a (re)assignment. Unlike
   * {@link PartitionOffsets.markCommitted} this may move back: `fromOffset` counts as the committed
   * position, so nothing is committable until a record at or after it completes. Later `complete` calls
   * for dropped offsets return false.
   *
   * @throws LifelineError `LL_ARGUMENT_INVALID` when `fromOffset` is not a safe integer >= 0.
   */
  reset(fromOffset: number): void {
    checkOffset('reset(fromOffset)', fromOffset)
    this.#offsets = []
    this.#done = []
    this.#head = 0
    this.#inFlight = 0
    this.#lastTracked = fromOffset - 1
    this.#committed = fromOffset
    this.#generation++
  }

  /** Binary search for `offset` among the entries at or after the head; -1 when absent. */
  #indexOf(offset: number): number {
    let low = this.#head
    let high = this.#offsets.length - 1
    while (low <= high) {
      const mid = (low + high) >>> 1
      const value = this.#offsets[mid] as number
      if (value === offset) return mid
      if (value < offset) low = mid + 1
      else high = mid - 1
    }
    return -1
  }

  /** Moves the head past completed offsets and drops the dead prefix once it is at least half the window. */
  #advance(): void {
    while (this.#head < this.#offsets.length && this.#done[this.#head] === true) this.#head++
    if (this.#head === this.#offsets.length) {
      this.#offsets = []
      this.#done = []
      this.#head = 0
    } else if (this.#head >= MIN_COMPACT && this.#head * 2 >= this.#offsets.length) {
      this.#offsets = this.#offsets.slice(this.#head)
      this.#done = this.#done.slice(this.#head)
      this.#head = 0
    }
  }
}
