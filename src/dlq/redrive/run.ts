/**
 * A running job: its lease (a heartbeat every `heartbeatMs`, stale after three missed; an advisory lock
 * fences the writes of a runner that lost it), its context, and the shapes its batches pass along
 * (items read, prepared, sent, acknowledged or failed).
 *
 * @module
 */
import type { Logger } from '../../logger.js'
import type { ProduceAck } from '../../kafka/types.js'
import type { Planned } from './plan.js'
import { redriveDefaults, type RedriveDeps, type RedriveJob, type Source } from './types.js'

/** Per target topic and partition: the offset from which a crashed run's sends are looked for. */
export type Marks = Record<string, Record<string, number>>

export interface ItemRow {
  seq: number
  replayId: string | null
  source: Source
}

export interface Acked {
  seq: number
  replayId: string
  ack: ProduceAck
  source: Pick<Source, 'id' | 'consumerGroup' | 'originTopic' | 'originOffset' | 'key'>
  release: boolean
}

export interface SendFailure {
  seq: number
  replayId: string
  recordId: string
  error: string
}

/** A running job's context. */
export interface Run {
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

/**
 * The advisory lock of a job's lease (hashed with `hashtextextended`): a claim takes it exclusively, each
 * batch transaction of the runner shares it (see `holdLease` in ./batch-store.ts).
 */
export function leaseLockKey(jobId: string): string {
  return `lifeline_dlq_job:${jobId}`
}

export interface Prepared {
  ready: Array<{ item: ItemRow; planned: Planned; replayId: string; count: number }>
  skipped: Array<{ seq: number; recordId: string; detail: string }>
}

/** A prepared item not sent because a send of its key failed after it was prepared: skipped, its record pending again. */
export interface Held {
  seq: number
  replayId: string
  recordId: string
  detail: string
}

export interface Sent {
  acked: Acked[]
  failed: SendFailure[]
  unsent: Array<{ seq: number; replayId: string; recordId: string }>
  skipped: Prepared['skipped']
  held: Held[]
}
