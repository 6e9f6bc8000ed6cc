/**
 * The redrive's pure core: whether a record may be replayed (status, lineage limit), and the record a
 * replay sends — its user headers (failure headers of every format stripped), replay headers, a clear key
 * and value (decrypted by the {@link Masker}), and where it goes (origin, retry tier or another topic).
 * No I/O: the database and Kafka are the callers'.
 *
 * @module
 */
import { invalidArgument, LifelineError } from '../../errors.js'
import type { KafkaHeader, ProduceRecord } from '../../kafka/types.js'
import { LIFELINE_HEADER_PREFIX, type FailureContext } from '../../failure/headers.js'
import { RetryHeaders, retryTopicName, tierRecord } from '../../failure/tier-record.js'
import { KarafkaHeaders, ReplayHeaders, type DeadLetterFormat } from '../../failure/formats.js'
import { isEncrypted, type Masker } from '../../failure/masking.js'
import type { DlqStatus } from '../records.js'
import type { RedriveTarget, Source } from './types.js'

/**
 * Replays of the record's lineage so far (its own plus those before it came back) and whether the earlier
 * lives alone reach the limit (a loop). Earlier replays: the larger of `lifeline.replay.count` on arrival and
 * the number of earlier lives linked.
 */
export function lineage(source: Source, lives: number): { earlier: number; total: number } {
  const earlier = Math.max(source.replayedBefore, lives)
  return { earlier, total: earlier + source.replayCount }
}

export function limitError(source: Source, lives: number, max: number): LifelineError | undefined {
  const { earlier, total } = lineage(source, lives)
  if (total < max) return undefined
  const loop = earlier >= max
  return new LifelineError(
    'LL_REDRIVE_LIMIT',
    loop
      ? `DLQ record ${source.id} came back to the DLQ after ${earlier} replays of its lineage (limit ${max}): a redrive loop; force to replay anyway`
      : `DLQ record ${source.id} was already redriven ${total} times (limit ${max}); force to replay anyway`,
    { details: { id: source.id, replays: total, earlierReplays: earlier, limit: max, loop } },
  )
}

/** Whether `status` may be replayed (`force` also allows replaying a `replayed` or stuck `replaying` record). */
export function replayable(status: DlqStatus, force: boolean): boolean {
  return status === 'pending' || (force && (status === 'replayed' || status === 'replaying'))
}

const FOREIGN_FAILURE_PREFIXES = ['kafka_dlt-', 'kafka_original-', 'kafka_exception-', 'kafka_key-exception-', 'retry_topic-', '__connect.errors.', '__streams.errors.']
const FOREIGN_FAILURE_NAMES = new Set(['kafka_deliveryAttempt'])
const KARAFKA_NAMES = new Set<string>(Object.values(KarafkaHeaders))

/** The record's own headers: without any failure, masking or earlier replay header. */
export function userHeaders(headers: readonly KafkaHeader[], format: DeadLetterFormat): KafkaHeader[] {
  return headers.filter(
    (h) =>
      !h.key.startsWith(LIFELINE_HEADER_PREFIX) &&
      !FOREIGN_FAILURE_PREFIXES.some((p) => h.key.startsWith(p)) &&
      !FOREIGN_FAILURE_NAMES.has(h.key) &&
      !(format === 'karafka' && KARAFKA_NAMES.has(h.key)),
  )
}

/** The topics whose policy may have masked a record: its origin topic, then its DLQ topic. */
export function policyTopics(source: Pick<Source, 'originTopic' | 'topic'>): string[] {
  return [...new Set([source.originTopic, source.topic].filter((t): t is string => t !== null))]
}

const needsKeyring = (source: Source, what: string) =>
  new LifelineError('LL_DECRYPT', `DLQ record ${source.id} has an encrypted ${what}: the redrive needs the masking keyring (deps.masker) to decrypt it`, { details: { id: source.id, masked: true } })

/** The value to send: encrypted fields decrypted where they sit (LL_DECRYPT when one does not belong there). */
export function clearValue(source: Source, value: Buffer | null, masker: Masker | undefined): Buffer | null {
  if (value === null) return null
  if (masker) return masker.unmaskValue(value, policyTopics(source))
  if (value.includes('enc:v1:') || value.includes('enc:v2:')) throw needsKeyring(source, 'value')
  return value
}

/** The source with its clear key (a key masked under `key: 'encrypt'` is decrypted). */
export function withClearKey(source: Source, masker: Masker | undefined): Source {
  if (source.key === null || !isEncrypted(source.key.toString('utf8'))) return source
  if (!masker) throw needsKeyring(source, 'key')
  return { ...source, key: masker.unmaskKey(source.key, policyTopics(source)) }
}

export interface Planned {
  record: ProduceRecord
  topic: string
  /** Release the origin key after a successful send (the replay went to the origin topic). */
  release: boolean
}

function requireOrigin(source: Source, target: RedriveTarget): { topic: string; partition: number | null } {
  if (source.originTopic === null) throw invalidArgument(`DLQ record ${source.id} has no origin topic: give a topic target`, { id: source.id, target: target.kind })
  return { topic: source.originTopic, partition: source.originPartition }
}

export function plan(source: Source, target: RedriveTarget, replay: { id: string; count: number; actor: string }, value: Buffer | null, headToken: string | undefined): Planned {
  const headers = [
    ...userHeaders(source.headers, source.format),
    { key: ReplayHeaders.id, value: Buffer.from(replay.id, 'utf8') },
    { key: ReplayHeaders.count, value: Buffer.from(String(replay.count), 'utf8') },
    { key: ReplayHeaders.actor, value: Buffer.from(replay.actor, 'utf8') },
  ]
  if (target.kind === 'origin' || (target.kind === 'topic' && target.topic === source.originTopic)) {
    const origin = requireOrigin(source, target)
    const partition = target.kind === 'topic' && target.partition !== undefined ? target.partition : origin.partition
    // A parked key's head goes back to its origin with the key's head token: its consumer runs it as the
    // head before the records that wait behind it, and its success releases the key. Released here, the
    // waiting records would run before it.
    if (headToken !== undefined) headers.push({ key: RetryHeaders.token, value: Buffer.from(headToken, 'utf8') })
    return { record: { topic: origin.topic, ...(partition === null ? {} : { partition }), key: source.key, value, headers }, topic: origin.topic, release: headToken === undefined }
  }
  if (target.kind === 'topic') {
    return { record: { topic: target.topic, ...(target.partition === undefined ? {} : { partition: target.partition }), key: source.key, value, headers }, topic: target.topic, release: true }
  }
  const origin = requireOrigin(source, target)
  if (origin.partition === null || source.originOffset === null) throw invalidArgument(`DLQ record ${source.id} has no origin partition and offset: a retry tier needs them`, { id: source.id })
  const topic = retryTopicName(target.service, origin.topic, target.tier)
  const now = Date.now()
  const context: FailureContext = {
    originTopic: origin.topic, originPartition: origin.partition, originOffset: source.originOffset, originTimestamp: source.originTimestamp ?? -1,
    group: source.consumerGroup ?? '', service: target.service, errorClass: source.errorClass ?? 'Error', errorCode: source.errorCode ?? 'UNKNOWN',
    errorMessage: source.errorMessage ?? '', errorStack: source.errorStack ?? undefined, errorFingerprint: source.fingerprint ?? '', attempts: source.attempts ?? 0,
    firstFailureAt: source.firstFailureAt?.getTime() ?? now, lastFailureAt: source.lastFailureAt?.getTime() ?? now,
  }
  const origin2 = { topic: origin.topic, partition: origin.partition, offset: source.originOffset, key: source.key, value, headers, timestamp: source.originTimestamp ?? 0, size: 0 }
  // A parked key's head carries the key's head token: the tier consumer runs it as the head, and its success
  // releases the key (its parked records then replay after it, in order). Released here it would be stale.
  return { record: tierRecord(topic, origin2, context, target.tier, now, headToken), topic, release: headToken === undefined }
}

/** A key of an origin topic, as the maps of parked and blocked keys name it. */
export const keyId = (topic: string, key: Buffer) => `${topic}\u0000${key.toString('hex')}`
