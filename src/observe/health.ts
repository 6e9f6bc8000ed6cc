/**
 * Liveness and readiness of a consumer, judged from its public surface only: `stats()` (with `lastPollAt`,
 * the time its poll loop last got an answer) and the events that mean a record finished or moved on.
 *
 * - **live**: the poll loop answered within `pollTimeoutMs` (before the first poll: counted from when the
 *   watch started). A dead loop never recovers on its own: restart the process.
 * - **stalled**: records are waiting (in flight or buffered) and none finished, retried, moved to a tier or
 *   the DLQ, was parked or skipped for `stallTimeoutMs`. Idle is never stalled.
 * - **ready**: live, at least one partition assigned, not stalled.
 *
 * {@link judgeHealth} is the pure core; {@link watchConsumerHealth} feeds it and (given a registry) exports
 * `lifeline_consumer_last_poll_age_seconds`, `lifeline_consumer_stalled` and `lifeline_consumer_ready`.
 * Documented in docs/metrics.md#health-endpoints.
 *
 * @module
 * @example
 * const health = watchConsumerHealth({ consumer, group: 'billing', registry })
 * health.check() // { live: true, ready: false, reasons: ['no partition assigned'], ... }
 * await health.close()
 */
import { Gauge, type Registry } from 'prom-client'
import { LifelineError } from '../errors.js'
import type { LifelineConsumer } from '../runtime/consumer.js'
import type { ConsumerEvents } from '../runtime/options.js'
import { metric } from '../util/metric.js'

/** What the consumer looks like from outside: its counters and its events. */
export type WatchedConsumer = Pick<LifelineConsumer, 'stats' | 'on' | 'off'>

export interface HealthLimits {
  /** The poll loop is dead when no poll answered for this long, ms (default 30000; a healthy loop polls every ~100 ms). */
  pollTimeoutMs: number
  /** Stalled when records wait and none finished for this long, ms (default 60000). */
  stallTimeoutMs: number
}

export const healthDefaults = { pollTimeoutMs: 30_000, stallTimeoutMs: 60_000, sampleMs: 1000 } as const satisfies HealthLimits & Record<string, number>

/** What {@link judgeHealth} needs to know, all times in ms since the epoch. */
export interface HealthInput {
  now: number
  /** When the watch started (stands for the last poll until the first one). */
  watchingSince: number
  lastPollAt: number | undefined
  /** The last progress event, or the last time nothing was waiting. */
  lastProgressAt: number
  assigned: number
  inFlight: number
  buffered: number
}

export interface HealthReport {
  live: boolean
  ready: boolean
  stalled: boolean
  /** Why not live or not ready (empty when both hold). */
  reasons: string[]
  /** ms since the poll loop last answered (since the watch started, before the first poll). */
  pollAgeMs: number
  /** ms since the last progress while records wait (0 when nothing waits). */
  stalledForMs: number
  assigned: number
  inFlight: number
  buffered: number
}

/** The pure judgement: live, stalled, ready, and why. */
export function judgeHealth(input: HealthInput, limits: HealthLimits): HealthReport {
  const pollAgeMs = Math.max(0, input.now - (input.lastPollAt ?? input.watchingSince))
  const waiting = input.inFlight + input.buffered > 0
  const stalledForMs = waiting ? Math.max(0, input.now - input.lastProgressAt) : 0
  const live = pollAgeMs <= limits.pollTimeoutMs
  const stalled = waiting && stalledForMs > limits.stallTimeoutMs
  const reasons: string[] = []
  if (!live) reasons.push(input.lastPollAt === undefined ? `no poll yet after ${pollAgeMs} ms` : `no poll for ${pollAgeMs} ms`)
  if (input.assigned === 0) reasons.push('no partition assigned')
  if (stalled) reasons.push(`stalled: ${input.inFlight + input.buffered} record(s) waiting, none finished for ${stalledForMs} ms`)
  return { live, ready: live && input.assigned > 0 && !stalled, stalled, reasons, pollAgeMs, stalledForMs, assigned: input.assigned, inFlight: input.inFlight, buffered: input.buffered }
}

export interface ConsumerHealthOptions extends Partial<HealthLimits> {
  consumer: WatchedConsumer
  /** The consumer's `groupId`: the `group` label of the health series, so they join the runtime's. */
  group: string
  /** Where the health gauges go (none without). */
  registry?: Registry
  /** How often an idle consumer is noticed (resets the stall clock), ms (default 1000). */
  sampleMs?: number
}

export interface ConsumerHealth {
  check(): HealthReport
  /** Stops watching (listeners, timer, gauges). Idempotent; never closes the consumer. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** The events that mean a record got somewhere: finished, retried, moved to a tier or the DLQ, parked, skipped. */
const PROGRESS_EVENTS = ['processed', 'retry', 'dead-letter', 'retry-tier', 'record-parked', 'duplicate', 'released', 'commit'] as const satisfies ReadonlyArray<keyof ConsumerEvents>

/** Gauges read every health of a group that registered in a registry (max age, any stalled, all ready). */
const healthSources = new WeakMap<Registry, Map<string, Set<ConsumerHealth>>>()

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: health.${name}: must be a positive integer (ms), got ${String(value)}`)
  return value
}

function registerGauges(registry: Registry): Map<string, Set<ConsumerHealth>> {
  let byGroup = healthSources.get(registry)
  if (byGroup) return byGroup
  const all = new Map<string, Set<ConsumerHealth>>()
  healthSources.set(registry, (byGroup = all))
  const gauge = (name: string, help: string, fold: (reports: HealthReport[]) => number) =>
    metric(registry, name, () => new Gauge({
      name,
      help,
      labelNames: ['group'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [group, set] of all) if (set.size > 0) this.set({ group }, fold([...set].map((h) => h.check())))
      },
    }))
  gauge('lifeline_consumer_last_poll_age_seconds', "Seconds since the consumer's poll loop last got an answer from the Kafka client (the oldest of the group's consumers in this process).", (rs) => Math.max(...rs.map((r) => r.pollAgeMs)) / 1000)
  gauge('lifeline_consumer_stalled', '1 when records wait and none finished for stallTimeoutMs (any consumer of the group in this process), else 0.', (rs) => (rs.some((r) => r.stalled) ? 1 : 0))
  gauge('lifeline_consumer_ready', '1 when every consumer of the group in this process is live, assigned and not stalled (/readyz), else 0.', (rs) => (rs.every((r) => r.ready) ? 1 : 0))
  return all
}

/** Starts watching a consumer. Start it before or after `consumer.start()`; the poll clock starts now. */
export function watchConsumerHealth(options: ConsumerHealthOptions): ConsumerHealth {
  const consumer = options.consumer
  if (typeof consumer?.stats !== 'function' || typeof consumer.on !== 'function') throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: health.consumer: must be a Lifeline consumer (createConsumer)')
  if (typeof options.group !== 'string' || options.group === '') throw new LifelineError('LL_OPTIONS_INVALID', "invalid options: health.group: give the consumer's groupId (the group label of the health series)")
  const limits: HealthLimits = {
    pollTimeoutMs: positiveInt('pollTimeoutMs', options.pollTimeoutMs, healthDefaults.pollTimeoutMs),
    stallTimeoutMs: positiveInt('stallTimeoutMs', options.stallTimeoutMs, healthDefaults.stallTimeoutMs),
  }
  const sampleMs = positiveInt('sampleMs', options.sampleMs, healthDefaults.sampleMs)
  const watchingSince = Date.now()
  let lastProgressAt = watchingSince
  const progressed = () => {
    lastProgressAt = Date.now()
  }
  for (const event of PROGRESS_EVENTS) consumer.on(event, progressed)
  // An idle consumer resets the stall clock, so a burst after a quiet hour is not "stalled" at once.
  const sampler = setInterval(() => {
    const s = consumer.stats()
    if (s.inFlight + s.buffered === 0) lastProgressAt = Date.now()
  }, sampleMs)
  sampler.unref()

  let closing: Promise<void> | undefined
  const health: ConsumerHealth = {
    check() {
      const s = consumer.stats()
      return judgeHealth({ now: Date.now(), watchingSince, lastPollAt: s.lastPollAt, lastProgressAt, assigned: s.assigned.length, inFlight: s.inFlight, buffered: s.buffered }, limits)
    },
    close() {
      closing ??= (async () => {
        clearInterval(sampler)
        for (const event of PROGRESS_EVENTS) consumer.off(event, progressed)
        if (sources) {
          sources.delete(health)
          if (sources.size === 0) groups?.delete(options.group)
        }
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return this.close()
    },
  }
  const groups = options.registry ? registerGauges(options.registry) : undefined
  let sources: Set<ConsumerHealth> | undefined
  if (groups) {
    sources = groups.get(options.group) ?? new Set()
    groups.set(options.group, sources)
    sources.add(health)
  }
  return health
}
