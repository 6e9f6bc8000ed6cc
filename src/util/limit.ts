/** The `limit` of a list query: an integer from 1 to 10,000 (default 100), else LL_ARGUMENT_INVALID. */
import { LifelineError } from '../errors.js'

export function listLimit(limit: number | undefined, fallback = 100): number {
  const value = limit ?? fallback
  if (!Number.isInteger(value) || value < 1 || value > 10_000) throw new LifelineError('LL_ARGUMENT_INVALID', `limit must be an integer from 1 to 10000, got ${String(value)}`)
  return value
}
