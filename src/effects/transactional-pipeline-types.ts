/**
 * The transactional pipeline's public contract: its events, life-cycle states, statistics and the handle
 * `createTransactionalPipeline` returns (transactional-pipeline.ts); its options are in
 * transactional-pipeline-options.ts.
 *
 * @module
 */
import type { EventEmitter } from 'node:events'
import type { LifelineError } from '../errors.js'
import type { TopicPartition, TopicPartitionOffset } from '../kafka/types.js'

export interface TransactionalPipelineEvents {
  /** A batch's transaction committed: its outputs are visible and its offsets committed. */
  committed: [info: { records: number; outputs: number; offsets: TopicPartitionOffset[]; durationMs: number }]
  /**
   * A record whose transform failed permanently, or `retry.maxAttempts` times, was dead-lettered; emitted
   * once the transaction holding the dead letter committed.
   */
  'dead-letter': [info: { topic: string; partition: number; offset: number; dlqTopic: string; dlqOffset: number; errorCode: string; attempts: number }]
  /** A batch's transaction was aborted; its records are processed again (unless their partition went). */
  aborted: [info: { records: number; reason: 'error' | 'revoked' | 'closing'; error?: unknown }]
  /** This pipeline was fenced by a newer one with the same transactionalId and stopped. */
  fenced: [error: LifelineError]
  'partitions-assigned': [partitions: TopicPartition[]]
  'partitions-revoked': [partitions: TopicPartition[], lost: boolean]
  /** A problem the pipeline recovers from by itself (poll failures); emitted only when listened to. */
  error: [error: unknown]
}

export type PipelineState = 'idle' | 'starting' | 'running' | 'stopped' | 'closed'

export interface TransactionalPipelineStats {
  state: PipelineState
  committedTransactions: number
  abortedTransactions: number
  /** Input records whose transaction committed. */
  records: number
  /** Output records committed (dead letters not included). */
  outputs: number
  /** Input records dead-lettered in a committed transaction. */
  deadLettered: number
  assigned: TopicPartition[]
}

export interface TransactionalPipeline extends EventEmitter<TransactionalPipelineEvents> {
  /**
   * Initialises transactions (fencing older instances with the same transactionalId), joins the group and
   * starts the loop; resolves once running. Rejects if any of that fails (what it created is closed).
   */
  start(): Promise<void>
  /**
   * Settles when the pipeline stops: resolves after close(), rejects with the error that stopped it on its
   * own (`LL_FENCED` when fenced, `LL_TRANSACTION` for a fatal producer error).
   */
  done(): Promise<void>
  /** Aborts the open transaction, leaves the group, closes the producer. Idempotent. */
  close(): Promise<void>
  stats(): TransactionalPipelineStats
  [Symbol.asyncDispose](): Promise<void>
}
