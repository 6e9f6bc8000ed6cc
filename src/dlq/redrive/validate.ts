/**
 * The redrive's input checks (LL_ARGUMENT_INVALID naming the field): ids, actors and reasons, bounded
 * integers (a replay's target: target.ts).
 *
 * @module
 */
import { invalidArgument } from '../../errors.js'

export function positiveId(what: string, id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalidArgument(`${what} id must be a positive integer`, { field: 'id' })
  return String(n)
}

export function text(field: string, value: unknown, max: number, optional = false): string | undefined {
  if (value === undefined && optional) return undefined
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > max) throw invalidArgument(`${field} must be a non-empty string of at most ${max} characters`, { field })
  return value
}

export function intIn(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw invalidArgument(`${field} must be an integer from ${min} to ${max}`, { field })
  return value
}
