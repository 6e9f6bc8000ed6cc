/**
 * A sliding-window rate limiter: the DLQ's bulk redrive sends under it (`ratePerSec`), so a redrive never
 * floods the topic its consumers read.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import { sleep } from './sleep.js'

/**
 * A sliding-window limiter: `acquire()` resolves with the admission time (ms since the epoch) once fewer
 * than `rate` admissions happened in the last second, so no 1-second window ([t, t + 1000) in these
 * times) ever holds more than `rate`. Bulk sends stamp the record with that time.
 */
export class RateLimiter {
  readonly #ring: number[]
  #next = 0
  #count = 0
  constructor(readonly rate: number, readonly windowMs = 1000) {
    if (!Number.isSafeInteger(rate) || rate < 1) throw new LifelineError('LL_ARGUMENT_INVALID', 'rate must be a positive integer', { details: { field: 'rate' } })
    this.#ring = new Array<number>(rate).fill(0)
  }

  async acquire(signal?: AbortSignal): Promise<number> {
    for (;;) {
      const now = Date.now()
      if (this.#count < this.rate) {
        this.#ring[(this.#next + this.#count) % this.rate] = now
        this.#count++
        return now
      }
      const oldest = this.#ring[this.#next]!
      if (oldest <= now - this.windowMs) {
        this.#ring[this.#next] = now
        this.#next = (this.#next + 1) % this.rate
        return now
      }
      await sleep(oldest + this.windowMs - now, signal ?? new AbortController().signal)
    }
  }
}
