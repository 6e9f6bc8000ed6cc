/**
 * Kafka's own Java perf tools (`ProducerPerformance`, `ConsumerPerformance` from kafka-tools), run on
 * the jars the local launcher resolved, and pure parsers for their summary output.
 *
 * @module
 */
import { spawn } from 'node:child_process'
import { LifelineError } from '../../src/errors.js'
import { BenchError } from './errors.js'
import { javaCommand, resolveKafkaJars } from '../../src/dev/kafka-jars.js'

export const PRODUCER_PERFORMANCE = 'org.apache.kafka.tools.ProducerPerformance'
export const CONSUMER_PERFORMANCE = 'org.apache.kafka.tools.ConsumerPerformance'

export interface JavaRun {
  stdout: string
  stderr: string
  /** Spawn to exit, ms: includes JVM start-up, which the tools' own figures exclude. */
  wallMs: number
}

export interface JavaRunOptions {
  heapMb?: number
  timeoutMs?: number
  signal?: AbortSignal
}

/** Runs `java -Xmx<heap>m -cp <kafka jars> <mainClass> <args>`; rejects on a non-zero exit or timeout. */
export async function runJavaTool(mainClass: string, args: readonly string[], options: JavaRunOptions = {}): Promise<JavaRun> {
  const { classpath } = await resolveKafkaJars()
  const heapMb = options.heapMb ?? 512
  const timeoutMs = options.timeoutMs ?? 300_000
  const started = performance.now()
  const child = spawn(javaCommand(), [`-Xmx${heapMb}m`, '-cp', classpath, mainClass, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    signal: options.signal,
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => stdout.push(b))
  child.stderr.on('data', (b: Buffer) => stderr.push(b))
  const short = mainClass.split('.').pop() ?? mainClass
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', (err) =>
      reject(err.name === 'AbortError' ? new LifelineError('LL_ABORTED', `${short} could not run: ${err.message}`, { cause: err }) : new BenchError('BENCH_FAILED', `${short} could not run: ${err.message}`, { cause: err })),
    )
    child.on('close', (c, s) => resolve({ code: c, signal: s }))
  })
  const run: JavaRun = { stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), wallMs: performance.now() - started }
  if (code !== 0) {
    const why = signal !== null ? `was killed by ${signal}${performance.now() - started >= timeoutMs ? ` after the ${timeoutMs} ms timeout` : ''}` : `exited with code ${code}`
    throw new BenchError('BENCH_FAILED', `${short} ${why}. Output tail:\n${tail(run.stdout + run.stderr, 20)}`)
  }
  return run
}

/** One summary line of ProducerPerformance. Latencies are per record, send() to its callback. */
export interface ProducerSummary {
  records: number
  recordsPerSec: number
  /** MB = 2^20 bytes, as the tool computes it. */
  mbPerSec: number
  avgLatencyMs: number
  maxLatencyMs: number
  p50Ms: number
  p95Ms: number
  p99Ms: number
  p999Ms: number
}

const PRODUCER_LINE =
  /^(\d+) (steady state )?records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th\.?\s*$/

/**
 * Parses ProducerPerformance's final summary ("N records sent, X records/sec (Y MB/sec), A ms avg latency,
 * M ms max latency, p50 ms 50th, ...") and, with `--warmup-records`, the steady-state line after it.
 * Progress lines (every 5 s) lack the percentiles and are skipped.
 */
export function parseProducerPerformance(output: string): { total: ProducerSummary; steady: ProducerSummary | null } {
  let total: ProducerSummary | null = null
  let steady: ProducerSummary | null = null
  for (const line of output.split('\n')) {
    const m = PRODUCER_LINE.exec(line.trim())
    if (!m) continue
    const summary: ProducerSummary = {
      records: Number(m[1]),
      recordsPerSec: Number(m[3]),
      mbPerSec: Number(m[4]),
      avgLatencyMs: Number(m[5]),
      maxLatencyMs: Number(m[6]),
      p50Ms: Number(m[7]),
      p95Ms: Number(m[8]),
      p99Ms: Number(m[9]),
      p999Ms: Number(m[10]),
    }
    if (m[2] === undefined) total = summary
    else steady = summary
  }
  if (total === null) {
    throw new BenchError('BENCH_FAILED', `no final summary line in ProducerPerformance output:\n${tail(output, 20)}`)
  }
  return { total, steady }
}

/** ConsumerPerformance's CSV result, by column name. */
export interface ConsumerSummary {
  /** data.consumed.in.nMsg */
  records: number
  /** data.consumed.in.MB (2^20 bytes of keys + values) */
  mb: number
  /** nMsg.sec: over the whole run, group join included */
  recordsPerSec: number
  /** MB.sec: over the whole run */
  mbPerSec: number
  /** rebalance.time.ms: from start until partitions were assigned */
  rebalanceMs: number
  /** fetch.time.ms: the run minus the rebalance */
  fetchMs: number
  /** fetch.nMsg.sec: records / fetch time */
  fetchRecordsPerSec: number
  /** fetch.MB.sec */
  fetchMbPerSec: number
}

const CONSUMER_COLUMNS = {
  records: 'data.consumed.in.nMsg',
  mb: 'data.consumed.in.MB',
  recordsPerSec: 'nMsg.sec',
  mbPerSec: 'MB.sec',
  rebalanceMs: 'rebalance.time.ms',
  fetchMs: 'fetch.time.ms',
  fetchRecordsPerSec: 'fetch.nMsg.sec',
  fetchMbPerSec: 'fetch.MB.sec',
} as const satisfies Record<keyof ConsumerSummary, string>

/**
 * Parses ConsumerPerformance's header line (`start.time, end.time, data.consumed.in.MB, MB.sec, ...`) and the
 * data line after it, matching columns by name so a reordered or extended header still parses.
 */
export function parseConsumerPerformance(output: string): ConsumerSummary {
  const lines = output.split('\n').map((l) => l.trim())
  const headerAt = lines.findIndex((l) => l.startsWith('start.time,'))
  const data = headerAt >= 0 ? lines.slice(headerAt + 1).find((l) => l.length > 0) : undefined
  if (headerAt < 0 || data === undefined) {
    throw new BenchError('BENCH_FAILED', `no result line in ConsumerPerformance output:\n${tail(output, 20)}`)
  }
  const header = lines[headerAt]!.split(',').map((c) => c.trim())
  const values = data.split(',').map((c) => c.trim())
  const pick = (column: string): number => {
    const i = header.indexOf(column)
    const n = i >= 0 ? Number(values[i]) : Number.NaN
    if (!Number.isFinite(n)) throw new BenchError('BENCH_FAILED', `ConsumerPerformance column ${column} missing or not a number in:\n${lines[headerAt]}\n${data}`)
    return n
  }
  const out = {} as ConsumerSummary
  for (const [key, column] of Object.entries(CONSUMER_COLUMNS) as Array<[keyof ConsumerSummary, string]>) out[key] = pick(column)
  return out
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}
