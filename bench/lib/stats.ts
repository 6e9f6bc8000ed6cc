/** Pure helpers for benchmark figures. */

/** MB as Kafka's perf tools count it: 2^20 bytes. */
export const MB = 2 ** 20

/** Nearest-rank percentile (`p` in 0..100) of `values`; null for an empty list. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1]!
}

/** count / ms, per second; 0 when no time passed. */
export function perSecond(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : 0
}
