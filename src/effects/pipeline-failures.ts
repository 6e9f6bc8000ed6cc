/**
 * The retry budget of the transactional pipeline (pure, in memory): how often each input record's transform
 * failed, and whether a failure dead-letters the record now or aborts its batch for another attempt.
 *
 * A permanent failure (the consumer runtime's classification: `NonRetriableError`, a permanent code, a
 * `LifelineError` with `retriable: false`, the user's classifier) is dead-lettered at its first failure; a
 * retriable one when it used up `maxAttempts`. Counts live until the record's transaction commits or its
 * partition goes (the next owner starts the count over); a restart starts over too, so a poison record
 * costs at most `maxAttempts` attempts per life of a member.
 *
 * @module
 */
import type { ConsumedRecord, TopicPartition, TopicPartitionOffset } from '../kafka/types.js'
import { classifyError, type ClassifyOptions } from '../retry/classify.js'
import type { FailureSummary } from '../failure/dead-letter.js'

/** What to do with a record whose transform just failed. */
export interface FailureVerdict {
  /** Dead-letter the record in the running transaction (true), or abort the batch and try it again. */
  deadLetter: boolean
  summary: FailureSummary
}

interface Counted {
  attempts: number
  firstFailureAt: number
}

const partitionKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`

export class RecordFailures {
  readonly #maxAttempts: number
  readonly #classify: ClassifyOptions
  /** Per partition: offset → failed attempts so far. */
  readonly #counts = new Map<string, Map<number, Counted>>()

  constructor(maxAttempts: number, classify: ClassifyOptions = {}) {
    this.#maxAttempts = maxAttempts
    this.#classify = classify
  }

  /** The attempt the next transform of `record` is: 1 + its failures so far. */
  attempt(record: ConsumedRecord): number {
    return (this.#counts.get(partitionKey(record.topic, record.partition))?.get(record.offset)?.attempts ?? 0) + 1
  }

  /** Counts one more failed attempt of `record` with `err` and says what to do. A throwing classifier propagates. */
  fail(record: ConsumedRecord, err: unknown, now: number = Date.now()): FailureVerdict {
    const classification = classifyError(err, this.#classify)
    const pk = partitionKey(record.topic, record.partition)
    let offsets = this.#counts.get(pk)
    if (!offsets) this.#counts.set(pk, (offsets = new Map()))
    const counted = offsets.get(record.offset) ?? { attempts: 0, firstFailureAt: now }
    counted.attempts++
    offsets.set(record.offset, counted)
    return {
      deadLetter: classification.kind === 'permanent' || counted.attempts >= this.#maxAttempts,
      summary: { classification, attempts: counted.attempts, firstFailureAt: counted.firstFailureAt, lastFailureAt: now },
    }
  }

  /** Forgets the records before these next offsets: their transaction committed. */
  committed(nexts: readonly TopicPartitionOffset[]): void {
    for (const n of nexts) {
      const offsets = this.#counts.get(partitionKey(n.topic, n.partition))
      if (!offsets) continue
      for (const offset of offsets.keys()) if (offset < n.offset) offsets.delete(offset)
      if (offsets.size === 0) this.#counts.delete(partitionKey(n.topic, n.partition))
    }
  }

  /** Forgets the records of partitions this member no longer owns. */
  forget(partitions: readonly TopicPartition[]): void {
    for (const p of partitions) this.#counts.delete(partitionKey(p.topic, p.partition))
  }

  /** Records with a failure counted (for tests and stats). */
  get size(): number {
    let n = 0
    for (const offsets of this.#counts.values()) n += offsets.size
    return n
  }
}
