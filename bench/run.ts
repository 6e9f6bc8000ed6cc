/**
 * The benchmark runner: `npm run bench -- <name> [--quick]`.
 *
 * Reuses the broker in `KAFKA_BOOTSTRAP` when set; otherwise starts a fresh one-broker Kafka in a temporary
 * folder, and stops it and removes the folder at the end, on failure and on Ctrl-C too. Writes
 * `bench/results/<name>.json`, regenerates `bench/RESULTS.md`, prints a short summary to stdout.
 * Progress logs go to stderr (`LIFELINE_LOG_LEVEL=warn` silences them).
 *
 * Exit codes: 0 done, 1 the benchmark failed, 2 bad command line (unknown or missing name, unknown flag),
 * 130 interrupted.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { KAFKA_VERSION } from '../src/dev/kafka-jars.js'
import { startKafka, type KafkaCluster } from '../src/dev/kafka-launcher.js'
import { isLifelineError, LifelineError } from '../src/errors.js'
import { BenchError, isBenchError } from './lib/errors.js'
import { clientVersion } from '../src/kafka/index.js'
import { createLogger } from '../src/logger.js'
import { buildRecord, fmt, writeRecord, writeResultsMarkdown } from './lib/results.js'
import type { BenchModule, BenchRecord } from './lib/types.js'

interface BenchEntry {
  /** One line for the usage text. */
  about: string
  load(): Promise<BenchModule>
}

/** Every benchmark: `name: { about, load }`, module in `bench/<name>.ts`. Adding one is one line here. */
const BENCHMARKS = {
  runtime: { about: 'Lifeline no-op consumer vs the raw client; key-ordered concurrency vs partition-sequential', load: () => import('./runtime.js') },
  inbox: { about: 'one PostgreSQL insert per record: plain vs through the inbox (effect-once), on the server and on PGlite', load: () => import('./inbox.js') },
  hol: { about: 'head-of-line blocking: no failures vs 1% poison with retry tiers vs blocking in-place retries', load: () => import('./hol.js') },
  client: { about: 'raw Node client vs Kafka\'s Java perf tools: produce and consume throughput', load: () => import('./client.js') },
  scale: { about: 'scale curves: throughput and memory vs distinct keys, release time vs parked records, throughput vs partitions', load: () => import('./scale.js') },
  'dlq-queries': { about: 'DLQ processor list/group/count query time vs records indexed (10k to 1M), on the PostgreSQL server', load: () => import('./dlq-queries.js') },
  indexer: { about: 'DLQ indexer vs the raw client and one multi-row insert of the same rows per poll batch', load: () => import('./indexer.js') },
  console: { about: 'operator console pages (list, filter, group, record) at 1M dead letters on the PostgreSQL server: p95 ≤ 300 ms', load: () => import('./console.js') },
  redrive: { about: 'DLQ processor: unthrottled bulk redrive vs a raw consume-and-produce copy; indexer throughput; rate-limiter accuracy at 2,000/s', load: () => import('./redrive.js') },
} satisfies Record<string, BenchEntry>

type BenchName = keyof typeof BENCHMARKS

function usage(): string {
  const names = Object.keys(BENCHMARKS).sort() as BenchName[]
  const width = Math.max(...names.map((n) => n.length))
  return [
    'Usage: npm run bench -- <name> [--quick]',
    '',
    'Available benchmarks:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${BENCHMARKS[n].about}`),
    '',
    'Options:',
    '  --quick   a smaller run (under 2 minutes on 2 cores)',
    '',
    'Environment: KAFKA_BOOTSTRAP=host:port reuses a running broker instead of starting one.',
  ].join('\n')
}

interface Args {
  name: BenchName
  quick: boolean
}

function parseArgs(argv: readonly string[]): Args | 'help' {
  let name: string | undefined
  let quick = false
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return 'help'
    else if (arg === '--quick') quick = true
    else if (arg.startsWith('-')) throw new LifelineError('LL_OPTIONS_INVALID', `unknown option ${arg}\n\n${usage()}`, { details: { option: arg } })
    else if (name === undefined) name = arg
    else throw new LifelineError('LL_OPTIONS_INVALID', `one benchmark at a time: got "${name}" and "${arg}"\n\n${usage()}`)
  }
  if (name === undefined) throw new BenchError('BENCH_UNKNOWN', `missing benchmark name\n\n${usage()}`)
  if (!Object.hasOwn(BENCHMARKS, name)) {
    throw new BenchError('BENCH_UNKNOWN', `unknown benchmark "${name}"\n\n${usage()}`, { details: { name } })
  }
  return { name: name as BenchName, quick }
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv)
  if (args === 'help') {
    process.stdout.write(`${usage()}\n`)
    return 0
  }
  const bench = await BENCHMARKS[args.name].load()
  const logger = createLogger({ name: `bench:${args.name}` })
  const abort = new AbortController()
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.warn({ signal: sig }, 'interrupted: stopping the benchmark and the broker')
    abort.abort(new LifelineError('LL_ABORTED', `interrupted by ${sig}`))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  let cluster: KafkaCluster | undefined
  let stateDir: string | undefined
  try {
    const external = process.env.KAFKA_BOOTSTRAP
    let brokers: string[]
    if (external !== undefined && external.trim() !== '') {
      brokers = external.split(',').map((b) => b.trim())
      logger.info({ brokers }, 'reusing the broker in KAFKA_BOOTSTRAP')
    } else {
      stateDir = mkdtempSync(join(tmpdir(), 'lifeline-bench-'))
      cluster = await startKafka({ brokers: 1, stateDir, fresh: true, logger })
      brokers = cluster.brokers
    }
    if (abort.signal.aborted) throw abort.signal.reason

    const started = performance.now()
    const result = await bench.run({ brokers, quick: args.quick, signal: abort.signal, logger })
    const benchWallMs = performance.now() - started

    const kafka: BenchRecord['kafka'] = cluster
      ? { broker: 'started', broker_version: cluster.version, client_version: clientVersion() }
      : { broker: 'external', broker_version: process.env.KAFKA_VERSION ?? `unknown (external; the launcher would run ${KAFKA_VERSION})`, client_version: clientVersion() }
    const record = buildRecord(result, {
      name: args.name,
      quick: args.quick,
      date: new Date(),
      kafka,
      brokerStartupMs: cluster?.startupMs ?? null,
      benchWallMs,
      // Since this process started: Node and tsx start-up, broker start-up and the benchmark.
      totalWallMs: performance.now(),
    })
    const file = writeRecord(record)
    writeResultsMarkdown()

    const lines = [
      ...result.summary,
      `  ratio ${record.headline.metric} / ${record.headline.baseline_metric} = ${fmt(record.ratio)} (${record.goal})`,
      `  broker: ${cluster ? `started in ${fmt(cluster.startupMs)} ms` : 'external (KAFKA_BOOTSTRAP)'}; benchmark ${fmt(record.bench_wall_ms)} ms; total ${fmt(record.total_wall_ms)} ms`,
      `  wrote ${relative(process.cwd(), file)} and bench/RESULTS.md`,
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
    return 0
  } finally {
    // Every step runs even if one fails.
    if (cluster) {
      try {
        await cluster.close()
      } catch (err) {
        logger.error({ err }, 'stopping the benchmark broker failed')
      }
    }
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true })
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    const usageError = isBenchError(err, 'BENCH_UNKNOWN') || isLifelineError(err, 'LL_OPTIONS_INVALID')
    const aborted = isLifelineError(err, 'LL_ABORTED')
    const code = isLifelineError(err) || isBenchError(err) ? `${err.code}: ` : ''
    process.stderr.write(`bench: ${code}${err instanceof Error ? err.message : String(err)}\n`)
    if (!usageError && !aborted && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`)
    process.exitCode = usageError ? 2 : aborted ? 130 : 1
  },
)
