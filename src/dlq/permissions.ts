/**
 * What in a replay or a bulk redrive needs more than the operator role (pure). An operator may send a
 * record back where it came from — its origin topic, a retry tier of the service that dead-lettered it — or
 * to a topic on the processor's allow-list (`replayTopics`). Any other target, and `force` (which skips loop
 * detection and replays records already replayed), needs the approver role: a single replay asked for by an
 * operator is refused (LL_FORBIDDEN), a bulk redrive waits for an approver's approval.
 *
 * Why: a replay decrypts the record's encrypted fields; sent to a topic of the requester's choosing it
 * would hand the clear values to whoever reads that topic (issue 13, finding 1).
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import { roleAtLeast, type Principal } from './auth.js'
import type { RedriveTarget } from './redrive/types.js'

/** Why an action needs the approver role: its target is not the records' own, or it is forced. */
export type ElevatedReason = 'target' | 'force'

/** The records a replay or redrive sends: their distinct origin topics and services. */
export interface ReplayScope {
  originTopics: ReadonlyArray<string | null>
  services: ReadonlyArray<string | null>
}

/**
 * Whether `target` is the records' own or allow-listed: the origin; a topic on `allowed`, or the one origin
 * topic of all of them; a retry tier of the one service all of them came from.
 */
export function targetIsOwn(target: RedriveTarget, scope: ReplayScope, allowed: ReadonlySet<string>): boolean {
  if (target.kind === 'origin') return true
  const one = <T>(values: ReadonlyArray<T>) => (values.length === 1 ? values[0] : undefined)
  if (target.kind === 'topic') return allowed.has(target.topic) || one(scope.originTopics) === target.topic
  return one(scope.services) === target.service
}

/** What in the request needs the approver role (empty: an operator may). */
export function elevatedReasons(request: { target: RedriveTarget; force: boolean }, scope: ReplayScope, allowed: ReadonlySet<string>): ElevatedReason[] {
  const reasons: ElevatedReason[] = []
  if (!targetIsOwn(request.target, scope, allowed)) reasons.push('target')
  if (request.force) reasons.push('force')
  return reasons
}

function describe(target: RedriveTarget): string {
  if (target.kind === 'origin') return 'its origin'
  if (target.kind === 'topic') return `topic ${target.topic}`
  return `retry tier ${target.tier} of service ${target.service}`
}

/**
 * LL_FORBIDDEN when `principal` is below the approver role and `reasons` is not empty, naming what needs the
 * approver role and what an operator may do instead.
 */
export function requireApproverFor(principal: Principal, reasons: readonly ElevatedReason[], request: { target: RedriveTarget; what: string }, allowed: ReadonlySet<string>): void {
  if (reasons.length === 0 || roleAtLeast(principal.role, 'approver')) return
  const parts: string[] = []
  if (reasons.includes('target')) {
    parts.push(
      `replaying to ${describe(request.target)} needs the approver role: an operator may replay to the record's origin topic, a retry tier of its service, or an allow-listed topic (${allowed.size === 0 ? 'none configured' : [...allowed].sort().join(', ')})`,
    )
  }
  if (reasons.includes('force')) parts.push('force (past loop detection, or a record already replayed) needs the approver role')
  throw new LifelineError('LL_FORBIDDEN', `${request.what}: ${parts.join('; ')}; ${principal.name} is ${principal.role}`, { details: { reasons: [...reasons] } })
}
