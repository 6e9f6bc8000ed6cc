/**
 * The object a handler receives. A class, not an object literal: one is made per record per attempt, and
 * prototype methods and lazy getters keep that allocation (and its garbage) small on the hot path.
 */
import type { ConsumedRecord, KafkaHeader } from '../kafka/types.js'
import type { LifelineMessage } from './options.js'

export class Message<V> implements LifelineMessage<V> {
  readonly value: V
  readonly attempt: number
  readonly signal: AbortSignal
  readonly #record: ConsumedRecord

  constructor(record: ConsumedRecord, value: V, attempt: number, signal: AbortSignal) {
    this.#record = record
    this.value = value
    this.attempt = attempt
    this.signal = signal
  }

  get key(): Buffer | null {
    return this.#record.key
  }
  get keyText(): string | null {
    return this.#record.key === null ? null : this.#record.key.toString('utf8')
  }
  get headers(): KafkaHeader[] {
    return this.#record.headers
  }
  get topic(): string {
    return this.#record.topic
  }
  get partition(): number {
    return this.#record.partition
  }
  get offset(): number {
    return this.#record.offset
  }
  get timestamp(): number {
    return this.#record.timestamp
  }
  get raw(): { key: Buffer | null; value: Buffer | null } {
    return { key: this.#record.key, value: this.#record.value }
  }

  header(name: string): string | undefined {
    for (const h of this.#record.headers) if (h.key === name) return h.value?.toString('utf8')
    return undefined
  }
}
