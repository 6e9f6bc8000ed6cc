/**
 * Which refused requests get an audit row (pure): at most `perSource` rows per source and `total` rows in
 * all per window, so a flood of refused requests (a 401 storm from one address or from many) never grows
 * the audit log without bound. What is not written is counted: the next row written for that source
 * carries how many of its refusals were left out before it (`suppressed`). Every refusal is counted in the
 * API's metrics whatever this says (docs/metrics.md).
 *
 * Memory is bounded too: when a window ends, only the sources with refusals still to report are kept, and
 * at most `maxSources` are tracked at once (further sources share one slot).
 *
 * @module
 */

export interface RefusalSamplerOptions {
  /** Rows per source per window (default 5). */
  perSource?: number
  /** Rows per window, all sources together (default 60). */
  total?: number
  /** The window, ms (default 60000). */
  windowMs?: number
  /** Sources tracked per window (default 10000). */
  maxSources?: number
}

export const refusalSamplerDefaults = { perSource: 5, total: 60, windowMs: 60_000, maxSources: 10_000 } as const satisfies RefusalSamplerOptions

const OVERFLOW = '\u0000overflow'

export class RefusalSampler {
  readonly #perSource: number
  readonly #total: number
  readonly #windowMs: number
  readonly #maxSources: number
  #window = -1
  #written = 0
  readonly #sources = new Map<string, { written: number; suppressed: number }>()

  constructor(options: RefusalSamplerOptions = {}) {
    this.#perSource = options.perSource ?? refusalSamplerDefaults.perSource
    this.#total = options.total ?? refusalSamplerDefaults.total
    this.#windowMs = options.windowMs ?? refusalSamplerDefaults.windowMs
    this.#maxSources = options.maxSources ?? refusalSamplerDefaults.maxSources
  }

  /** Whether a refusal from `source` at `now` gets an audit row, and how many of the source's refusals were left out before it. */
  admit(source: string, now = Date.now()): { write: boolean; suppressed: number } {
    const window = Math.floor(now / this.#windowMs)
    if (window !== this.#window) {
      this.#window = window
      this.#written = 0
      // A new window: counts start again; what each source had left out waits for its next row.
      for (const [source, state] of this.#sources) {
        if (state.suppressed === 0) this.#sources.delete(source)
        else state.written = 0
      }
    }
    const key = this.#sources.has(source) || this.#sources.size < this.#maxSources ? source : OVERFLOW
    let state = this.#sources.get(key)
    if (state === undefined) this.#sources.set(key, (state = { written: 0, suppressed: 0 }))
    if (state.written >= this.#perSource || this.#written >= this.#total) {
      state.suppressed++
      return { write: false, suppressed: 0 }
    }
    state.written++
    this.#written++
    const suppressed = state.suppressed
    state.suppressed = 0
    return { write: true, suppressed }
  }
}
