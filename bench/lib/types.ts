/**
 * The contract between `bench/run.ts` and each benchmark module (`bench/<name>.ts`).
 *
 * @module
 */
import type { Logger } from '../../src/logger.js'
import type { Curve } from './charts.js'

/** What the runner hands every benchmark. */
export interface BenchContext {
  /** Bootstrap brokers, `host:port` (the runner's own broker, or `KAFKA_BOOTSTRAP`). */
  brokers: string[]
  /** `--quick`: a smaller run that must finish in under 2 minutes on a 2-core machine. */
  quick: boolean
  /** Fired on SIGINT/SIGTERM: benchmarks stop waiting and kill the tools they spawned. */
  signal: AbortSignal
  /** Progress logs (stderr); stdout is left for the final human summary. */
  logger: Logger
}

/** A metric value: numbers for figures, strings for labels, null when not measured. */
export type MetricValue = number | string | null

/** What a benchmark returns; the runner adds the environment (machine, versions, date) and writes it. */
export interface BenchResult {
  /** Inputs that shape the numbers: counts, sizes, client settings, method notes. */
  params: Record<string, MetricValue | boolean>
  /** Everything measured, flat, snake_case, unit in the name (`_rps`, `_ms`, `_mb_s`). */
  metrics: Record<string, MetricValue>
  /** The reference figures measured in the same run, each also present in `metrics`. */
  baseline: Record<string, number>
  /**
   * The headline: `metric` (a key of `metrics`) compared with `baseline` (a key of `baseline`);
   * the runner computes `ratio = metrics[metric] / baseline[baseline]`.
   */
  headline: { metric: string; baseline: string }
  /** The goal, in words (e.g. "ratio ≥ 0.9" or "informational: ..."). */
  goal: string
  /** Pass/fail bounds on the ratio; omitted for an informational benchmark (then `met` is null). */
  target?: { minRatio?: number; maxRatio?: number }
  /**
   * Further goals of the same run besides the headline: each compares `metric` with a bound, or the
   * ratio `metric / baseline` (a key of `metrics`) with it when `baseline` is given.
   */
  checks?: BenchCheck[]
  /** Scale curves: drawn as `bench/charts/<name>-<id>.svg` and tabled in RESULTS.md. */
  curves?: Curve[]
  /** A few lines for people, printed to stdout at the end (not stored). */
  summary: string[]
}

/** A further goal: `metric` (or `metric / baseline`) within `[min, max]`. */
export interface BenchCheck {
  /** What is claimed, in words ("key-ordered speedup ≥ 85x"). */
  goal: string
  metric: string
  baseline?: string
  min?: number
  max?: number
}

/** A benchmark module: `bench/<name>.ts`. */
export interface BenchModule {
  run(ctx: BenchContext): Promise<BenchResult>
}

/** One `bench/results/<name>.json`. */
export interface BenchRecord {
  name: string
  /** ISO 8601, when the result was written. */
  date: string
  /** `process.version` of the run. */
  node: string
  quick: boolean
  machine: { cpus: number; cpu_model: string; total_mem_mb: number; platform: string; arch: string }
  kafka: { broker: 'started' | 'external'; broker_version: string; client_version: string }
  /** Start-up of the broker the runner started, ms; null when `KAFKA_BOOTSTRAP` was reused. */
  broker_startup_ms: number | null
  /** Wall time of the benchmark itself, ms (without broker start-up). */
  bench_wall_ms: number
  /** Wall time of the whole process until the result was written, ms (Node start, broker start, bench). */
  total_wall_ms: number
  params: BenchResult['params']
  metrics: BenchResult['metrics']
  baseline: BenchResult['baseline']
  headline: { metric: string; value: number | null; baseline_metric: string; baseline: number | null }
  /** headline value / its baseline, same run; null when either is missing or the baseline is 0. */
  ratio: number | null
  goal: string
  target: { min_ratio: number | null; max_ratio: number | null }
  /** null when the benchmark has no pass/fail target (informational). */
  met: boolean | null
  /** The further goals, evaluated (value is the metric, or the ratio when a baseline is named). */
  checks?: Array<{ goal: string; metric: string; baseline: string | null; value: number | null; min: number | null; max: number | null; met: boolean }>
  curves?: Curve[]
}
