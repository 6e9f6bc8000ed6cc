/**
 * A first-in first-out queue with amortized O(1) `push` and `shift`.
 *
 * `Array.prototype.shift` is O(n): at 100k queued items a drain loop over it is quadratic. This queue
 * advances a head index instead and compacts the backing array once the dead prefix is at least half of it,
 * so every element is copied at most once per compaction: amortized O(1).
 *
 * @module
 */

/** Compaction threshold: below this many dead slots, compacting costs more than it saves. */
const MIN_COMPACT = 1024

/** A FIFO queue with amortized O(1) `push`/`shift`. Iteration goes oldest → newest. */
export class Fifo<T> {
  #items: Array<T | undefined> = []
  #head = 0

  /** Number of queued elements. */
  get length(): number {
    return this.#items.length - this.#head
  }

  /** Appends `item` at the tail. */
  push(item: T): void {
    this.#items.push(item)
  }

  /** The oldest element, without removing it; undefined when empty. */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined
  }

  /** Removes and returns the oldest element; undefined when empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head] = undefined // release the reference for the GC
    this.#head++
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= MIN_COMPACT && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /**
   * Removes every element for which `predicate` is true, keeping the others in order. O(n).
   *
   * @returns the removed elements, oldest first
   */
  removeWhere(predicate: (item: T) => boolean): T[] {
    const removed: T[] = []
    const kept: T[] = []
    for (const item of this) {
      if (predicate(item)) removed.push(item)
      else kept.push(item)
    }
    if (removed.length > 0) {
      this.#items = kept
      this.#head = 0
    }
    return removed
  }

  /** Iterates oldest → newest without removing anything. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T
  }
}
