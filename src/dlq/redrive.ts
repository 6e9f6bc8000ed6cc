/**
 * DLQ redrive: replays dead letters (single records, edited records, or bulk jobs by filter), and closes
 * them (discard, resolve). Tables: `migrations/0004_dlq.sql` and `0005_dlq_redrive.sql`.
 *
 * A replay sends the record's key, value (encrypted fields decrypted by the {@link Masker}) and user headers
 * to a target: the origin topic and partition (from the failure context), a retry tier of the service that
 * dead-lettered it, or another topic. Failure headers (Lifeline's and other systems') are stripped and
 * replay headers added: `lifeline.replay.id` (a new UUID v7, also `lifeline_dlq_replays.replay_id`),
 * `lifeline.replay.count` (replays of the record's lineage, this one included) and `lifeline.replay.actor`.
 * A replay that fails again comes back to a DLQ with these headers and the indexer links it to this life.
 *
 * Limits: a record whose lineage has been replayed `maxRedrivesPerRecord` times (its own replays plus the
 * replays before it came back, from `lifeline.replay.count` or its earlier lives) is refused with
 * LL_REDRIVE_LIMIT (`details.loop` when the earlier lives alone reach it); `force` overrides, and also
 * allows replaying a record already `replayed` (or stuck in `replaying`).
 *
 * Bulk jobs freeze their item list at creation (ordered by origin topic, key, origin offset: each key's
 * records replay in their original order), skip what is not `pending` (or belongs to another open job)
 * unless forced, send under a sliding-window rate limit (never more than `ratePerSec` sends in any
 * 1-second window), run a canary first, pause themselves when replays fail again, and survive a crash:
 * every item gets its replay id before it is sent (status `sending`), and a resumed job looks for those
 * replay ids in the target topic (with `deps.kafka`) before sending anything again. See docs/dlq.md.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { Compile } from 'typebox/compile'
import { isLifelineError, LifelineError, publicErrorText } from '../errors.js'
import { createAdmin, createConsumer } from '../kafka/index.js'
import type { KafkaHeader, KafkaProducer, ProduceAck, ProduceRecord } from '../kafka/types.js'
import { silentLogger, type Logger } from '../logger.js'
import type { ParkedKey, ParkedKeys } from '../ordering/state-store.js'
import { LIFELINE_HEADER_PREFIX, type FailureContext } from '../failure/headers.js'
import { RetryHeaders, retryTopicName, tierRecord } from '../failure/tier-record.js'
import { crashPoint } from '../util/crash-points.js'
import { endFailed, spanContextFrom, startSendSpan, tracingActive, withTraceHeaders } from '../trace/tracing.js'
import type { Span } from '@opentelemetry/api'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../store/executor.js'
import { sleep } from '../util/sleep.js'
import { jsonDiff, type DiffOp, type JsonValue as Json } from '../util/json-diff.js'
import { RateLimiter } from '../util/rate-limiter.js'
import { uuidV7 } from '../util/uuid-v7.js'
import { jobActor } from './actors.js'
import { appendAudit, type AuditEntry } from './audit.js'
import { KarafkaHeaders, ReplayHeaders, type DeadLetterFormat } from '../failure/formats.js'
import { isEncrypted, type Masker } from '../failure/masking.js'
import { filterClause, loadHeaders, parseFilter, setStatus, type DlqStatus } from './records.js'

// ---------------------------------------------------------------------------------------------------------
// Types

export interface RedriveDeps {
  db: SqlExecutor
  producer: KafkaProducer
  /**
   * Decrypts the encrypted fields (and an encrypted key) of masked records for the replay, each only where it
   * was encrypted (a value or key with encrypted fields and no masker is refused: LL_DECRYPT), and masks
   * edited values like the record they edit.
   */
  masker?: Masker
  /** Releases the parked key of a redriven (or discarded) record. */
  parkedKeys?: ParkedKeys
  /** Topic → JSON Schema (or typebox schema) an edited value must match. */
  schemas?: Record<string, object>
  logger?: Logger
  /** Replays of a record's lineage before it is refused (default 3). */
  maxRedrivesPerRecord?: number
  /**
   * The target topics' brokers: a resumed job looks there for the replay ids its interrupted run may have
   * sent before sending them again (without it, those are sent again with the same replay id).
   */
  kafka?: { brokers: string[]; config?: Record<string, string | number | boolean>; timeoutMs?: number }
  /** How often a running job heartbeats, ms (default 5000); a job is stale after 3 missed heartbeats. */
  heartbeatMs?: number
}

export type RedriveTarget = { kind: 'origin' } | { kind: 'retry-tier'; tier: number; service: string } | { kind: 'topic'; topic: string; partition?: number }

export interface ReplayResult {
  replayId: string
  topic: string
  partition: number
  offset: number
}

export type RedriveJobStatus = 'awaiting-approval' | 'ready' | 'running' | 'paused' | 'completed' | 'cancelled' | 'failed'

export interface RedriveJobOptions {
  /** How long the job waits after its canary before checking whether canary replays came back, ms. */
  canaryWaitMs: number
  /** Records per batch (one database round trip before and one after its sends). */
  batchSize: number
  /** Sends (sent + failed) before the failure rate may pause the job. */
  failureSample: number
  /** Whether the canary passed (or the operator resumed the job after it). */
  canaryPassed?: boolean
  /** The last item of the canary (seq). */
  canaryLastSeq?: number
  /** Failures counted before the last resume (a resumed job is judged on what follows). */
  baseline?: { sent: number; failed: number; again: number }
}

export interface RedriveJob {
  id: string
  status: RedriveJobStatus
  statusReason: string | null
  filter: Record<string, unknown>
  target: RedriveTarget
  ratePerSec: number | null
  canary: number | null
  maxFailureRate: number | null
  force: boolean
  /** Items frozen at creation. */
  total: number
  /** Items handled (sent, failed or skipped). */
  done: number
  succeeded: number
  failed: number
  skipped: number
  requestedBy: string
  approvedBy: string | null
  createdAt: Date
  updatedAt: Date
  heartbeatAt: Date | null
  options: RedriveJobOptions
}

export interface CreateJobOptions {
  filter: unknown
  target?: RedriveTarget
  /** Records per second (1 to 1,000,000); none = as fast as the producer goes. */
  ratePerSec?: number
  /** Items replayed first; the job then waits `canaryWaitMs` and pauses if any of them failed again. 0 = none (default). */
  canary?: number
  /** Pause when (failed sends + replays that came back) / sends exceeds this (0..1, default 0.5). */
  maxFailureRate?: number
  force?: boolean
  actor: string
  status?: 'ready' | 'awaiting-approval'
  /** The requester's owner (a person or service: the bulk threshold counts per owner). */
  owner?: string
  /**
   * Decides, in the creating transaction and from the frozen item list, whether the job starts `ready` or
   * `awaiting-approval` (default: `status`). It may write more in `tx` (the approval and its audit row).
   */
  decide?: (tx: SqlQueryable, frozen: FrozenJob) => Promise<'ready' | 'awaiting-approval'>
  /** Default 5000. */
  canaryWaitMs?: number
  /** Default: a quarter of a second's worth at the rate, at most 500. */
  batchSize?: number
  /** Default 20. */
  failureSample?: number
}

export const redriveDefaults = {
  maxRedrivesPerRecord: 3,
  heartbeatMs: 5000,
  canaryWaitMs: 5000,
  maxFailureRate: 0.5,
  failureSample: 20,
  maxBatch: 500,
  verifyTimeoutMs: 30_000,
} as const

// ---------------------------------------------------------------------------------------------------------
// Validation

const invalid = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_ARGUMENT_INVALID', message, { details })
const conflict = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_DLQ_CONFLICT', message, { details })

function positiveId(what: string, id: unknown): string {
  const n = typeof id === 'string' && /^\d{1,16}$/.test(id) ? Number(id) : id
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw invalid(`${what} id must be a positive integer`, { field: 'id' })
  return String(n)
}

function text(field: string, value: unknown, max: number, optional = false): string | undefined {
  if (value === undefined && optional) return undefined
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > max) throw invalid(`${field} must be a non-empty string of at most ${max} characters`, { field })
  return value
}

function intIn(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw invalid(`${field} must be an integer from ${min} to ${max}`, { field })
  return value
}

const TOPIC = /^[A-Za-z0-9._-]{1,249}$/

/** Validates a target (LL_ARGUMENT_INVALID naming the field); undefined → origin. */
export function parseTarget(input: unknown): RedriveTarget {
  if (input === undefined || input === null) return { kind: 'origin' }
  if (typeof input !== 'object' || Array.isArray(input)) throw invalid('target must be an object', { field: 'target' })
  const t = input as Record<string, unknown>
  if (t.kind === 'origin') return { kind: 'origin' }
  if (t.kind === 'retry-tier') {
    const tier = intIn('target.tier', t.tier, 1, 999)
    if (tier === undefined) throw invalid('target.tier is required for a retry-tier target', { field: 'target.tier' })
    const service = text('target.service', t.service, 200)!
    return { kind: 'retry-tier', tier, service }
  }
  if (t.kind === 'topic') {
    if (typeof t.topic !== 'string' || !TOPIC.test(t.topic)) throw invalid('target.topic must be a topic name (letters, digits, . _ -; at most 249)', { field: 'target.topic' })
    const partition = intIn('target.partition', t.partition, 0, 0x7fffffff)
    return partition === undefined ? { kind: 'topic', topic: t.topic } : { kind: 'topic', topic: t.topic, partition }
  }
  throw invalid('target.kind must be origin, retry-tier or topic', { field: 'target.kind' })
}

// ---------------------------------------------------------------------------------------------------------
// Records as the redrive reads them

interface Source {
  id: string
  topic: string
  key: Buffer | null
  value: Buffer | null
  headers: KafkaHeader[]
  format: DeadLetterFormat
  originTopic: string | null
  originPartition: number | null
  originOffset: number | null
  originTimestamp: number | null
  consumerGroup: string | null
  service: string | null
  errorClass: string | null
  errorCode: string | null
  errorMessage: string | null
  errorStack: string | null
  fingerprint: string | null
  attempts: number | null
  firstFailureAt: Date | null
  lastFailureAt: Date | null
  status: DlqStatus
  replayCount: number
  replayedBefore: number
  previousId: string | null
  masked: boolean
}

const SOURCE_COLUMNS = `r.id, r.topic, r.key, r.value, r.headers, r.format, r.origin_topic, r.origin_partition, r.origin_offset, r.origin_timestamp, r.consumer_group, r.service,
  r.error_class, r.error_code, r.error_message, r.error_stack, r.fingerprint, r.attempts, r.first_failure_at, r.last_failure_at, r.status, r.replay_count, r.replayed_before, r.previous_id, r.masked`

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v))

function toSource(row: SqlRow): Source {
  return {
    id: String(row.id), topic: row.topic as string, key: (row.key as Buffer | null) ?? null, value: (row.value as Buffer | null) ?? null, headers: loadHeaders(row.headers),
    format: row.format as DeadLetterFormat, originTopic: str(row.origin_topic), originPartition: num(row.origin_partition), originOffset: num(row.origin_offset),
    originTimestamp: num(row.origin_timestamp), consumerGroup: str(row.consumer_group), service: str(row.service), errorClass: str(row.error_class), errorCode: str(row.error_code),
    errorMessage: str(row.error_message), errorStack: str(row.error_stack), fingerprint: str(row.fingerprint), attempts: num(row.attempts),
    firstFailureAt: (row.first_failure_at as Date | null) ?? null, lastFailureAt: (row.last_failure_at as Date | null) ?? null, status: row.status as DlqStatus,
    replayCount: Number(row.replay_count), replayedBefore: Number(row.replayed_before), previousId: str(row.previous_id), masked: row.masked === true,
  }
}

async function loadSource(db: SqlQueryable, id: string): Promise<Source> {
  const { rows } = await db.query(`select ${SOURCE_COLUMNS} from lifeline_dlq_records r where r.id = $1`, [id])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `DLQ record ${id} does not exist`, { details: { id } })
  return toSource(rows[0]!)
}

/** Earlier lives of each record (previous_id links), for the records that have one. */
async function earlierLives(db: SqlQueryable, sources: readonly Source[]): Promise<Map<string, number>> {
  const linked = sources.filter((s) => s.previousId !== null).map((s) => s.id)
  const out = new Map<string, number>()
  if (linked.length === 0) return out
  const { rows } = await db.query(
    `with recursive lives(start, id, depth) as (
       select r.id, r.previous_id, 1 from lifeline_dlq_records r where r.id = any($1::int8[]) and r.previous_id is not null
       union all
       select l.start, r.previous_id, l.depth + 1 from lifeline_dlq_records r join lives l on r.id = l.id where r.previous_id is not null and l.depth < 1000
     )
     select start, max(depth) as depth from lives group by start`,
    [linked],
  )
  for (const row of rows) out.set(String(row.start), Number(row.depth))
  return out
}

/**
 * Replays of the record's lineage so far (its own plus those before it came back) and whether the earlier
 * lives alone reach the limit (a loop). Earlier replays: the larger of `lifeline.replay.count` on arrival and
 * the number of earlier lives linked.
 */
function lineage(source: Source, lives: number): { earlier: number; total: number } {
  const earlier = Math.max(source.replayedBefore, lives)
  return { earlier, total: earlier + source.replayCount }
}

function limitError(source: Source, lives: number, max: number): LifelineError | undefined {
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
function replayable(status: DlqStatus, force: boolean): boolean {
  return status === 'pending' || (force && (status === 'replayed' || status === 'replaying'))
}

// ---------------------------------------------------------------------------------------------------------
// The replayed record

/** Failure headers of other systems' DLQ formats (stripped from a replay, as Lifeline's own). */
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
function policyTopics(source: Pick<Source, 'originTopic' | 'topic'>): string[] {
  return [...new Set([source.originTopic, source.topic].filter((t): t is string => t !== null))]
}

const needsKeyring = (source: Source, what: string) =>
  new LifelineError('LL_DECRYPT', `DLQ record ${source.id} has an encrypted ${what}: the redrive needs the masking keyring (deps.masker) to decrypt it`, { details: { id: source.id, masked: true } })

/** The value to send: encrypted fields decrypted where they sit (LL_DECRYPT when one does not belong there). */
function clearValue(source: Source, value: Buffer | null, masker: Masker | undefined): Buffer | null {
  if (value === null) return null
  if (masker) return masker.unmaskValue(value, policyTopics(source))
  if (value.includes('enc:v1:') || value.includes('enc:v2:')) throw needsKeyring(source, 'value')
  return value
}

/** The source with its clear key (a key masked under `key: 'encrypt'` is decrypted). */
function withClearKey(source: Source, masker: Masker | undefined): Source {
  if (source.key === null || !isEncrypted(source.key.toString('utf8'))) return source
  if (!masker) throw needsKeyring(source, 'key')
  return { ...source, key: masker.unmaskKey(source.key, policyTopics(source)) }
}

interface Planned {
  record: ProduceRecord
  topic: string
  /** Release the origin key after a successful send (the replay went to the origin topic). */
  release: boolean
}

function requireOrigin(source: Source, target: RedriveTarget): { topic: string; partition: number | null } {
  if (source.originTopic === null) throw invalid(`DLQ record ${source.id} has no origin topic: give a topic target`, { id: source.id, target: target.kind })
  return { topic: source.originTopic, partition: source.originPartition }
}

function plan(source: Source, target: RedriveTarget, replay: { id: string; count: number; actor: string }, value: Buffer | null, headToken: string | undefined): Planned {
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
  if (origin.partition === null || source.originOffset === null) throw invalid(`DLQ record ${source.id} has no origin partition and offset: a retry tier needs them`, { id: source.id })
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

/**
 * With a tracing SDK: the replay's `send` span. An operator's redrive starts a new trace (or continues the
 * operator's request span), linked to the dead letter's context; the replayed record carries the new context.
 */
function redriveSpan(record: ProduceRecord, deadLetterHeaders: readonly KafkaHeader[]): Span | undefined {
  if (!tracingActive()) return undefined
  const dead = spanContextFrom(deadLetterHeaders)
  const span = startSendSpan({ topic: record.topic, partition: record.partition ?? -1, key: typeof record.key === 'string' ? Buffer.from(record.key) : (record.key ?? null) }, undefined, dead ? [{ context: dead }] : [], { 'lifeline.redrive': true })
  record.headers = withTraceHeaders(record.headers ?? [], span)
  return span
}

// ---------------------------------------------------------------------------------------------------------
// Parked keys

const keyId = (topic: string, key: Buffer) => `${topic}\u0000${key.toString('hex')}`

/** Parked keys (by group) of the sources' origin topics, as one list call per (group, topic). */
async function parkedOf(parkedKeys: ParkedKeys | undefined, sources: readonly Source[]): Promise<Map<string, ParkedKey>> {
  const out = new Map<string, ParkedKey>()
  if (!parkedKeys) return out
  const pairs = new Map<string, { group: string; topic: string }>()
  for (const s of sources) if (s.consumerGroup !== null && s.originTopic !== null && s.key !== null) pairs.set(`${s.consumerGroup}\u0000${s.originTopic}`, { group: s.consumerGroup, topic: s.originTopic })
  for (const { group, topic } of pairs.values()) {
    for (const k of await parkedKeys.list({ group, topic, status: 'parked', limit: 10_000 })) out.set(`${group}\u0000${keyId(topic, k.key)}`, k)
  }
  return out
}

const parkedHead = (parked: Map<string, ParkedKey>, s: Source): ParkedKey | undefined => {
  if (s.consumerGroup === null || s.originTopic === null || s.key === null) return undefined
  const k = parked.get(`${s.consumerGroup}\u0000${keyId(s.originTopic, s.key)}`)
  return k !== undefined && k.headOffset === s.originOffset ? k : undefined
}

async function releaseKey(deps: RedriveDeps, s: Pick<Source, 'consumerGroup' | 'originTopic' | 'originOffset' | 'key' | 'id'>, actor: string, reason: string): Promise<boolean> {
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

// ---------------------------------------------------------------------------------------------------------
// Single replays

async function insertEvent(db: SqlQueryable, id: string, from: DlqStatus, to: DlqStatus, actor: string, reason: string, detail: Record<string, unknown>): Promise<void> {
  await db.query(`insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail) values ($1, $2, $3, $4, $5, $6::jsonb)`, [id, from, to, actor, reason, JSON.stringify(detail)])
}

async function replayOne(deps: RedriveDeps, id: string, opts: { actor: string; target?: RedriveTarget; force?: boolean; edit?: { id: string; value: Buffer }; audit?: AuditEntry }): Promise<ReplayResult> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const target = parseTarget(opts.target)
  const force = opts.force === true
  const db = deps.db
  const source = withClearKey(await loadSource(db, rid), deps.masker)
  const max = deps.maxRedrivesPerRecord ?? redriveDefaults.maxRedrivesPerRecord
  const lives = (await earlierLives(db, [source])).get(rid) ?? 0
  if (!force) {
    const refused = limitError(source, lives, max)
    if (refused) throw refused
  }
  if (!replayable(source.status, force)) {
    throw conflict(`DLQ record ${rid} is ${source.status}: ${source.status === 'replayed' || source.status === 'replaying' ? 'force to replay it again' : 'it cannot be replayed'}`, { id: rid, status: source.status })
  }
  const value = clearValue(source, opts.edit?.value ?? source.value, deps.masker)
  const parked = await parkedOf(deps.parkedKeys, [source])
  const replayId = uuidV7()
  const count = lineage(source, lives).total + 1
  const planned = plan(source, target, { id: replayId, count, actor }, value, parkedHead(parked, source)?.headToken)
  const detail = { replayId, target: planned.topic, ...(opts.edit ? { editId: opts.edit.id } : {}) }
  // The replay row first: a replay failing at once may come back to the DLQ before the send resolves here.
  await db.query(`insert into lifeline_dlq_replays (replay_id, record_id, target_topic, target_partition, edited, actor, edit_id, replay_count) values ($1, $2, $3, $4, $5, $6, $7, $8)`, [
    replayId, rid, planned.topic, planned.record.partition ?? null, opts.edit !== undefined, actor, opts.edit?.id ?? null, count,
  ])
  const moved = source.status === 'pending'
  // The audit row commits with the change that starts the replay: none, nothing sent.
  const audit = opts.audit && { ...opts.audit, detail: { ...opts.audit.detail, ...detail, outcome: 'started' } }
  try {
    if (moved) await setStatus(db, rid, 'replaying', { actor, from: 'pending', reason: 'replay', detail, ...(audit ? { audit } : {}) })
    else {
      await db.transaction(async (tx) => {
        await insertEvent(tx, rid, source.status, source.status, actor, 'forced replay', detail)
        if (audit) await appendAudit(tx, audit)
      })
    }
  } catch (err) {
    await db.query('delete from lifeline_dlq_replays where replay_id = $1', [replayId])
    if (isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.conflict === true) throw conflict(err.message, { ...err.details })
    throw err
  }
  planned.record.timestamp = Date.now()
  const span = redriveSpan(planned.record, source.headers)
  let ack: ProduceAck
  try {
    ;[ack] = (await deps.producer.send([planned.record])) as [ProduceAck]
    span?.end()
  } catch (err) {
    if (span) endFailed(span, err)
    await db.query('delete from lifeline_dlq_replays where replay_id = $1', [replayId])
    const failed = opts.audit && { ...opts.audit, detail: { ...opts.audit.detail, ...detail, outcome: 'send-failed', code: isLifelineError(err) ? err.code : 'ERROR' } }
    // The reason is readable by every viewer: the code only; Kafka's text goes to the log (and the caller).
    ;(deps.logger ?? silentLogger()).warn({ err, recordId: rid, replayId }, 'a replay send failed')
    if (moved) await setStatus(db, rid, 'pending', { actor, reason: `send failed: ${publicErrorText(err)}`.slice(0, 2000), detail, ...(failed ? { audit: failed } : {}) })
    else if (failed) await appendAudit(db, failed)
    throw err
  }
  crashPoint('redrive.after-produce')
  await db.transaction(async (tx) => {
    await tx.query('update lifeline_dlq_replays set target_partition = $2, target_offset = $3 where replay_id = $1', [replayId, ack.partition, ack.offset])
    await tx.query('update lifeline_dlq_records set replay_count = replay_count + 1 where id = $1', [rid])
  })
  if (moved) {
    try {
      await setStatus(db, rid, 'replayed', { actor, from: 'replaying', reason: 'replayed', detail: { ...detail, partition: ack.partition, offset: ack.offset } })
    } catch (err) {
      // It came back to the DLQ already (the indexer made it failed-again): that is its status now.
      if (!(isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.conflict === true)) throw err
    }
  }
  crashPoint('redrive.after-status')
  if (planned.release) await releaseKey(deps, source, actor, 'redriven')
  return { replayId, topic: ack.topic, partition: ack.partition, offset: ack.offset }
}

/** Replays one record (see the module doc): LL_NOT_FOUND, LL_DLQ_CONFLICT (status), LL_REDRIVE_LIMIT, LL_ARGUMENT_INVALID. */
export function replayRecord(deps: RedriveDeps, id: string, opts: { actor: string; target?: RedriveTarget; force?: boolean; audit?: AuditEntry }): Promise<ReplayResult> {
  return replayOne(deps, id, opts)
}

// ---------------------------------------------------------------------------------------------------------
// Edit and replay

const compiled = new WeakMap<object, ReturnType<typeof Compile>>()

/**
 * Checks an edited value of record `id` and masks it like the record: JSON, the record `pending`, valid
 * against `deps.schemas[origin topic]` when there is one (LL_SCHEMA_INVALID listing the problems), its
 * encrypted values the record's own (an `enc:v2:` value must decrypt where it sits, an `enc:v1:` one must be
 * the record's at that path: LL_ARGUMENT_INVALID naming the paths), then masked under the record's policy
 * (with `deps.masker`): a clear value typed into a masked field is encrypted again, so no edit, approval or
 * diff holds it in clear. Returns the masked JSON text.
 */
export async function prepareEdit(deps: Pick<RedriveDeps, 'db' | 'masker' | 'schemas'>, id: string, input: unknown): Promise<{ text: string; stored: Buffer | null }> {
  const rid = positiveId('record', id)
  let serialized: string | undefined
  try {
    serialized = JSON.stringify(input)
  } catch (err) {
    throw invalid('value must be JSON', { field: 'value', cause: (err as Error)?.message })
  }
  if (serialized === undefined) throw invalid('value must be JSON', { field: 'value' })
  const value = JSON.parse(serialized) as Json
  const source = await loadSource(deps.db, rid)
  if (source.status !== 'pending') throw conflict(`DLQ record ${rid} is ${source.status}: only a pending record can be edited`, { id: rid, status: source.status })
  const schema = deps.schemas?.[source.originTopic ?? source.topic]
  if (schema) {
    let check = compiled.get(schema)
    if (!check) compiled.set(schema, (check = Compile(schema as never)))
    if (!check.Check(value)) {
      const problems = [...check.Errors(value)].slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`)
      throw new LifelineError('LL_SCHEMA_INVALID', `the edited value does not match the schema of ${source.originTopic ?? source.topic}: ${problems.join('; ')}`, { details: { problems } })
    }
  }
  const masker = deps.masker
  if (!masker) return { text: serialized, stored: source.value }
  const topics = policyTopics(source)
  const foreign = masker.foreignTokens(Buffer.from(serialized, 'utf8'), source.value, topics)
  if (foreign.length > 0) {
    throw invalid(`the edited value carries encrypted values that are not this record's own at ${foreign.slice(0, 5).join(', ')}: keep the record's own, or type the clear value (it is encrypted again)`, { field: 'value', paths: foreign.slice(0, 20) })
  }
  const policyTopic = topics.find((t) => masker.covers(t))
  if (policyTopic === undefined) return { text: serialized, stored: source.value }
  const masked = masker.mask(policyTopic, { value: Buffer.from(serialized, 'utf8'), errorMessage: '', headers: [] })
  return { text: masked.value === null ? serialized : masked.value.toString('utf8'), stored: source.value }
}

/**
 * Stores an edited value of a `pending` record (the original stays in the record), checked and masked by
 * {@link prepareEdit}, with its diff from the stored value. The diff is taken against the value as stored
 * (masked): fields left as encrypted tokens are decrypted at replay, and fields typed in clear under a
 * masking rule are stored encrypted again.
 */
export async function editRecord(deps: RedriveDeps, id: string, opts: { value: unknown; actor: string; reason?: string; audit?: AuditEntry }): Promise<{ editId: string; diff: DiffOp[] }> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const reason = text('reason', opts.reason, 2000, true)
  const { text: serialized, stored } = await prepareEdit(deps, rid, opts.value)
  const value = JSON.parse(serialized) as Json
  let before: Json | undefined
  try {
    before = stored === null ? null : (JSON.parse(stored.toString('utf8')) as Json)
  } catch {
    before = undefined // not JSON: the whole value is replaced
  }
  const diff = before === undefined ? [{ op: 'replace' as const, path: '', value }] : jsonDiff(before, value)
  const editId = await deps.db.transaction(async (tx) => {
    const { rows } = await tx.query('insert into lifeline_dlq_edits (record_id, value, diff, actor, reason) values ($1, $2, $3::jsonb, $4, $5) returning id', [
      rid, Buffer.from(serialized, 'utf8'), JSON.stringify(diff), actor, reason ?? null,
    ])
    const id = String(rows[0]!.id)
    if (opts.audit) await appendAudit(tx, { ...opts.audit, detail: { ...opts.audit.detail, editId: id, outcome: 'ok' } })
    return id
  })
  return { editId, diff }
}

/** Replays the record's edit `editId` (default: its latest edit) instead of its stored value. */
export async function replayEdited(deps: RedriveDeps, id: string, opts: { actor: string; editId?: string; target?: RedriveTarget; force?: boolean; audit?: AuditEntry }): Promise<ReplayResult> {
  const rid = positiveId('record', id)
  const { rows } =
    opts.editId === undefined
      ? await deps.db.query('select id, value from lifeline_dlq_edits where record_id = $1 order by id desc limit 1', [rid])
      : await deps.db.query('select id, value from lifeline_dlq_edits where record_id = $1 and id = $2', [rid, positiveId('edit', opts.editId)])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', opts.editId === undefined ? `DLQ record ${rid} has no edit` : `edit ${opts.editId} of DLQ record ${rid} does not exist`, { details: { id: rid, editId: opts.editId } })
  return replayOne(deps, rid, { ...opts, edit: { id: String(rows[0]!.id), value: rows[0]!.value as Buffer } })
}

// ---------------------------------------------------------------------------------------------------------
// Discard and resolve

async function close(deps: RedriveDeps, id: string, to: 'discarded' | 'resolved', opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const reason = text('reason', opts.reason, 2000)!
  // The clear key first: closing releases the record's parked key, which the masked key would not name.
  const source = withClearKey(await loadSource(deps.db, rid), deps.masker)
  try {
    await setStatus(deps.db, rid, to, { actor, reason, ...(opts.audit ? { audit: { ...opts.audit, detail: { ...opts.audit.detail, outcome: 'ok' } } } : {}) })
  } catch (err) {
    if (isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.conflict === true) throw conflict(err.message, { ...err.details })
    throw err
  }
  // Never a replay in flight (a failed-again record's next life is the one parked, if any).
  if (source.status === 'pending' || source.status === 'failed-again') await releaseKey(deps, source, actor, to === 'discarded' ? 'discarded' : 'resolved')
}

/** Closes a record for good with a reason (never a delete) and releases its parked key. */
export function discardRecord(deps: RedriveDeps, id: string, opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  return close(deps, id, 'discarded', opts)
}

/** Marks a record handled by other means (with a reason) and releases its parked key. */
export function resolveRecord(deps: RedriveDeps, id: string, opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  return close(deps, id, 'resolved', opts)
}

// ---------------------------------------------------------------------------------------------------------
// Jobs

const JOB_COLUMNS = 'id, status, status_reason, filter, target, rate_per_sec, canary, max_failure_rate, force, total, done, succeeded, failed, skipped, requested_by, approved_by, created_at, updated_at, heartbeat_at, options'

function toJob(row: SqlRow): RedriveJob {
  return {
    id: String(row.id), status: row.status as RedriveJobStatus, statusReason: str(row.status_reason), filter: row.filter as Record<string, unknown>, target: row.target as RedriveTarget,
    ratePerSec: num(row.rate_per_sec), canary: num(row.canary), maxFailureRate: num(row.max_failure_rate), force: row.force === true, total: Number(row.total), done: Number(row.done),
    succeeded: Number(row.succeeded), failed: Number(row.failed), skipped: Number(row.skipped), requestedBy: row.requested_by as string, approvedBy: str(row.approved_by),
    createdAt: row.created_at as Date, updatedAt: row.updated_at as Date, heartbeatAt: (row.heartbeat_at as Date | null) ?? null, options: row.options as RedriveJobOptions,
  }
}

export async function getJob(db: SqlQueryable, id: string): Promise<RedriveJob> {
  const jid = positiveId('job', id)
  const { rows } = await db.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where id = $1 and kind = 'redrive'`, [jid])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `redrive job ${jid} does not exist`, { details: { id: jid } })
  return toJob(rows[0]!)
}

const JOB_STATUSES: readonly RedriveJobStatus[] = ['awaiting-approval', 'ready', 'running', 'paused', 'completed', 'cancelled', 'failed']

/** Jobs, newest first: `status` (one or several), `limit` 1..1000 (default 100). */
export async function listJobs(db: SqlQueryable, opts: { status?: RedriveJobStatus | RedriveJobStatus[]; limit?: number } = {}): Promise<RedriveJob[]> {
  const statuses = opts.status === undefined ? undefined : Array.isArray(opts.status) ? opts.status : [opts.status]
  if (statuses?.some((s) => !JOB_STATUSES.includes(s))) throw invalid(`status must be one of ${JOB_STATUSES.join(', ')}`, { field: 'status' })
  const limit = intIn('limit', opts.limit, 1, 1000) ?? 100
  const { rows } = await db.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where kind = 'redrive' and ($1::text[] is null or status = any($1::text[])) order by id desc limit $2`, [statuses ?? null, limit])
  return rows.map(toJob)
}

/** The filter without its paging fields, validated (LL_ARGUMENT_INVALID naming the field). */
function jobFilter(filter: unknown): { frozen: Record<string, unknown>; parsed: ReturnType<typeof parseFilter> } {
  const { afterId: _a, limit: _l, order: _o, ...frozen } = (filter ?? {}) as Record<string, unknown>
  return { frozen, parsed: parseFilter(frozen) }
}

/** A record a redrive sends unless it is forced: `pending`; with force also `replayed` and `replaying`. */
const REPLAYABLE_SQL = `(r.status = 'pending' or ($1::boolean and r.status in ('replayed', 'replaying')))`

/**
 * The dry run of a bulk redrive, counted in SQL (no record id is loaded): records matching `filter`,
 * distinct keys, by origin topic; `replayable` of them would be sent (pending, or with `force` also
 * replayed and replaying).
 */
export async function previewRedrive(
  deps: Pick<RedriveDeps, 'db'>,
  filter: unknown,
  opts: { force?: boolean } = {},
): Promise<{ count: number; keys: number; byTopic: Record<string, number>; replayable: number; originTopics: Array<string | null>; services: Array<string | null> }> {
  const { parsed } = jobFilter(filter)
  const params: unknown[] = [opts.force === true]
  const { rows } = await deps.db.query(
    `select coalesce(r.origin_topic, r.topic) as t, count(*)::int8 as n, count(distinct r.key)::int8 as keys, count(*) filter (where ${REPLAYABLE_SQL})::int8 as replayable,
       array_agg(distinct r.origin_topic) filter (where ${REPLAYABLE_SQL}) as topics, array_agg(distinct r.service) filter (where ${REPLAYABLE_SQL}) as services
     from lifeline_dlq_records r where ${filterClause(parsed, params)} group by 1 order by 1`,
    params,
  )
  const byTopic: Record<string, number> = {}
  let count = 0
  let keys = 0
  let replayableCount = 0
  const originTopics = new Set<string | null>()
  const services = new Set<string | null>()
  for (const r of rows) {
    byTopic[r.t as string] = Number(r.n)
    count += Number(r.n)
    keys += Number(r.keys)
    replayableCount += Number(r.replayable)
    for (const t of (r.topics as Array<string | null> | null) ?? []) originTopics.add(t)
    for (const v of (r.services as Array<string | null> | null) ?? []) services.add(v)
  }
  return { count, keys, byTopic, replayable: replayableCount, originTopics: [...originTopics], services: [...services] }
}

/** A job's frozen item list as its creation saw it, for deciding (in the creating transaction) whether it needs an approval. */
export interface FrozenJob {
  id: string
  /** Items frozen (records matching). */
  total: number
  /** Items that will be sent (not skipped). */
  replayable: number
  /** Distinct origin topics of the items to send (null: a record without an origin). */
  originTopics: Array<string | null>
  /** Distinct services of the items to send. */
  services: Array<string | null>
}

/**
 * Creates a bulk redrive job over the records matching `filter` now (the list is frozen, in SQL: no record id
 * is loaded): items in origin topic, key, origin offset order; records that are not replayable (not
 * `pending`, or `replayed`/`replaying` without force) or are waiting in another open job are skipped and
 * counted as such. `decide`, when given, runs in the creating transaction with the frozen counts and says
 * whether the job starts `ready` or `awaiting-approval` (it may write the approval there too).
 */
export async function createRedriveJob(deps: Pick<RedriveDeps, 'db'>, opts: CreateJobOptions): Promise<RedriveJob> {
  const actor = text('actor', opts.actor, 200)!
  const target = parseTarget(opts.target)
  const ratePerSec = intIn('ratePerSec', opts.ratePerSec, 1, 1_000_000)
  const canary = intIn('canary', opts.canary, 0, 1_000_000) ?? 0
  const maxFailureRate = opts.maxFailureRate ?? redriveDefaults.maxFailureRate
  if (typeof maxFailureRate !== 'number' || !(maxFailureRate >= 0 && maxFailureRate <= 1)) throw invalid('maxFailureRate must be a number from 0 to 1', { field: 'maxFailureRate' })
  const status = opts.status ?? 'ready'
  if (status !== 'ready' && status !== 'awaiting-approval') throw invalid('status must be ready or awaiting-approval', { field: 'status' })
  const options: RedriveJobOptions = {
    canaryWaitMs: intIn('canaryWaitMs', opts.canaryWaitMs, 0, 3_600_000) ?? redriveDefaults.canaryWaitMs,
    batchSize: intIn('batchSize', opts.batchSize, 1, 5000) ?? Math.max(1, Math.min(redriveDefaults.maxBatch, Math.floor((ratePerSec ?? 4 * redriveDefaults.maxBatch) / 4))),
    failureSample: intIn('failureSample', opts.failureSample, 1, 1_000_000) ?? redriveDefaults.failureSample,
  }
  if (canary === 0) options.canaryPassed = true
  const force = opts.force === true
  const { frozen: frozenFilter, parsed } = jobFilter(opts.filter)
  return deps.db.transaction(async (tx) => {
    const { rows } = await tx.query(
      `insert into lifeline_dlq_jobs (kind, filter, target, rate_per_sec, canary, max_failure_rate, force, status, total, requested_by, requested_owner, options)
       values ('redrive', $1::jsonb, $2::jsonb, $3, $4, $5, $6, $7, 0, $8, $9, $10::jsonb) returning id`,
      [JSON.stringify(frozenFilter), JSON.stringify(target), ratePerSec ?? null, canary, maxFailureRate, force, status, actor, opts.owner ?? null, JSON.stringify(options)],
    )
    const jobId = String(rows[0]!.id)
    const params: unknown[] = [force, jobId]
    // One statement freezes the list and counts it: the items (one INSERT ... SELECT, ordered in one sort:
    // work_mem keeps a 100k-record sort in memory) and the counts read from the same selection. Records
    // waiting in another open job are found with one hash join on the open jobs' items (usually few),
    // not one lookup per record.
    await tx.query(`set local work_mem = '64MB'`)
    const { rows: counts } = await tx.query(
      `with busy as (
         select distinct on (i.record_id) i.record_id, i.job_id from lifeline_dlq_job_items i join lifeline_dlq_jobs j on j.id = i.job_id
         where j.status in ('awaiting-approval', 'ready', 'running', 'paused') and i.job_id <> $2 and i.status in ('pending', 'sending')
         order by i.record_id, i.job_id
       ),
       picked as (
         select r.id, r.origin_topic, r.service,
           row_number() over (order by coalesce(r.origin_topic, r.topic), r.key nulls first, r.origin_offset nulls last, r.id) as seq,
           case when busy.job_id is not null then 'in job ' || busy.job_id when ${REPLAYABLE_SQL} then null else r.status end as detail
         from lifeline_dlq_records r left join busy on busy.record_id = r.id
         where ${filterClause(parsed, params)}
       ),
       items as (
         insert into lifeline_dlq_job_items (job_id, seq, record_id, status, detail)
         select $2, seq, id, case when detail is null then 'pending' else 'skipped' end, detail from picked
       )
       select (select count(*) from picked)::int8 as total, (select count(*) from picked where detail is not null)::int8 as skipped,
         coalesce((select array_agg(t) from (select distinct origin_topic as t from picked where detail is null) x), '{}') as topics,
         coalesce((select array_agg(v) from (select distinct service as v from picked where detail is null) x), '{}') as services`,
      params,
    )
    const c = counts[0]!
    const total = Number(c.total)
    const skipped = Number(c.skipped)
    await tx.query('update lifeline_dlq_jobs set total = $2, skipped = $3, done = $3 where id = $1', [jobId, total, skipped])
    if (opts.decide) {
      const decided = await opts.decide(tx, { id: jobId, total, replayable: total - skipped, originTopics: c.topics as Array<string | null>, services: c.services as Array<string | null> })
      if (decided !== status) await tx.query('update lifeline_dlq_jobs set status = $2 where id = $1', [jobId, decided])
    }
    const { rows: job } = await tx.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where id = $1`, [jobId])
    return toJob(job[0]!)
  })
}

async function setJobStatus(db: SqlQueryable, id: string, actor: string, to: RedriveJobStatus, from: readonly RedriveJobStatus[], reason: string): Promise<RedriveJob> {
  const jid = positiveId('job', id)
  text('actor', actor, 200)
  const { rows } = await db.query(
    `update lifeline_dlq_jobs set status = $2, status_reason = $3, updated_at = now(), pauses = pauses + (case when $2 = 'paused' then 1 else 0 end)
      where id = $1 and kind = 'redrive' and status = any($4::text[]) returning ${JOB_COLUMNS}`, [
    jid, to, reason, [...from],
  ])
  if (rows.length > 0) return toJob(rows[0]!)
  const job = await getJob(db, jid)
  if (job.status === to) return job
  throw conflict(`redrive job ${jid} is ${job.status}: it cannot become ${to}`, { id: jid, status: job.status, to })
}

/** Pauses a job; its runner stops after the batch in hand (within a heartbeat). Resume with runRedriveJob. */
export function pauseJob(db: SqlQueryable, id: string, actor: string): Promise<RedriveJob> {
  return setJobStatus(db, id, actor, 'paused', ['ready', 'running'], `paused by ${actor}`)
}

/** Cancels a job: its remaining items are never sent (their records stay pending). */
export function cancelJob(db: SqlQueryable, id: string, actor: string): Promise<RedriveJob> {
  return setJobStatus(db, id, actor, 'cancelled', ['awaiting-approval', 'ready', 'running', 'paused'], `cancelled by ${actor}`)
}

type Marks = Record<string, Record<string, number>>

interface ItemRow {
  seq: number
  replayId: string | null
  source: Source
}

interface Acked {
  seq: number
  replayId: string
  ack: ProduceAck
  source: Pick<Source, 'id' | 'consumerGroup' | 'originTopic' | 'originOffset' | 'key'>
  release: boolean
}

interface SendFailure {
  seq: number
  replayId: string
  recordId: string
  error: string
}

/** A running job's context. */
interface Run {
  deps: RedriveDeps
  job: RedriveJob
  runner: string
  actor: string
  log: Logger
  stop: AbortController
}

/** A running job's lease: after 3 missed heartbeats, another runner may take it over. */
export function jobLeaseMs(deps: Pick<RedriveDeps, 'heartbeatMs'>): number {
  return 3 * (deps.heartbeatMs ?? redriveDefaults.heartbeatMs)
}

/** Takes the job for this runner: ready, paused, or running with a stale heartbeat. */
/**
 * The advisory lock of a job's lease (hashed with `hashtextextended`): a claim takes it exclusively, each
 * batch transaction of the runner shares it (see {@link holdLease}).
 */
export function leaseLockKey(jobId: string): string {
  return `lifeline_dlq_job:${jobId}`
}

async function claim(deps: RedriveDeps, jobId: string, runner: string): Promise<RedriveJob> {
  // Exclusive: waits for the previous runner's open batch transactions, whose writes its recovery then sees.
  const rows = await deps.db.transaction(async (tx) => {
    await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [leaseLockKey(jobId)])
    const { rows } = await tx.query(
      `update lifeline_dlq_jobs set status = 'running', runner = $2, heartbeat_at = now(), updated_at = now(),
         status_reason = case when status = 'running' then 'resumed after an interruption' else null end,
         options = case when status = 'paused' and status_reason like 'canary%' then options || '{"canaryPassed": true}'::jsonb else options end
       where id = $1 and kind = 'redrive' and (status in ('ready', 'paused') or (status = 'running' and (heartbeat_at is null or heartbeat_at < now() - ($3::int8 * interval '1 millisecond'))))
       returning ${JOB_COLUMNS}`,
      [jobId, runner, jobLeaseMs(deps)],
    )
    return rows
  })
  if (rows.length > 0) return toJob(rows[0]!)
  const job = await getJob(deps.db, jobId)
  if (job.status === 'completed') return job
  throw conflict(
    job.status === 'running' ? `redrive job ${jobId} is running elsewhere (heartbeat ${job.heartbeatAt?.toISOString() ?? 'none'})` : `redrive job ${jobId} is ${job.status}: it cannot run`,
    { id: jobId, status: job.status },
  )
}

async function loadItems(db: SqlQueryable, jobId: string, where: string, params: unknown[], limit?: number): Promise<ItemRow[]> {
  const { rows } = await db.query(
    `select i.seq, i.replay_id, ${SOURCE_COLUMNS} from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id
     where i.job_id = $1 and ${where} order by i.seq${limit === undefined ? '' : ` limit ${Math.floor(limit)}`}`,
    [jobId, ...params],
  )
  return rows.map((row) => ({ seq: Number(row.seq), replayId: str(row.replay_id), source: toSource(row) }))
}

/**
 * Fencing: shares the job's lease lock for the transaction (the runner's own transactions never wait for
 * each other, nor does the job row's update; a claim by another runner waits for them) and checks that the
 * job still names this runner. LL_DLQ_CONFLICT with `details.takenOver` otherwise: the transaction rolls
 * back, nothing of it is written, and the new runner's recovery settles the sends it was about to record.
 */
async function holdLease(tx: SqlQueryable, run: Run): Promise<void> {
  await tx.query('select pg_advisory_xact_lock_shared(hashtextextended($1, 0))', [leaseLockKey(run.job.id)])
  const { rows } = await tx.query('select 1 from lifeline_dlq_jobs where id = $1 and runner = $2', [run.job.id, run.runner])
  if (rows.length === 0) throw conflict(`redrive job ${run.job.id} was taken over by another runner`, { id: run.job.id, takenOver: true })
}

/** Records the outcome of sends (acknowledged, failed, or never made) in one transaction. */
async function finish(
  run: Run,
  acked: readonly Acked[],
  failed: readonly SendFailure[],
  unsent: readonly { seq: number; replayId: string; recordId: string }[],
  prepSkipped: readonly { seq: number; recordId: string; detail: string }[],
  held: readonly Held[] = [],
): Promise<RedriveJobStatus | undefined> {
  const skipped = [...prepSkipped, ...held]
  const { db } = run.deps
  const jobId = run.job.id
  const actor = run.actor
  return db.transaction(async (tx) => {
    await holdLease(tx, run)
    if (acked.length > 0) {
      const rids = acked.map((a) => a.replayId)
      await tx.query(
        `update lifeline_dlq_replays p set target_topic = x.t, target_partition = x.p, target_offset = x.o from unnest($1::text[], $2::text[], $3::int[], $4::int8[]) as x(id, t, p, o) where p.replay_id = x.id`,
        [rids, acked.map((a) => a.ack.topic), acked.map((a) => a.ack.partition), acked.map((a) => String(a.ack.offset))],
      )
      await tx.query(`update lifeline_dlq_job_items set status = 'sent', detail = null where job_id = $1 and seq = any($2::int[])`, [jobId, acked.map((a) => a.seq)])
      // One row version per record: the replay count, and `replayed` unless it came back already (failed-again).
      await tx.query(
        `with x as (select * from unnest($1::int8[], $2::text[], $3::int[], $4::int8[]) as x(id, replay_id, p, o)),
         up as (
           update lifeline_dlq_records r set replay_count = r.replay_count + 1,
             status = case when r.status = 'replaying' then 'replayed' else r.status end,
             status_reason = case when r.status = 'replaying' then 'replayed' else r.status_reason end,
             status_actor = case when r.status = 'replaying' then $5 else r.status_actor end,
             status_at = case when r.status = 'replaying' then now() else r.status_at end
           from x where r.id = x.id
           returning r.id, x.replay_id, x.p, x.o, (select status from lifeline_dlq_records o where o.id = r.id) as before
         )
         insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select id, 'replaying', 'replayed', $5, 'replayed', jsonb_build_object('jobId', $6::text, 'replayId', replay_id, 'partition', p, 'offset', o) from up where before = 'replaying'`,
        [acked.map((a) => a.source.id), rids, acked.map((a) => a.ack.partition), acked.map((a) => String(a.ack.offset)), actor, jobId],
      )
    }
    const back = [
      ...failed.map((f) => ({ ...f, reason: `send failed: ${f.error}`.slice(0, 2000) })),
      ...unsent.map((u) => ({ ...u, reason: 'the job stopped before sending it' })),
      ...held.map((h) => ({ ...h, reason: 'an earlier record of its key failed in this run' })),
    ]
    if (back.length > 0) {
      await tx.query('delete from lifeline_dlq_replays where replay_id = any($1::text[]) and target_offset is null', [back.map((b) => b.replayId)])
      await tx.query(
        `with x as (select * from unnest($1::int8[], $2::text[], $3::text[]) as x(id, replay_id, reason)),
         up as (update lifeline_dlq_records r set status = 'pending', status_reason = x.reason, status_actor = $4, status_at = now() from x where r.id = x.id and r.status = 'replaying' returning r.id, x.replay_id, x.reason)
         insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select id, 'replaying', 'pending', $4, reason, jsonb_build_object('jobId', $5::text, 'replayId', replay_id) from up`,
        [back.map((b) => b.recordId), back.map((b) => b.replayId), back.map((b) => b.reason), actor, jobId],
      )
    }
    if (failed.length > 0) {
      await tx.query(`update lifeline_dlq_job_items i set status = 'failed', detail = x.d from unnest($2::int[], $3::text[]) as x(seq, d) where i.job_id = $1 and i.seq = x.seq`, [
        jobId, failed.map((f) => f.seq), failed.map((f) => `send failed: ${f.error}`.slice(0, 2000)),
      ])
    }
    // Never sent: pending again, keeping its replay id (reused when it is sent).
    if (unsent.length > 0) await tx.query(`update lifeline_dlq_job_items set status = 'pending' where job_id = $1 and seq = any($2::int[])`, [jobId, unsent.map((u) => u.seq)])
    if (skipped.length > 0) {
      await tx.query(`update lifeline_dlq_job_items i set status = 'skipped', detail = x.d from unnest($2::int[], $3::text[]) as x(seq, d) where i.job_id = $1 and i.seq = x.seq`, [
        jobId, skipped.map((s) => s.seq), skipped.map((s) => s.detail.slice(0, 2000)),
      ])
    }
    const marks: Marks = {}
    for (const a of acked) {
      const t = (marks[a.ack.topic] ??= {})
      t[String(a.ack.partition)] = Math.max(t[String(a.ack.partition)] ?? 0, a.ack.offset + 1)
    }
    const { rows } = await tx.query(
      `update lifeline_dlq_jobs set done = done + $2, succeeded = succeeded + $3, failed = failed + $4, skipped = skipped + $5, updated_at = now(),
         marks = (select coalesce(jsonb_object_agg(t, parts), '{}'::jsonb) from (
           select t, jsonb_object_agg(p, o) as parts from (
             select t, p, max(o) as o from (
               select m.key as t, pp.key as p, (pp.value #>> '{}')::int8 as o from jsonb_each(marks) m, jsonb_each(m.value) pp
               union all
               select m.key, pp.key, (pp.value #>> '{}')::int8 from jsonb_each($6::jsonb) m, jsonb_each(m.value) pp
             ) all_marks group by t, p
           ) per_partition group by t
         ) merged)
       where id = $1 returning status, runner`,
      [jobId, acked.length + failed.length + skipped.length, acked.length, failed.length, skipped.length, JSON.stringify(marks)],
    )
    const row = rows[0]
    return row === undefined || row.runner !== run.runner ? undefined : (row.status as RedriveJobStatus)
  })
}

/** Releases the parked keys of records replayed to their origin topic. */
async function releaseAll(run: Run, acked: readonly Acked[]): Promise<void> {
  if (!run.deps.parkedKeys) return
  const candidates = acked.filter((a) => a.release && a.source.consumerGroup !== null && a.source.originTopic !== null && a.source.key !== null)
  if (candidates.length === 0) return
  const parked = await parkedOf(run.deps.parkedKeys, candidates.map((c) => c.source as Source))
  for (const a of candidates) {
    const head = parkedHead(parked, a.source as Source)
    if (head === undefined) continue
    try {
      await releaseKey(run.deps, a.source, run.actor, 'redriven')
    } catch (err) {
      run.log.warn({ err, recordId: a.source.id }, 'the parked key of a redriven record was not released; release it with `lifeline keys release`')
    }
  }
}

/** Finds replay ids in the target partitions from `marks` to their end (records a crashed run may have sent). */
async function findInTarget(deps: RedriveDeps, marks: Marks, topics: readonly string[], wanted: ReadonlySet<string>, log: Logger): Promise<Map<string, ProduceAck>> {
  const found = new Map<string, ProduceAck>()
  const kafka = deps.kafka
  if (!kafka || wanted.size === 0 || topics.length === 0) return found
  const admin = createAdmin({ brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config })
  const ends = new Map<string, number>()
  const starts = new Map<string, number>()
  try {
    for (const topic of topics) {
      for (const p of await admin.topicOffsets(topic)) {
        const start = Math.max(p.low, marks[topic]?.[String(p.partition)] ?? p.low)
        if (start < p.high) {
          ends.set(`${topic}:${p.partition}`, p.high)
          starts.set(`${topic}:${p.partition}`, start)
        }
      }
    }
  } finally {
    await admin.close()
  }
  if (ends.size === 0) return found
  const consumer = createConsumer({
    brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config, groupId: `lifeline-dlq-verify-${randomUUID()}`, fromBeginning: true, isolationLevel: 'read_uncommitted',
    rebalance: { onAssign: (parts) => parts.map((p) => ({ ...p, offset: starts.get(`${p.topic}:${p.partition}`) ?? ends.get(`${p.topic}:${p.partition}`) ?? 0 })) },
  })
  try {
    consumer.subscribe([...new Set([...ends.keys()].map((k) => k.slice(0, k.lastIndexOf(':'))))])
    await consumer.connect()
    const deadline = Date.now() + (kafka.timeoutMs ?? redriveDefaults.verifyTimeoutMs)
    while (ends.size > 0 && found.size < wanted.size && Date.now() < deadline) {
      for (const r of await consumer.poll(1000, 200)) {
        const id = r.headers.findLast((h) => h.key === ReplayHeaders.id)?.value?.toString('utf8')
        if (id !== undefined && wanted.has(id)) found.set(id, { topic: r.topic, partition: r.partition, offset: r.offset })
        const k = `${r.topic}:${r.partition}`
        if (r.offset + 1 >= (ends.get(k) ?? Infinity)) ends.delete(k)
      }
    }
    if (ends.size > 0 && found.size < wanted.size) log.warn({ partitions: [...ends.keys()] }, 'looking for interrupted sends timed out: the rest are sent again (same replay ids)')
  } finally {
    await consumer.close()
  }
  return found
}

/** Settles the items a crashed run left `sending`: acknowledged or found in the target → sent; else pending again. */
async function recover(run: Run): Promise<void> {
  const items = await loadItems(run.deps.db, run.job.id, `i.status = 'sending'`, [])
  if (items.length === 0) return
  const ids = items.map((i) => i.replayId!)
  const { rows } = await run.deps.db.query('select replay_id, target_topic, target_partition, target_offset from lifeline_dlq_replays where replay_id = any($1::text[])', [ids])
  const known = new Map<string, { topic: string; partition: number | null; offset: number | null }>()
  for (const r of rows) known.set(r.replay_id as string, { topic: r.target_topic as string, partition: num(r.target_partition), offset: num(r.target_offset) })
  const acks = new Map<string, ProduceAck>()
  for (const [id, k] of known) if (k.offset !== null && k.partition !== null) acks.set(id, { topic: k.topic, partition: k.partition, offset: k.offset })
  const look = new Set(ids.filter((id) => !acks.has(id)))
  const topics = [...new Set([...known.values()].map((k) => k.topic))]
  const { rows: job } = await run.deps.db.query('select marks from lifeline_dlq_jobs where id = $1', [run.job.id])
  for (const [id, ack] of await findInTarget(run.deps, (job[0]?.marks as Marks) ?? {}, topics, look, run.log)) acks.set(id, ack)
  const acked: Acked[] = []
  const unsent: Array<{ seq: number; replayId: string; recordId: string }> = []
  for (const item of items) {
    const ack = acks.get(item.replayId!)
    if (ack) {
      let source = item.source
      let releasable = true
      try {
        source = withClearKey(item.source, run.deps.masker)
      } catch (err) {
        releasable = false // a masked key that does not decrypt names no parked key: nothing to release
        run.log.warn({ err, recordId: item.source.id }, 'the key of a recovered replay does not decrypt: its parked key (if any) is not released')
      }
      // A send back to the origin topic released nothing (a parked head carries its token and its consumer
      // releases the key; any other key is not parked behind it); a send elsewhere gave the head up.
      acked.push({ seq: item.seq, replayId: item.replayId!, ack, source, release: releasable && run.job.target.kind !== 'retry-tier' && ack.topic !== item.source.originTopic })
    }
    else unsent.push({ seq: item.seq, replayId: item.replayId!, recordId: item.source.id })
  }
  run.log.info({ jobId: run.job.id, sent: acked.length, resend: unsent.length }, 'recovered the sends of an interrupted run')
  await finish(run, acked, [], unsent, [])
  await releaseAll(run, acked)
}

/** Sets the marks (end offsets) of the job's target topics that have none yet, before anything is sent. */
async function markTargets(run: Run): Promise<void> {
  const kafka = run.deps.kafka
  if (!kafka) return
  const t = run.job.target
  let topics: string[]
  if (t.kind === 'topic') topics = [t.topic]
  else {
    const { rows } = await run.deps.db.query(
      `select distinct r.origin_topic as t from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id where i.job_id = $1 and i.status = 'pending' and r.origin_topic is not null`,
      [run.job.id],
    )
    topics = rows.map((r) => (t.kind === 'origin' ? (r.t as string) : retryTopicName(t.service, r.t as string, t.tier)))
  }
  const { rows } = await run.deps.db.query('select marks from lifeline_dlq_jobs where id = $1', [run.job.id])
  const marks = (rows[0]?.marks as Marks) ?? {}
  const admin = createAdmin({ brokers: kafka.brokers, clientId: 'lifeline-dlq-redrive', config: kafka.config })
  try {
    for (const topic of topics) {
      const parts = (marks[topic] ??= {})
      let offsets: Array<{ partition: number; high: number }>
      try {
        offsets = await admin.topicOffsets(topic)
      } catch (err) {
        run.log.warn({ err, topic }, 'could not read the end offsets of a target topic: a crash would resend its in-flight records')
        continue
      }
      for (const p of offsets) parts[String(p.partition)] ??= p.high
    }
  } finally {
    await admin.close()
  }
  await run.deps.db.query('update lifeline_dlq_jobs set marks = $2::jsonb where id = $1', [run.job.id, JSON.stringify(marks)])
}

/**
 * This job's sends so far (from its counters) and its replays that came back to a DLQ (records carrying one
 * of its replay ids: `lifeline_dlq_records_replay_id`, a partial index over the few records that came back).
 */
async function failureRate(run: Run): Promise<{ sent: number; failed: number; again: number }> {
  const { rows } = await run.deps.db.query(
    `select j.succeeded, j.failed, (select count(*) from lifeline_dlq_records n join lifeline_dlq_replays p on p.replay_id = n.replay_id where n.replay_id is not null and p.job_id = j.id)::int8 as again
     from lifeline_dlq_jobs j where j.id = $1`,
    [run.job.id],
  )
  return { sent: Number(rows[0]!.succeeded), failed: Number(rows[0]!.failed), again: Number(rows[0]!.again) }
}

async function pauseSelf(run: Run, reason: string): Promise<void> {
  run.log.warn({ jobId: run.job.id, reason }, 'redrive job paused itself')
  await run.deps.db.query(`update lifeline_dlq_jobs set status = 'paused', status_reason = $3, updated_at = now(), pauses = pauses + 1 where id = $1 and runner = $2 and status = 'running'`, [run.job.id, run.runner, reason])
  run.stop.abort()
}

interface Prepared {
  ready: Array<{ item: ItemRow; planned: Planned; replayId: string; count: number }>
  skipped: Array<{ seq: number; recordId: string; detail: string }>
}

/** A prepared item not sent because a send of its key failed after it was prepared: skipped, its record pending again. */
interface Held {
  seq: number
  replayId: string
  recordId: string
  detail: string
}

interface Sent {
  acked: Acked[]
  failed: SendFailure[]
  unsent: Array<{ seq: number; replayId: string; recordId: string }>
  skipped: Prepared['skipped']
  held: Held[]
}

const KEPT_BACK = 'an earlier record of its key failed in this run (kept pending to keep the key in order)'

/** Plans a batch (skips, limits, replay ids) and marks it `sending` / `replaying` in one transaction. */
async function prepareBatch(run: Run, items: readonly ItemRow[], blockedKeys: Set<string>): Promise<Prepared> {
  const { deps, job } = run
  const max = deps.maxRedrivesPerRecord ?? redriveDefaults.maxRedrivesPerRecord
  const sources = items.map((i) => i.source)
  const lives = await earlierLives(deps.db, sources)
  const parked = await parkedOf(deps.parkedKeys, sources)
  const skipped: Array<{ seq: number; recordId: string; detail: string }> = []
  const ready: Array<{ item: ItemRow; planned: Planned; replayId: string; count: number }> = []
  for (const item of items) {
    const s = item.source
    const key = s.key === null ? undefined : keyId(s.originTopic ?? s.topic, s.key)
    if (key !== undefined && blockedKeys.has(key)) {
      skipped.push({ seq: item.seq, recordId: s.id, detail: KEPT_BACK })
      continue
    }
    if (!replayable(s.status, job.force)) {
      skipped.push({ seq: item.seq, recordId: s.id, detail: `record is ${s.status}` })
      continue
    }
    const refused = job.force ? undefined : limitError(s, lives.get(s.id) ?? 0, max)
    try {
      if (refused) throw refused
      const replayId = item.replayId ?? uuidV7()
      const count = lineage(s, lives.get(s.id) ?? 0).total + 1
      const clear = withClearKey(s, deps.masker)
      const planned = plan(clear, job.target, { id: replayId, count, actor: run.actor }, clearValue(s, s.value, deps.masker), parkedHead(parked, clear)?.headToken)
      ready.push({ item: { ...item, source: clear }, planned, replayId, count })
    } catch (err) {
      if (key !== undefined) blockedKeys.add(key)
      skipped.push({ seq: item.seq, recordId: s.id, detail: err instanceof LifelineError ? `${err.code}: ${err.message}` : String(err) })
    }
  }
  if (ready.length > 0) {
    await deps.db.transaction(async (tx) => {
      await holdLease(tx, run)
      await tx.query(`update lifeline_dlq_job_items i set status = 'sending', replay_id = x.r from unnest($2::int[], $3::text[]) as x(seq, r) where i.job_id = $1 and i.seq = x.seq`, [
        job.id, ready.map((r) => r.item.seq), ready.map((r) => r.replayId),
      ])
      await tx.query(
        `insert into lifeline_dlq_replays (replay_id, record_id, job_id, target_topic, target_partition, actor, replay_count)
         select x.id, x.rec, $1, x.t, x.p, $2, x.c from unnest($3::text[], $4::int8[], $5::text[], $6::int[], $7::int[]) as x(id, rec, t, p, c) on conflict (replay_id) do nothing`,
        [job.id, run.actor, ready.map((r) => r.replayId), ready.map((r) => r.item.source.id), ready.map((r) => r.planned.topic), ready.map((r) => r.planned.record.partition ?? null), ready.map((r) => r.count)],
      )
      await tx.query(
        `with x as (select * from unnest($1::int8[], $2::text[], $3::text[]) as x(id, replay_id, s)),
         up as (update lifeline_dlq_records r set status = 'replaying', status_reason = 'redrive', status_actor = $4, status_at = now() from x where r.id = x.id and r.status = 'pending' returning r.id, x.replay_id),
         forced as (select x.id, x.replay_id, x.s from x where x.s <> 'pending')
         insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select id, 'pending', 'replaying', $4, 'redrive', jsonb_build_object('jobId', $5::text, 'replayId', replay_id) from up
         union all
         select id, s, s, $4, 'forced replay', jsonb_build_object('jobId', $5::text, 'replayId', replay_id) from forced`,
        [ready.map((r) => r.item.source.id), ready.map((r) => r.replayId), ready.map((r) => r.item.source.status), run.actor, job.id],
      )
    })
  }
  return { ready, skipped }
}

/** Sends a prepared batch under the rate limit; resolves once every send is acknowledged or failed. */
async function sendPrepared(run: Run, { ready, skipped }: Prepared, limiter: RateLimiter | undefined, blockedKeys: Set<string>, signal: AbortSignal): Promise<Sent> {
  const { deps } = run
  const acked: Acked[] = []
  const failed: SendFailure[] = []
  const unsent: Array<{ seq: number; replayId: string; recordId: string }> = []
  const sends: Array<Promise<void>> = []
  const held: Held[] = []
  for (const r of ready) {
    if (signal.aborted) {
      unsent.push({ seq: r.item.seq, replayId: r.replayId, recordId: r.item.source.id })
      continue
    }
    const source = r.item.source
    // Prepared before the previous batch was acknowledged: a send of its key failed there since.
    if (source.key !== null && blockedKeys.has(keyId(source.originTopic ?? source.topic, source.key))) {
      held.push({ seq: r.item.seq, replayId: r.replayId, recordId: source.id, detail: KEPT_BACK })
      continue
    }
    let at: number
    try {
      at = limiter ? await limiter.acquire(signal) : Date.now()
    } catch {
      unsent.push({ seq: r.item.seq, replayId: r.replayId, recordId: r.item.source.id })
      continue
    }
    r.planned.record.timestamp = at
    const s = r.item.source
    const span = redriveSpan(r.planned.record, s.headers)
    sends.push(
      deps.producer.send([r.planned.record]).then(
        ([ack]) => {
          span?.end()
          acked.push({ seq: r.item.seq, replayId: r.replayId, ack: ack!, source: s, release: r.planned.release })
        },
        (err: unknown) => {
          if (span) endFailed(span, err)
          if (s.key !== null) blockedKeys.add(keyId(s.originTopic ?? s.topic, s.key))
          run.log.warn({ err, recordId: s.id, replayId: r.replayId }, 'a replay send failed')
          failed.push({ seq: r.item.seq, replayId: r.replayId, recordId: s.id, error: publicErrorText(err) })
        },
      ),
    )
  }
  await Promise.all(sends)
  if (acked.length > 0) crashPoint('redrive.after-produce')
  return { acked, failed, unsent, skipped, held }
}

/** Records a sent batch, then releases the parked keys of its records. */
async function settle(run: Run, sent: Sent): Promise<RedriveJobStatus | undefined> {
  const status = await finish(run, sent.acked, sent.failed, sent.unsent, sent.skipped, sent.held)
  if (sent.acked.length > 0) crashPoint('redrive.after-status')
  await releaseAll(run, sent.acked)
  return status
}

/**
 * Runs (or resumes) a job until it completes, pauses (canary, failure rate, pauseJob), is cancelled, or
 * `signal` aborts (then it is left `running` without a heartbeat: {@link resumeInterruptedJobs} takes it).
 * LL_DLQ_CONFLICT when it is running elsewhere, awaiting approval, or cancelled.
 */
export async function runRedriveJob(deps: RedriveDeps, jobId: string, opts: { signal?: AbortSignal; onProgress?(job: RedriveJob): void } = {}): Promise<RedriveJob> {
  const jid = positiveId('job', jobId)
  const runner = randomUUID()
  let job = await claim(deps, jid, runner)
  if (job.status === 'completed') return job
  const log = (deps.logger ?? silentLogger()).child({ component: 'dlq-redrive', jobId: jid })
  log.info({ runner, resumed: job.statusReason === 'resumed after an interruption' }, 'redrive job claimed')
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  if (opts.signal?.aborted) stop.abort()
  const run: Run = { deps, job, runner, actor: jobActor(jid), log, stop }
  const heartbeatMs = deps.heartbeatMs ?? redriveDefaults.heartbeatMs
  let beating = Promise.resolve()
  const heartbeat = setInterval(() => {
    beating = deps.db
      .query('update lifeline_dlq_jobs set heartbeat_at = now() where id = $1 and runner = $2 returning status', [jid, runner])
      .then(({ rows }) => {
        if (rows.length === 0 || rows[0]!.status !== 'running') stop.abort()
      })
      .catch((err: unknown) => log.warn({ err }, 'a redrive job heartbeat failed'))
  }, heartbeatMs)
  const progress = async () => {
    job = await getJob(deps.db, jid)
    run.job = job
    try {
      opts.onProgress?.(job)
    } catch (err) {
      log.warn({ err }, 'onProgress threw')
    }
  }
  let stoppedBySignal = false
  let takenOver = false
  // Pipelined: while batch i is on the wire (inFlight), batch i-1 is recorded (settling) and batch i+1 read
  // and prepared; batch i+1's sends start once batch i's are acknowledged.
  let inFlight: Promise<Sent> | undefined
  let settling: Promise<RedriveJobStatus | undefined> | undefined
  try {
    await recover(run)
    await markTargets(run)
    // Judged on what follows this (re)start: failures an operator already saw and resumed past do not count again.
    const baseline = await failureRate(run)
    await deps.db.query(`update lifeline_dlq_jobs set options = options || jsonb_build_object('baseline', $2::jsonb) where id = $1`, [jid, JSON.stringify(baseline)])
    job.options.baseline = baseline
    const limiter = job.ratePerSec === null ? undefined : new RateLimiter(job.ratePerSec)
    const blockedKeys = new Set<string>()
    const batch = job.options.batchSize
    let lastCheck = 0
    let cursor = 0
    /** Waits for the batches in flight to be recorded; false when the job must stop (paused, cancelled, taken over). */
    const drain = async (): Promise<boolean> => {
      let running = true
      if (settling) {
        running = (await settling) === 'running'
        settling = undefined
      }
      if (inFlight) {
        const sent = await inFlight
        inFlight = undefined
        running = (await settle(run, sent)) === 'running' && running
      }
      return running
    }
    for (;;) {
      if (stop.signal.aborted) break
      let canaryLimit: number | undefined
      if (!job.options.canaryPassed && (job.canary ?? 0) > 0) {
        if (job.options.canaryLastSeq === undefined) {
          const { rows } = await deps.db.query(`select seq from lifeline_dlq_job_items where job_id = $1 and status <> 'skipped' order by seq offset $2 limit 1`, [jid, job.canary! - 1])
          job.options.canaryLastSeq = rows.length === 0 ? 2 ** 31 - 1 : Number(rows[0]!.seq)
          await deps.db.query(`update lifeline_dlq_jobs set options = options || jsonb_build_object('canaryLastSeq', $2::int) where id = $1`, [jid, job.options.canaryLastSeq])
        }
        canaryLimit = job.options.canaryLastSeq
      }
      // The next window of `batch` items by the primary key (job_id, seq: numbered 1..total at creation), its
      // pending ones: each item is read once per run, and no read scans the items before it (a cost that
      // grew with the square of the job).
      const end = Math.min(canaryLimit ?? job.total, job.total)
      const upTo = Math.min(cursor + batch, end)
      const items = cursor < end ? await loadItems(deps.db, jid, `i.seq > $2 and i.seq <= $3 and i.status = 'pending'`, [cursor, upTo]) : []
      cursor = Math.max(cursor, upTo)
      if (items.length === 0 && cursor < end) continue // a window of items skipped at creation
      if (items.length === 0) {
        if (!(await drain())) break
        if (canaryLimit !== undefined) {
          // The canary is out: wait, then see whether any of it came back.
          try {
            await sleep(job.options.canaryWaitMs, stop.signal)
          } catch {
            break
          }
          const { rows } = await deps.db.query(
            `select count(*) filter (where i.status = 'sent')::int8 as sent, count(*) filter (where i.status = 'failed' or (i.status = 'sent' and (r.status = 'failed-again' or exists (select 1 from lifeline_dlq_records n where n.previous_id = r.id and n.replay_id = i.replay_id))))::int8 as bad
             from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id where i.job_id = $1 and i.seq <= $2 and i.status in ('sent', 'failed')`,
            [jid, canaryLimit],
          )
          const bad = Number(rows[0]!.bad)
          if (bad > 0) {
            await pauseSelf(run, `canary: ${bad} of ${Number(rows[0]!.sent)} canary replays failed or came back to the DLQ (resume to go on)`)
            break
          }
          await deps.db.query(`update lifeline_dlq_jobs set options = options || '{"canaryPassed": true}'::jsonb where id = $1`, [jid])
          job.options.canaryPassed = true
          await progress()
          continue
        }
        await deps.db.query(`update lifeline_dlq_jobs set status = 'completed', status_reason = null, updated_at = now() where id = $1 and runner = $2 and status = 'running'`, [jid, runner])
        break
      }
      // Prepared while the previous batch is on the wire (and the one before it is recorded): the broker
      // never waits for the database between batches. Keys whose send failed in the previous batch are
      // known only at its acknowledgements: sendPrepared holds their records back then.
      const prepared = await prepareBatch(run, items, blockedKeys)
      let running = true
      if (inFlight) {
        const sent = await inFlight
        inFlight = undefined
        running = settling === undefined || (await settling) === 'running'
        settling = settle(run, sent)
        settling.catch(() => undefined) // awaited by drain; never an unhandled rejection meanwhile
      }
      if (!running) stop.abort() // paused, cancelled or taken over: the prepared batch goes back unsent
      inFlight = sendPrepared(run, prepared, limiter, blockedKeys, stop.signal)
      if (!running) {
        await drain()
        break
      }
      if (job.maxFailureRate !== null && Date.now() - lastCheck >= 250) {
        lastCheck = Date.now()
        const now = await failureRate(run)
        const base = job.options.baseline ?? { sent: 0, failed: 0, again: 0 }
        const sends = now.sent - base.sent + (now.failed - base.failed)
        const bad = now.failed - base.failed + (now.again - base.again)
        if (sends >= job.options.failureSample && bad / sends > job.maxFailureRate) {
          await pauseSelf(run, `failure rate ${(bad / sends).toFixed(2)} above ${job.maxFailureRate}: ${bad} of ${sends} replays failed (resume to go on)`)
          await drain()
          break
        }
      }
      await progress()
    }
    // Whatever is in flight is recorded before the run ends (unsent items go back to pending).
    await drain()
    stoppedBySignal = opts.signal?.aborted === true
  } catch (err) {
    if (isLifelineError(err, 'LL_DLQ_CONFLICT') && err.details.takenOver === true) {
      // Another runner holds the job now: its recovery settles what this one sent and did not record.
      takenOver = true
      stop.abort()
      await Promise.allSettled([inFlight, settling])
      log.warn('redrive job taken over by another runner: this run stops without recording more')
      return getJob(deps.db, jid)
    }
    log.error({ err }, 'redrive job failed')
    await deps.db
      .query(`update lifeline_dlq_jobs set status = 'failed', status_reason = $3, updated_at = now() where id = $1 and runner = $2 and status = 'running'`, [jid, runner, publicErrorText(err).slice(0, 2000)])
      .catch(() => undefined)
    throw err
  } finally {
    clearInterval(heartbeat)
    opts.signal?.removeEventListener('abort', onAbort)
    await beating
    // Stopped by the caller: left running without a heartbeat, so resumeInterruptedJobs takes it at once.
    if (takenOver) {
      // Nothing of this run's: the job's runner column names the new runner.
    } else if (stoppedBySignal) await deps.db.query(`update lifeline_dlq_jobs set heartbeat_at = null, runner = null where id = $1 and runner = $2 and status = 'running'`, [jid, runner]).catch(() => undefined)
    else await deps.db.query('update lifeline_dlq_jobs set runner = null where id = $1 and runner = $2', [jid, runner]).catch(() => undefined)
  }
  await progress()
  return job
}

/**
 * Resumes the jobs left `running` whose heartbeat is stale (3 × heartbeatMs, or `staleMs`): a processor
 * killed mid-job. Each resumes in the background (or awaited with `wait`); returns their ids.
 */
export async function resumeInterruptedJobs(deps: RedriveDeps, opts: { staleMs?: number; wait?: boolean; signal?: AbortSignal; onProgress?(job: RedriveJob): void } = {}): Promise<string[]> {
  const staleMs = opts.staleMs ?? jobLeaseMs(deps)
  const { rows } = await deps.db.query(
    `select id from lifeline_dlq_jobs where kind = 'redrive' and status = 'running' and (heartbeat_at is null or heartbeat_at < now() - ($1::int8 * interval '1 millisecond')) order by id`,
    [staleMs],
  )
  const ids = rows.map((r) => String(r.id))
  const log = (deps.logger ?? silentLogger()).child({ component: 'dlq-redrive' })
  const runs = ids.map((id) =>
    runRedriveJob({ ...deps, heartbeatMs: Math.min(deps.heartbeatMs ?? redriveDefaults.heartbeatMs, Math.max(1, Math.floor(staleMs / 3))) }, id, opts).catch((err: unknown) => {
      log.error({ err, jobId: id }, 'resuming an interrupted redrive job failed')
    }),
  )
  if (opts.wait) await Promise.all(runs)
  return ids
}
