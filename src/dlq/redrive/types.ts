/**
 * The redrive's shapes: its dependencies, targets, results and jobs (public, re-exported by `lifeline/dlq`),
 * the defaults, and `Source`, a DLQ record as the redrive reads it (internal).
 *
 * @module
 */
import type { KafkaProducer } from '../../kafka/types.js'
import type { Logger } from '../../logger.js'
import type { ParkedKeys } from '../../ordering/state-store.js'
import type { Masker } from '../../failure/masking.js'
import type { SqlExecutor, SqlQueryable } from '../../store/executor.js'
import type { DlqRecord } from '../records.js'

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

/** A DLQ record as the redrive reads it (`lifeline_dlq_records`: the columns of `SOURCE_COLUMNS` in ./record-store.ts). */
export type Source = Pick<
  DlqRecord,
  'id' | 'topic' | 'key' | 'value' | 'headers' | 'format' | 'originTopic' | 'originPartition' | 'originOffset' | 'originTimestamp' | 'consumerGroup' | 'service' | 'errorClass' | 'errorCode' | 'errorMessage' | 'errorStack' | 'fingerprint' | 'attempts' | 'firstFailureAt' | 'lastFailureAt' | 'status' | 'replayCount' | 'replayedBefore' | 'previousId' | 'masked'
>
