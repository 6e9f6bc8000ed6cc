/**
 * The state one consumer shares between its modules (kafkajs hands its `consumerGroup` to the `Runner` the
 * same way): resolved options, the scheduler, the assigned partitions, counters, the Kafka clients, and
 * the few late-bound hooks that would otherwise make two modules import each other.
 *
 * Each module below exports functions taking this context; `index.ts` builds it and wires the hooks.
 * Layers, top to bottom (a module imports only from below it):
 *
 *   index → poll-loop → rebalance → intake → dispatcher → replay → attempts → leave-main-path → parking
 *   → commits → state-writes → partitions → events → context
 *
 * @module
 */
import type { EventEmitter } from 'node:events'
import type { Context as OtelContext } from '@opentelemetry/api'
import type { ConsumedRecord, KafkaConsumer, KafkaProducer } from '../../kafka/types.js'
import type { Logger } from '../../logger.js'
import type { Expectation, ProtocolStore } from '../../ordering/protocol-store.js'
import type { ParkStatus } from '../../ordering/rows.js'
import type { CircuitBreaker } from '../../retry/circuit-breaker.js'
import { schedulingKey, type KeyScheduler, type SchedulableItem } from '../key-scheduler.js'
import type { RuntimeMetrics } from '../metrics.js'
import type { PartitionOffsets } from '../offset-tracker.js'
import type { ConsumerEvents } from '../options.js'
import type { TierInfo } from '../../failure/tier-record.js'
import type { ResolvedConsumerOptions } from './resolve-options.js'

/** What the owner of a source partition keeps in memory of a key with ordering state (parked, released or gap). */
export interface KeyEntry {
  readonly key: Buffer
  status: ParkStatus
  /** The current head's token (for a gap: the gap's token). */
  token: string
  /** Source offset of the head; -1 for a gap. */
  headOffset: number
  /** Records stored behind the key (as far as this owner knows). */
  records: number
  parkedAt: number
  /** For a gap: the first missing sequence and since when (ms). */
  gapFrom?: number
  gapSince?: number
  /** When the last `hold` alert for this gap was raised (ms). */
  alertedAt?: number
  /** A gap's state was checked against its stored records (once per owner: a filled gap is closed, F5). */
  verified?: boolean
  /** A replay (or gap expiry) of this key is queued or running in its lane. */
  busy: boolean
}

export interface PartitionState {
  readonly topic: string
  readonly partition: number
  readonly offsets: PartitionOffsets
  readonly pausedFor: Set<string>
  readonly running: Set<Item>
  /** Cancels this partition's backoff, breaker, slot and state-write waits (revoke, fence, close). */
  readonly waits: AbortController
  /** Handlers' signal: aborted only when a drain of this partition timed out. */
  readonly handlers: AbortController
  /** Items queued in the scheduler. */
  buffered: number
  /** Records of this partition whose DLQ / retry-tier / state write is failing right now, by pause reason. */
  readonly failing: Map<string, number>
  /** Revoked, lost, fenced or closing: takes no record and starts nothing new. */
  revoking: boolean
  /** A state write found a newer epoch: another member owns the partition. Nothing of it is committed. */
  fenced: boolean
  /** Removed from the assigned partitions (after its revocation): a handler finishing now completes nothing here. */
  detached: boolean
  /** Set for a retry-tier partition: its source topic and tier number. */
  readonly tierOf: { source: string; n: number } | undefined
  /** False until the partition is claimed (its epoch taken) and its state loaded; records fetched meanwhile wait in `stash`. */
  ready: boolean
  stash: ConsumedRecord[]
  stashBytes: number
  /** The epoch this member took when it was assigned the partition (with parking). */
  epoch: number | undefined
  /** Keys of this (source) partition with ordering state, by scheduling key. */
  readonly keys: Map<string, KeyEntry>
  /** Last handled sequence per key (with `sequence`). */
  readonly lastSeq: Map<string, number>
  /** Last handled sequences not yet saved (saved before the offsets covering them are committed). */
  readonly dirtySeq: Map<string, { key: Buffer; seq: number }>
  /** Retry-tier records held until due, in arrival order (the partition is paused meanwhile). */
  delayed: Item[]
  delayTimer: NodeJS.Timeout | undefined
}

export type ItemKind = 'record' | 'replay' | 'gap-expiry'

export interface Item extends SchedulableItem {
  /** What the handler sees: the consumed record, a retry-tier record at its origin, or a stored record. */
  readonly record: ConsumedRecord
  /** The partition the item acts through: a source partition, or the retry-tier partition of a tier copy. */
  readonly state: PartitionState
  /** `replay`: replays a released key's stored records in its lane; `gap-expiry`: applies a timed-out gap's policy. */
  readonly kind: ItemKind
  /** The Kafka record whose offset this item completes; undefined for a stored record, a replay or an expiry. */
  readonly source: ConsumedRecord | undefined
  /** A retry-tier record's tier headers. */
  readonly tier?: TierInfo
  /** A stored record being replayed: its row id. */
  readonly parkedId?: string
  seq?: number
  /** The value decoded at intake (sequence extraction needs it). */
  decoded?: { value: unknown } | { error: unknown }
  /** An error that dead-letters the record without running the handler (bad sequence, gap timeout, bad tier headers). */
  forced?: unknown
  /** Leaving the main path does not park the key (a late straggler, a tier record without readable headers). */
  noPark?: boolean
  /** The key state a head move from this item expects (set by preflight). */
  expect?: Expectation
  /** What this item does to its key on success: release a head, close a gap. */
  onSuccess?: { kind: 'release-head'; token: string } | { kind: 'close-gap'; token: string }
  /** Sequences a head move from this item skips past (a gap dead-lettered). */
  skip?: { from: number; to: number; policy: string }
  /** For a replay or an expiry: the release (or gap) token it acts under. */
  token?: string
  /** The trace context of its last attempt (with tracing): a retry-tier or DLQ copy is sent as its child. */
  trace?: OtelContext
}

/**
 * An item as a class with every field declared: one hidden class for every record (no object spreads, no
 * shape changes when preflight or the scheduler fill a field in), which keeps the hot path monomorphic.
 */
export class WorkItem implements Item {
  schedLane: unknown = undefined
  schedOrder: number | undefined = undefined
  tier: TierInfo | undefined = undefined
  parkedId: string | undefined = undefined
  seq: number | undefined = undefined
  decoded: { value: unknown } | { error: unknown } | undefined = undefined
  forced: unknown = undefined
  noPark: boolean | undefined = undefined
  expect: Expectation | undefined = undefined
  onSuccess: Item['onSuccess'] = undefined
  skip: Item['skip'] = undefined
  token: string | undefined = undefined
  trace: OtelContext | undefined = undefined
  readonly topic: string
  readonly partition: number
  #key: Buffer | null
  #schedulingKey: string | null | undefined = undefined
  constructor(
    readonly kind: ItemKind,
    readonly state: PartitionState,
    readonly record: ConsumedRecord,
    readonly source: ConsumedRecord | undefined,
    /** The key it is ordered by (see {@link schedulingKey}). */
    key: Buffer | null,
    readonly size: number,
  ) {
    this.topic = state.topic
    this.partition = state.partition
    this.#key = key
  }

  /** Made on first use: a record that runs and finishes in place never needs it. */
  get schedulingKey(): string | null {
    if (this.#schedulingKey === undefined) this.#schedulingKey = schedulingKey(this.#key)
    return this.#schedulingKey
  }
}

/** A state read/write or a produce that close(), a revocation or a fence cancelled. */
export const CANCELLED = Symbol('cancelled')

export type Outcome = 'done' | 'abandoned'

export interface ConsumerContext {
  readonly options: ResolvedConsumerOptions
  readonly log: Logger
  readonly metrics: RuntimeMetrics
  readonly emitter: EventEmitter<ConsumerEvents>
  readonly breaker: CircuitBreaker | undefined
  /** The ordering state (with `state`). */
  readonly store: ProtocolStore | undefined
  /** Keys park behind records that leave the main path (ordering key/partition with a state database). */
  readonly parking: boolean
  /** This member's name in `lifeline_partition_epochs`. */
  readonly member: string
  readonly scheduler: KeyScheduler<Item>
  readonly partitions: Map<string, PartitionState>
  readonly stopping: AbortController
  readonly drainWaiters: Set<() => void>
  /** Records back from a backoff or the breaker, waiting for a handler slot; served before new records. */
  readonly slotWaiters: Array<() => void>
  /** Handler slots taken. */
  running: number
  inFlight: number
  bufferedBytes: number
  memoryPaused: boolean
  kafka: KafkaConsumer | undefined
  producer: KafkaProducer | undefined
  /** Commits run one at a time, in order: a late answer can never move a position back. */
  commitChain: Promise<void>
  /** An OpenTelemetry SDK is registered (checked once per poll batch): spans are made. */
  tracing: boolean
  /** Dispatches queued work (dispatcher.ts; late-bound so that lower modules can ask for it). */
  pump: () => void
}

export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`
