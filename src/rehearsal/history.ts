/**
 * What a rehearsal records, as the checker reads it: the produce log, the handler log and consumer
 * events of every member, the effects table, the DLQ topic, the broker's committed offsets over time,
 * the faults and the operator's actions. Only documented, public facts: no runtime internals.
 *
 * @module
 */
import type { RehearsalEvent } from './workload.js'

/** One produce attempt. A timeout is `unknown` (the record may or may not be in the log), never `failed`. */
export interface ProduceEntry {
  eventId: string
  copy: number
  producer: 'a' | 'b'
  /** ms since the epoch, when the send was made / answered. */
  at: number
  doneAt: number
  outcome: 'ok' | 'failed' | 'unknown'
  partition?: number
  offset?: number
  error?: string
  /**
   * Further attempts of the same send that failed the same way right after this one (one entry stands for
   * them: while the brokers are down, 20k sends retried every second would otherwise add 20k entries a second).
   * `doneAt` is then the last one's.
   */
  repeats?: number
}

/**
 * A line of a member's log: a handler invocation (`apply`) or a consumer event. An `apply` of a retry-tier
 * record carries `tier` (the message then names the source topic with the tier record's partition and offset).
 */
export type MemberEntry =
  | { type: 'apply'; at: number; member: string; inv: string; eventId: string; key: string; seq: number; topic: string; partition: number; offset: number; attempt: number; phase: 'start' | 'threw' | 'returned'; error?: string; tier?: number }
  | { type: 'processed'; at: number; member: string; topic: string; partition: number; offset: number }
  | { type: 'dead-letter' | 'retry-tier' | 'parked' | 'record-parked' | 'duplicate'; at: number; member: string; topic: string; partition: number; offset: number; key?: string }
  | { type: 'released'; at: number; member: string; topic: string; partition: number; key: string; replayed: number }
  | { type: 'commit'; at: number; member: string; offsets: Array<{ topic: string; partition: number; offset: number }> }
  | { type: 'assigned' | 'revoked'; at: number; member: string; partitions: Array<{ topic: string; partition: number }>; lost?: boolean }
  | { type: 'started' | 'closed'; at: number; member: string; pid: number; crashAt?: string }
  | { type: 'error'; at: number; member: string; message: string }

/** A row of the effects table: written by the harness's `apply` in the handler's transaction. */
export interface EffectRow {
  eventId: string
  key: string
  seq: number
  inv: string
  member: string
  at: number
}

/** A record read back from the DLQ topic. */
export interface DlqEntry {
  partition: number
  offset: number
  key: string | null
  eventId: string | undefined
  valueSha: string
  originTopic: string | undefined
  originPartition: number | undefined
  originOffset: number | undefined
  /** Set on a record that came back after a redrive (a new life, not a duplicate). */
  replayId: string | undefined
  /** The DLQ record's timestamp, ms since the epoch (the runtime keeps the source record's). */
  timestamp?: number
}

/** The group's committed offsets and the log end, read from the broker at one moment. */
export interface OffsetSample {
  at: number
  partitions: Array<{ partition: number; committed: number; high: number }>
}

/** A fault the nemesis applied, with when it began and healed. */
export interface FaultInterval {
  kind: string
  target?: string
  detail?: string
  start: number
  end: number
}

/** The operator phase: what was redriven or discarded through the DLQ processor, and when. */
export interface OperatorLog {
  /** The poison cause was fixed at this time (poison events succeed from then on). */
  fixedAt: number
  redriven: string[]
  discarded: string[]
  /** Effects counted before and after the second redrive (which must add none). */
  secondRedrive: { sent: number; effectsBefore: number; effectsAfter: number } | undefined
  /** Final per-key state (the seqs applied, in commit order). */
  finalState: Map<string, number[]>
  /** True when the operator phase ran (else events behind poison are "held for an operator"). */
  ran: boolean
}

export interface History {
  topic: string
  partitions: number
  events: readonly RehearsalEvent[]
  produces: readonly ProduceEntry[]
  members: readonly MemberEntry[]
  effects: readonly EffectRow[]
  dlq: readonly DlqEntry[]
  offsets: readonly OffsetSample[]
  faults: readonly FaultInterval[]
  operator: OperatorLog
  /** When the nemesis healed its last fault (liveness is measured from here). */
  healedAt: number
  /** Value sha256 per event id (what every copy carried). */
  valueSha: ReadonlyMap<string, string>
  /**
   * The DLQ processor's view after the operator phase: the dead letter (record id) each DLQ record
   * (`partition@offset`) was stored as, or is a copy of. Absent when the operator phase did not run.
   */
  dlqIndex?: Readonly<Record<string, string>>
  /**
   * Records of the source topic at offsets no acknowledgement names (`partition@offset` → event id), read back
   * from the log after the run: a producer retry wrote the event again after its first write was stored but
   * never acknowledged (finding F6). A dead letter naming such an offset as its origin names the event's
   * real place. Absent in histories saved before it was collected.
   */
  unackedCopies?: Readonly<Record<string, string>>
}
