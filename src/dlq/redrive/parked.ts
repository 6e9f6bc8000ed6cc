/**
 * The parked keys of redriven or closed records (through {@link ParkedKeys}): which record is a parked
 * key's head, and releasing a key once its head was replayed elsewhere, discarded or resolved.
 *
 * @module
 */
import { isLifelineError } from '../../errors.js'
import { silentLogger } from '../../logger.js'
import type { ParkedKey, ParkedKeys } from '../../ordering/state-store.js'
import { keyId } from './plan.js'
import type { RedriveDeps, Source } from './types.js'

/** Parked keys (by group) of the sources' origin topics, as one list call per (group, topic). */
export async function parkedOf(parkedKeys: ParkedKeys | undefined, sources: readonly Source[]): Promise<Map<string, ParkedKey>> {
  const out = new Map<string, ParkedKey>()
  if (!parkedKeys) return out
  const pairs = new Map<string, { group: string; topic: string }>()
  for (const s of sources) if (s.consumerGroup !== null && s.originTopic !== null && s.key !== null) pairs.set(`${s.consumerGroup}\u0000${s.originTopic}`, { group: s.consumerGroup, topic: s.originTopic })
  for (const { group, topic } of pairs.values()) {
    for (const k of await parkedKeys.list({ group, topic, status: 'parked', limit: 10_000 })) out.set(`${group}\u0000${keyId(topic, k.key)}`, k)
  }
  return out
}

export const parkedHead = (parked: Map<string, ParkedKey>, s: Source): ParkedKey | undefined => {
  if (s.consumerGroup === null || s.originTopic === null || s.key === null) return undefined
  const k = parked.get(`${s.consumerGroup}\u0000${keyId(s.originTopic, s.key)}`)
  return k !== undefined && k.headOffset === s.originOffset ? k : undefined
}

export async function releaseKey(deps: RedriveDeps, s: Pick<Source, 'consumerGroup' | 'originTopic' | 'originOffset' | 'key' | 'id'>, actor: string, reason: string): Promise<boolean> {
  if (!deps.parkedKeys || s.consumerGroup === null || s.originTopic === null || s.key === null) return false
  try {
    await deps.parkedKeys.release({ group: s.consumerGroup, topic: s.originTopic, key: s.key, actor, reason, ...(s.originOffset === null ? {} : { expectHeadOffset: s.originOffset }) })
    return true
  } catch (err) {
    if (isLifelineError(err, 'LL_KEY_NOT_PARKED')) return false
    ;(deps.logger ?? silentLogger()).warn({ err, recordId: s.id }, 'releasing the parked key of a DLQ record failed')
    throw err
  }
}
