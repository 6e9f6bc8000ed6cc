/**
 * The redrive's input checks (LL_ARGUMENT_INVALID naming the field) and its conflict error
 * (LL_DLQ_CONFLICT): ids, actors and reasons, bounded integers, and a replay's target.
 *
 * @module
 */
import { invalidArgument, LifelineError } from '../../errors.js'
import type { RedriveTarget } from './types.js'

export const conflict = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_DLQ_CONFLICT', message, { details })

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

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/

/** Validates a target (LL_ARGUMENT_INVALID naming the field); undefined → origin. */
export function parseTarget(input: unknown): RedriveTarget {
  if (input === undefined || input === null) return { kind: 'origin' }
  if (typeof input !== 'object' || Array.isArray(input)) throw invalidArgument('target must be an object', { field: 'target' })
  const t = input as Record<string, unknown>
  if (t.kind === 'origin') return { kind: 'origin' }
  if (t.kind === 'retry-tier') {
    const tier = intIn('target.tier', t.tier, 1, 999)
    if (tier === undefined) throw invalidArgument('target.tier is required for a retry-tier target', { field: 'target.tier' })
    const service = text('target.service', t.service, 200)!
    return { kind: 'retry-tier', tier, service }
  }
  if (t.kind === 'topic') {
    if (typeof t.topic !== 'string' || !TOPIC.test(t.topic)) throw invalidArgument('target.topic must be a topic name (letters, digits, . _ -; at most 249)', { field: 'target.topic' })
    const partition = intIn('target.partition', t.partition, 0, 0x7fffffff)
    return partition === undefined ? { kind: 'topic', topic: t.topic } : { kind: 'topic', topic: t.topic, partition }
  }
  throw invalidArgument('target.kind must be origin, retry-tier or topic', { field: 'target.kind' })
}
