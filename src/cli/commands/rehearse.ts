/**
 * `lifeline rehearse`: failure rehearsal of a consumer (docs/rehearsal.md). Exit code 1 when any run
 * has a bad anomaly.
 */
import { join } from 'node:path'
import type { Command } from 'commander'
import { LifelineError } from '../../errors.js'
import { createLogger } from '../../logger.js'
import { runCampaign } from '../../rehearsal/campaign.js'
import { check } from '../../rehearsal/checker.js'
import { loadConsumerFactory } from '../../rehearsal/contract.js'
import { loadHistory } from '../../rehearsal/recheck.js'
import { runCanary } from '../../rehearsal/canary.js'
import { parseFaults } from '../../rehearsal/nemesis.js'
import type { Progress } from '../../rehearsal/run.js'
import { brokersOption } from './common.js'

interface Opts {
  consumer?: string
  ci?: boolean
  canary?: boolean
  runs: string
  minutes?: string
  seconds?: string
  events?: string
  keys?: string
  consumers: string
  partitions: string
  brokers: string
  bootstrap?: string
  faults?: string
  period?: string
  seed?: string
  sessionTimeoutMs: string
  out: string
  raw: string
  rate: string
  metricsPort: string
  quiet?: boolean
  recheck?: string
}

function int(value: string | undefined, name: string, min = 1): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) throw new LifelineError('LL_REHEARSAL', `--${name} must be an integer >= ${min}, got ${value}`)
  return n
}

function progressLine(p: Progress): string {
  const lag = p.lag === undefined ? '?' : String(p.lag)
  const parked = p.parked === undefined ? '?' : String(p.parked)
  return `[${p.phase.padEnd(8)}] ${String(p.elapsedS).padStart(4)}s  produced ${p.produced}/${p.planned}  applied ${p.applied}  lag ${lag}  parked keys ${parked}  fault: ${p.fault ?? '-'}`
}

export function registerRehearse(program: Command): void {
  program
    .command('rehearse')
    .description('failure rehearsal: run a consumer group under injected faults and check nothing was lost, applied twice or reordered')
    .option('--consumer <module>', 'your consumer module (default: the built-in reference consumer); see docs/rehearsal.md')
    .option('--ci', 'the short CI rehearsal: 1 broker, ~90 s, consumer kills, crash points, rebalances, poison, duplicates, reordering')
    .option('--canary', 'keep a small workload running against --bootstrap, check continuously, export Prometheus metrics')
    .option('--runs <n>', 'rehearsals in the campaign', '1')
    .option('--minutes <m>', 'fault period of each run, minutes')
    .option('--seconds <s>', 'fault period of each run, seconds (default 120)')
    .option('--events <n>', 'events per run (default: 420 per second of production: 100,800 in 5 minutes)')
    .option('--keys <n>', 'keys (default: events / 20)')
    .option('--consumers <n>', 'members of the group', '3')
    .option('--partitions <n>', 'partitions of the topic', '6')
    .option('--brokers <n>', '1 or 3 brokers started by the harness', '1')
    .option('--bootstrap <list>', 'run against an existing cluster (consumer-side faults only)')
    .option('--faults <list>', 'fault kinds or groups: consumer, broker, database, network, all, none, or kinds (kill, crash-point, pause, scale, broker-kill, broker-kill-all, broker-restart, postgres, partition, latency)')
    .option('--period <s>', 'seconds per fault period (default 30)')
    .option('--seed <n>', 'random seed (default: from the clock); the same seed gives the same workload and schedule')
    .option('--session-timeout-ms <ms>', 'consumers\' session timeout', '6000')
    .option('--out <dir>', 'results folder (JSON + HTML per run)', 'rehearsal/results')
    .option('--raw <dir>', 'raw logs folder (produce log, member logs)', '.lifeline/rehearsal')
    .option('--rate <n>', 'canary: events per second', '5')
    .option('--metrics-port <port>', 'canary: Prometheus metrics port', '9464')
    .option('--quiet', 'no live progress')
    .option('--recheck <dir>', "run the checker again on a run's raw logs (its folder under --raw) and print the verdict")
    .action(async (opts: Opts) => {
      const controller = new AbortController()
      const stop = () => controller.abort()
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      const logger = createLogger({ name: 'rehearse', level: process.env.LIFELINE_LOG_LEVEL ?? 'warn' })
      const print = (line: string) => process.stdout.write(`${line}\n`)
      let lastProgress = 0
      const progress = (p: Progress) => {
        if (opts.quiet || Date.now() - lastProgress < 2000) return
        lastProgress = Date.now()
        process.stderr.write(`${progressLine(p)}\n`)
      }
      if (opts.recheck !== undefined) {
        const result = check(loadHistory(opts.recheck))
        print(JSON.stringify({ valid: result.valid, bad: result.bad, anomalies: Object.fromEntries(Object.entries(result.anomalies).filter(([, a]) => a.count > 0)), counts: result.counts, liveness: result.liveness }, null, 2))
        if (!result.valid) process.exitCode = 1
        return
      }
      if (opts.canary) {
        const bootstrap = brokersOption(opts.bootstrap)
        await runCanary({ brokers: bootstrap, rate: int(opts.rate, 'rate')!, metricsPort: int(opts.metricsPort, 'metrics-port', 0)!, consumer: opts.consumer, consumers: int(opts.consumers, 'consumers')!, partitions: int(opts.partitions, 'partitions')!, raw: opts.raw, outDir: join(opts.out, 'canary'), logger, signal: controller.signal, print })
        return
      }
      // A module that does not follow the contract fails now, before a broker is started.
      if (opts.consumer !== undefined) await loadConsumerFactory(opts.consumer)
      const ci = opts.ci === true
      const seconds = int(opts.seconds, 'seconds') ?? (opts.minutes === undefined ? undefined : Math.round(Number(opts.minutes) * 60)) ?? (ci ? 48 : 120)
      if (!(seconds >= 10)) throw new LifelineError('LL_REHEARSAL', `the fault period must be at least 10 s, got ${seconds}`)
      const events = int(opts.events, 'events') ?? (ci ? 3000 : Math.round(seconds * 0.8 * 420))
      const brokers = ci ? 1 : int(opts.brokers, 'brokers')
      if (brokers !== 1 && brokers !== 3) throw new LifelineError('LL_REHEARSAL', `--brokers must be 1 or 3, got ${opts.brokers}`)
      const result = await runCampaign({
        runs: int(opts.runs, 'runs')!,
        seed: int(opts.seed, 'seed', 0) ?? Date.now() % 1_000_000,
        brokers,
        ...(opts.bootstrap ? { bootstrap: brokersOption(opts.bootstrap) } : {}),
        outDir: opts.out,
        rawDir: opts.raw,
        ...(opts.consumer ? { consumer: opts.consumer } : {}),
        seconds,
        events,
        keys: int(opts.keys, 'keys') ?? Math.max(10, Math.round(events / 20)),
        consumers: int(opts.consumers, 'consumers')!,
        partitions: int(opts.partitions, 'partitions')!,
        faults: parseFaults(opts.faults ?? (ci ? 'ci' : 'consumer')),
        periodMs: (int(opts.period, 'period') ?? (ci ? 12 : 30)) * 1000,
        ...(ci ? { quiet: 0 } : {}),
        sessionTimeoutMs: int(opts.sessionTimeoutMs, 'session-timeout-ms', 1000)!,
        commitIntervalMs: 500,
        retryDelaysMs: [1000, 3000],
        drainTimeoutMs: Math.max(180_000, seconds * 1000),
        logger,
        signal: controller.signal,
        progress,
        onRun: (r, files) => {
          print(`${r.check.valid ? 'PASS' : 'FAIL'} ${r.run} (seed ${r.seed}): ${r.check.bad} bad anomalies; ${files.html}`)
          for (const s of r.skipped) print(`  skipped ${s.kind}: ${s.reason}`)
        },
      })
      print(result.headline)
      print(`summary: ${result.summary}`)
      if (result.results.some((r) => !r.check.valid) || result.results.length === 0) process.exitCode = 1
      if (controller.signal.aborted) exitAfterInterrupt(result.results.length)
    })
}

/**
 * After Ctrl-C the campaign has closed its brokers, database and members and written its summary; if
 * something still keeps the event loop alive a few seconds later, say what it is and exit anyway (130, as
 * for an interrupted command) rather than leave the terminal hanging.
 */
function exitAfterInterrupt(finishedRuns: number): void {
  process.stderr.write(`interrupted: ${finishedRuns} run(s) finished before the signal\n`)
  process.exitCode = 130
  setTimeout(() => {
    process.stderr.write(`rehearse: still open after the interrupt (${process.getActiveResourcesInfo().join(', ')}); exiting\n`)
    process.exit()
  }, 5000).unref()
}
