/**
 * The benchmarks' own errors. They are not part of Lifeline's catalogue (`src/errors.ts`): the benchmarks
 * are not shipped, and a user of the library never meets them. `npm run bench` maps them to exit codes
 * (bench/README.md, "Exit codes").
 *
 * @module
 */

export const BenchErrorCodes = {
  BENCH_UNKNOWN: 'npm run bench was given a benchmark name that does not exist (or none).',
  BENCH_FAILED: 'A benchmark could not complete: a perf tool failed, timed out, or printed output that could not be parsed; or the broker did not hold what was acknowledged.',
} as const

export type BenchErrorCode = keyof typeof BenchErrorCodes

export class BenchError extends Error {
  override readonly name = 'BenchError'
  readonly details: Record<string, unknown>
  constructor(
    readonly code: BenchErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.details = options.details ?? {}
  }
}

/** Whether `err` is a benchmark error (with `code`, when given). */
export const isBenchError = (err: unknown, code?: BenchErrorCode): err is BenchError => err instanceof BenchError && (code === undefined || err.code === code)
