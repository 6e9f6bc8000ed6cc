/**
 * The consumer's Prometheus metrics, registered in a registry the user passes in (never the global one).
 * Several consumers may share a registry: a metric already registered under the same name is reused, and
 * every series carries the consumer `group`. Documented in docs/metrics.md.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { metric } from '../util/metric.js'

export interface RuntimeMetricsSources {
  inFlight(): number
  buffered(): number
  pausedPartitions(): number
  /** The circuit breaker's state, when the consumer has one. */
  breakerState(): 'closed' | 'open' | 'half-open' | undefined
  /** Per assigned partition: high watermark − committed position (undefined when unknown). */
  lag(): Array<{ topic: string; partition: number; lag: number }>
  /** Parked keys of the assigned partitions. */
  parkedKeys(): number
  /** Records stored behind those keys. */
  parkedRecords(): number
  /** Age of the oldest parked key, seconds (0 when none). */
  oldestParkedSeconds(): number
  /** Records stored behind keys waiting for a sequence gap. */
  reorderBuffered(): number
  /** Per assigned retry-tier partition: records not yet consumed (high watermark − committed) plus those held until due. */
  tierDepth(): Array<{ topic: string; depth: number }>
}

export interface RuntimeMetrics {
  /** Whether anything is recorded (a registry was given): without one, handler durations are not even timed. */
  readonly timed: boolean
  processed(topic: string): void
  failed(topic: string, code: string): void
  retried(topic: string, code: string): void
  deadLettered(topic: string, code: string): void
  handlerDuration(topic: string, outcome: 'success' | 'failure', seconds: number): void
  breakerTransition(to: 'closed' | 'open' | 'half-open'): void
  /** A record was written to retry tier `tier`. */
  tierForwarded(topic: string, tier: number): void
  /** A retry-tier record ran `seconds` after its due time. */
  dueLag(tier: number, seconds: number): void
  /** A retry-tier record whose key's head had moved on was skipped. */
  staleRetry(topic: string): void
  keyParked(topic: string): void
  recordParked(topic: string): void
  keyReleased(topic: string): void
  duplicateSkipped(topic: string): void
  gap(topic: string, policy: string): void
  /** An ordering-state write was refused: another member owns the partition now. */
  fenced(topic: string): void
  /** A late straggler of a skipped sequence range was dead-lettered. */
  straggler(topic: string): void
  /** Removes this consumer's sources from the gauges (close()). */
  detach(): void
}


/** Gauges sum the sources of every consumer that registered under one group label. */
const gaugeSources = new WeakMap<object, Map<string, Set<RuntimeMetricsSources>>>()

export function createRuntimeMetrics(registry: Registry | undefined, group: string, sources: RuntimeMetricsSources): RuntimeMetrics {
  if (!registry) {
    const noop = () => undefined
    return { timed: false, processed: noop, failed: noop, retried: noop, deadLettered: noop, handlerDuration: noop, breakerTransition: noop, tierForwarded: noop, dueLag: noop, staleRetry: noop, keyParked: noop, recordParked: noop, keyReleased: noop, duplicateSkipped: noop, gap: noop, fenced: noop, straggler: noop, detach: noop }
  }
  const registers = [registry]
  const processed = metric(registry, 'lifeline_records_processed_total', () => new Counter({ name: 'lifeline_records_processed_total', help: 'Records whose handler succeeded.', labelNames: ['group', 'topic'], registers }))
  const failed = metric(registry, 'lifeline_records_failed_total', () => new Counter({ name: 'lifeline_records_failed_total', help: 'Failed handler attempts (each attempt counts), by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const retried = metric(registry, 'lifeline_records_retried_total', () => new Counter({ name: 'lifeline_records_retried_total', help: 'Retries scheduled after a failed attempt, by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const deadLettered = metric(registry, 'lifeline_records_dead_lettered_total', () => new Counter({ name: 'lifeline_records_dead_lettered_total', help: 'Records written to a dead-letter topic, by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const duration = metric(registry, 'lifeline_handler_duration_seconds', () => new Histogram({ name: 'lifeline_handler_duration_seconds', help: 'Handler attempt duration.', labelNames: ['group', 'topic', 'outcome'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }))

  const transitions = metric(registry, 'lifeline_circuit_transitions_total', () => new Counter({ name: 'lifeline_circuit_transitions_total', help: 'Circuit breaker state changes, by the state entered.', labelNames: ['group', 'to'], registers }))

  const counter = (name: string, help: string, labelNames: string[]) => metric(registry, name, () => new Counter({ name, help, labelNames, registers }))
  const tierForwarded = counter('lifeline_retry_tier_records_total', 'Records written to a retry tier, by tier.', ['group', 'topic', 'tier'])
  const dueLag = metric(registry, 'lifeline_retry_due_lag_seconds', () => new Histogram({ name: 'lifeline_retry_due_lag_seconds', help: 'How late after its due time a retry-tier record ran.', labelNames: ['group', 'tier'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300], registers }))
  const staleRetries = counter('lifeline_retry_stale_skipped_total', 'Retry-tier records skipped because their key had moved on (a copy left by a crash).', ['group', 'topic'])
  const keysParked = counter('lifeline_keys_parked_total', 'Keys parked behind a record that left the main path.', ['group', 'topic'])
  const recordsParked = counter('lifeline_records_parked_total', 'Records stored behind a parked key.', ['group', 'topic'])
  const keysReleased = counter('lifeline_keys_released_total', 'Parked keys whose records were all replayed.', ['group', 'topic'])
  const duplicates = counter('lifeline_sequence_duplicates_total', 'Records skipped because their sequence was already handled.', ['group', 'topic'])
  const fenced = counter('lifeline_state_writes_fenced_total', 'Ordering-state writes refused because another member took the partition (a newer epoch): this member stopped the partition.', ['group', 'topic'])
  const stragglers = counter('lifeline_sequence_stragglers_total', 'Records whose sequence a gap policy had skipped, arriving late: dead-lettered (LL_SEQUENCE_LATE).', ['group', 'topic'])
  const gaps = counter('lifeline_sequence_gaps_total', 'Sequence gaps that timed out, by the policy applied (hold counts each re-alert).', ['group', 'topic', 'policy'])

  let byGroup = gaugeSources.get(registry)
  if (!byGroup) gaugeSources.set(registry, (byGroup = new Map()))
  const all = byGroup
  const groupSources = all.get(group) ?? new Set<RuntimeMetricsSources>()
  all.set(group, groupSources)
  groupSources.add(sources)

  const sumGauge = (name: string, help: string, read: (s: RuntimeMetricsSources) => number) =>
    metric(registry, name, () =>
      new Gauge({
        name,
        help,
        labelNames: ['group'],
        registers,
        collect() {
          this.reset()
          for (const [g, set] of all) this.set({ group: g }, [...set].reduce((sum, s) => sum + read(s), 0))
        },
      }),
    )
  sumGauge('lifeline_records_in_flight', 'Records whose handler is running or waiting to retry.', (s) => s.inFlight())
  sumGauge('lifeline_records_buffered', 'Records fetched and waiting for a handler slot.', (s) => s.buffered())
  sumGauge('lifeline_partitions_paused', 'Partitions paused by backpressure or a failing dead-letter write.', (s) => s.pausedPartitions())
  sumGauge('lifeline_parked_keys', 'Parked keys of the assigned partitions.', (s) => s.parkedKeys())
  sumGauge('lifeline_parked_records', 'Records stored behind parked keys of the assigned partitions.', (s) => s.parkedRecords())
  metric(registry, 'lifeline_parked_oldest_age_seconds', () =>
    new Gauge({
      name: 'lifeline_parked_oldest_age_seconds',
      help: 'Age of the oldest parked key of the assigned partitions.',
      labelNames: ['group'],
      registers,
      collect() {
        this.reset()
        for (const [g, set] of all) this.set({ group: g }, Math.max(0, ...[...set].map((s) => s.oldestParkedSeconds())))
      },
    }),
  )
  sumGauge('lifeline_reorder_buffered', 'Records stored (in the state database) behind keys waiting for a missing sequence.', (s) => s.reorderBuffered())
  metric(registry, 'lifeline_retry_tier_depth', () =>
    new Gauge({
      name: 'lifeline_retry_tier_depth',
      help: 'Records waiting in a retry tier (not yet consumed, or held until due), per tier topic.',
      labelNames: ['group', 'topic'],
      registers,
      collect() {
        this.reset()
        for (const [g, set] of all) {
          const byTopic = new Map<string, number>()
          for (const s of set) for (const d of s.tierDepth()) byTopic.set(d.topic, (byTopic.get(d.topic) ?? 0) + d.depth)
          for (const [topic, depth] of byTopic) this.set({ group: g, topic }, depth)
        }
      },
    }),
  )
  const STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const
  metric(registry, 'lifeline_circuit_state', () =>
    new Gauge({
      name: 'lifeline_circuit_state',
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open (only consumers with a breaker).',
      labelNames: ['group'],
      registers,
      collect() {
        this.reset()
        for (const [g, set] of all) {
          const states = [...set].map((s) => s.breakerState()).filter((s) => s !== undefined)
          if (states.length > 0) this.set({ group: g }, Math.max(...states.map((s) => STATE_VALUE[s])))
        }
      },
    }),
  )
  metric(registry, 'lifeline_consumer_lag', () =>
    new Gauge({
      name: 'lifeline_consumer_lag',
      help: 'Records between the committed position and the high watermark, per partition.',
      labelNames: ['group', 'topic', 'partition'],
      registers,
      collect() {
        this.reset()
        for (const [g, set] of all) for (const s of set) for (const l of s.lag()) this.set({ group: g, topic: l.topic, partition: String(l.partition) }, l.lag)
      },
    }),
  )

  return {
    timed: true,
    processed: (topic) => processed.inc({ group, topic }),
    failed: (topic, code) => failed.inc({ group, topic, error_code: code }),
    retried: (topic, code) => retried.inc({ group, topic, error_code: code }),
    deadLettered: (topic, code) => deadLettered.inc({ group, topic, error_code: code }),
    handlerDuration: (topic, outcome, seconds) => duration.observe({ group, topic, outcome }, seconds),
    breakerTransition: (to) => transitions.inc({ group, to }),
    tierForwarded: (topic, tier) => tierForwarded.inc({ group, topic, tier: String(tier) }),
    dueLag: (tier, seconds) => dueLag.observe({ group, tier: String(tier) }, seconds),
    staleRetry: (topic) => staleRetries.inc({ group, topic }),
    keyParked: (topic) => keysParked.inc({ group, topic }),
    recordParked: (topic) => recordsParked.inc({ group, topic }),
    keyReleased: (topic) => keysReleased.inc({ group, topic }),
    duplicateSkipped: (topic) => duplicates.inc({ group, topic }),
    gap: (topic, policy) => gaps.inc({ group, topic, policy }),
    fenced: (topic) => fenced.inc({ group, topic }),
    straggler: (topic) => stragglers.inc({ group, topic }),
    detach: () => {
      groupSources.delete(sources)
      if (groupSources.size === 0) all.delete(group)
    },
  }
}
