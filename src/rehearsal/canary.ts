/**
 * Canary mode (`lifeline rehearse --canary`): a small workload against an existing cluster (staging), at
 * a low rate, in rounds of a minute, each round checked as a full rehearsal without faults (poison,
 * duplicates and reordering still flow, and the operator phase redrives the DLQ). The checker's counts are
 * exported as Prometheus metrics, so an anomaly pages someone like any other alert. Runs until stopped.
 *
 * Metrics (prom-client, on `http://0.0.0.0:<metricsPort>/metrics`):
 * `lifeline_rehearsal_rounds_total{valid}`, `lifeline_rehearsal_anomalies_total{kind}`,
 * `lifeline_rehearsal_events_total{outcome}`, `lifeline_rehearsal_last_round_valid`,
 * `lifeline_rehearsal_last_round_timestamp_seconds`, `lifeline_rehearsal_drain_seconds`,
 * `lifeline_rehearsal_longest_stall_seconds`.
 *
 * @module
 */
import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Registry } from 'prom-client'
import type { Logger } from '../logger.js'
import { BAD_KINDS } from './checker.js'
import { openEnvironment } from './environment.js'
import { writeRunReport } from './report.js'
import { runRehearsal, type RunResult } from './run.js'

export interface CanaryOptions {
  brokers: string[]
  /** Events per second. */
  rate: number
  /** Port of the metrics endpoint (0: any free port). */
  metricsPort: number
  consumer?: string
  consumers: number
  partitions: number
  raw: string
  /** Seconds of production per round (default 60). */
  roundSeconds?: number
  /** Results folder for each round's report (default rehearsal/results/canary). */
  outDir?: string
  logger: Logger
  signal: AbortSignal
  print(line: string): void
  /** Called after each round (tests). */
  onRound?(result: RunResult): void
}

export function canaryMetrics(registry: Registry) {
  return {
    rounds: new Counter({ name: 'lifeline_rehearsal_rounds_total', help: 'Canary rounds checked, by verdict.', labelNames: ['valid'], registers: [registry] }),
    anomalies: new Counter({ name: 'lifeline_rehearsal_anomalies_total', help: 'Bad anomalies found by the rehearsal checker, by kind.', labelNames: ['kind'], registers: [registry] }),
    events: new Counter({ name: 'lifeline_rehearsal_events_total', help: 'Canary events by outcome (applied, dead-lettered, lost, ...).', labelNames: ['outcome'], registers: [registry] }),
    lastValid: new Gauge({ name: 'lifeline_rehearsal_last_round_valid', help: '1 when the last canary round had no bad anomaly, else 0.', registers: [registry] }),
    lastAt: new Gauge({ name: 'lifeline_rehearsal_last_round_timestamp_seconds', help: 'When the last canary round was checked (Unix seconds).', registers: [registry] }),
    drain: new Gauge({ name: 'lifeline_rehearsal_drain_seconds', help: 'Last round: time for the backlog to drain after production ended.', registers: [registry] }),
    stall: new Gauge({ name: 'lifeline_rehearsal_longest_stall_seconds', help: 'Last round: the longest an event waited from acknowledgement to its effect.', registers: [registry] }),
  }
}

/** Records one checked round in the metrics. */
export function recordRound(metrics: ReturnType<typeof canaryMetrics>, result: RunResult): void {
  metrics.rounds.inc({ valid: String(result.check.valid) })
  for (const kind of BAD_KINDS) metrics.anomalies.inc({ kind }, result.check.anomalies[kind].count)
  for (const [name, n] of Object.entries(result.check.counts)) if (name.startsWith('outcome.')) metrics.events.inc({ outcome: name.slice('outcome.'.length) }, n)
  metrics.lastValid.set(result.check.valid ? 1 : 0)
  metrics.lastAt.set(Math.floor(result.endedAt / 1000))
  metrics.drain.set(result.check.liveness.drainMs / 1000)
  metrics.stall.set((result.check.liveness.longestStall?.ms ?? 0) / 1000)
}

/** Runs canary rounds until `signal` aborts; resolves with the rounds run. */
export async function runCanary(options: CanaryOptions): Promise<RunResult[]> {
  const registry = new Registry()
  const metrics = canaryMetrics(registry)
  for (const kind of BAD_KINDS) metrics.anomalies.inc({ kind }, 0)
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    void registry.metrics().then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
  })
  await new Promise<void>((resolve) => server.listen(options.metricsPort, resolve))
  options.print(`canary metrics on http://127.0.0.1:${(server.address() as { port: number }).port}/metrics`)
  const env = await openEnvironment({ brokers: 1, bootstrap: options.brokers, logger: options.logger })
  const rounds: RunResult[] = []
  const seconds = options.roundSeconds ?? 60
  try {
    for (let round = 0; !options.signal.aborted; round++) {
      const events = Math.max(10, Math.round(options.rate * seconds * 0.8))
      const result = await runRehearsal(env, {
        seconds,
        events,
        keys: Math.max(5, Math.round(events / 10)),
        consumers: options.consumers,
        partitions: options.partitions,
        faults: [],
        periodMs: seconds * 1000,
        seed: Date.now() % 1_000_000,
        sessionTimeoutMs: 10_000,
        commitIntervalMs: 1000,
        retryDelaysMs: [1000, 3000],
        drainTimeoutMs: 120_000,
        rawDir: options.raw,
        ...(options.consumer ? { consumer: options.consumer } : {}),
        logger: options.logger,
        signal: options.signal,
      })
      // A round cut short by Ctrl-C did not finish its operator phase: its verdict would be noise.
      if (options.signal.aborted) break
      rounds.push(result)
      recordRound(metrics, result)
      const files = writeRunReport(options.outDir ?? 'rehearsal/results/canary', result)
      options.print(`${new Date().toISOString()} canary round ${round + 1}: ${result.check.valid ? 'ok' : 'ANOMALIES'} (${result.check.bad} bad, ${result.check.counts['outcome.applied']} applied) ${files.json}`)
      options.onRound?.(result)
    }
  } finally {
    await env.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return rounds
}
