/**
 * The consumer's Prometheus metrics, registered in a registry the user passes in (never the global one).
 * Several consumers may share a registry: a metric already registered under the same name is reused, and
 * every series carries the consumer `group`. Documented in docs/metrics.md.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface RuntimeMetricsSources {
  inFlight(): number
  buffered(): number
  pausedPartitions(): number
  /** The circuit breaker's state, when the consumer has one. */
  breakerState(): 'closed' | 'open' | 'half-open' | undefined
  /** Per assigned partition: high watermark − committed position (undefined when unknown). */
  lag(): Array<{ topic: string; partition: number; lag: number }>
}

export interface RuntimeMetrics {
  processed(topic: string): void
  failed(topic: string, code: string): void
  retried(topic: string, code: string): void
  deadLettered(topic: string, code: string): void
  handlerDuration(topic: string, outcome: 'success' | 'failure', seconds: number): void
  breakerTransition(to: 'closed' | 'open' | 'half-open'): void
  /** Removes this consumer's sources from the gauges (close()). */
  detach(): void
}

function reuse<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

/** Gauges sum the sources of every consumer that registered under one group label. */
const gaugeSources = new WeakMap<object, Map<string, Set<RuntimeMetricsSources>>>()

export function createRuntimeMetrics(registry: Registry | undefined, group: string, sources: RuntimeMetricsSources): RuntimeMetrics {
  if (!registry) {
    const noop = () => undefined
    return { processed: noop, failed: noop, retried: noop, deadLettered: noop, handlerDuration: noop, breakerTransition: noop, detach: noop }
  }
  const registers = [registry]
  const processed = reuse(registry, 'lifeline_records_processed_total', () => new Counter({ name: 'lifeline_records_processed_total', help: 'Records whose handler succeeded.', labelNames: ['group', 'topic'], registers }))
  const failed = reuse(registry, 'lifeline_records_failed_total', () => new Counter({ name: 'lifeline_records_failed_total', help: 'Failed handler attempts (each attempt counts), by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const retried = reuse(registry, 'lifeline_records_retried_total', () => new Counter({ name: 'lifeline_records_retried_total', help: 'Retries scheduled after a failed attempt, by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const deadLettered = reuse(registry, 'lifeline_records_dead_lettered_total', () => new Counter({ name: 'lifeline_records_dead_lettered_total', help: 'Records written to a dead-letter topic, by error code.', labelNames: ['group', 'topic', 'error_code'], registers }))
  const duration = reuse(registry, 'lifeline_handler_duration_seconds', () => new Histogram({ name: 'lifeline_handler_duration_seconds', help: 'Handler attempt duration.', labelNames: ['group', 'topic', 'outcome'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }))

  const transitions = reuse(registry, 'lifeline_circuit_transitions_total', () => new Counter({ name: 'lifeline_circuit_transitions_total', help: 'Circuit breaker state changes, by the state entered.', labelNames: ['group', 'to'], registers }))

  let byGroup = gaugeSources.get(registry)
  if (!byGroup) gaugeSources.set(registry, (byGroup = new Map()))
  const all = byGroup
  const groupSources = all.get(group) ?? new Set<RuntimeMetricsSources>()
  all.set(group, groupSources)
  groupSources.add(sources)

  const sumGauge = (name: string, help: string, read: (s: RuntimeMetricsSources) => number) =>
    reuse(registry, name, () =>
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
  const STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const
  reuse(registry, 'lifeline_circuit_state', () =>
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
  reuse(registry, 'lifeline_consumer_lag', () =>
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
    processed: (topic) => processed.inc({ group, topic }),
    failed: (topic, code) => failed.inc({ group, topic, error_code: code }),
    retried: (topic, code) => retried.inc({ group, topic, error_code: code }),
    deadLettered: (topic, code) => deadLettered.inc({ group, topic, error_code: code }),
    handlerDuration: (topic, outcome, seconds) => duration.observe({ group, topic, outcome }, seconds),
    breakerTransition: (to) => transitions.inc({ group, to }),
    detach: () => {
      groupSources.delete(sources)
      if (groupSources.size === 0) all.delete(group)
    },
  }
}
