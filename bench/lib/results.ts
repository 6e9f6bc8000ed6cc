/**
 * Benchmark results: one JSON file per benchmark in `bench/results/`, and `bench/RESULTS.md` regenerated
 * from every JSON file present there (sorted by name, so the same files always give the same document).
 *
 * @module
 */
import { cpus, platform, arch, totalmem } from 'node:os'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BenchError } from './errors.js'
import { curveProblems, renderCurveSvg, renderCurveTable } from './charts.js'
import type { BenchRecord, BenchResult } from './types.js'

/** `bench/` (found from this file, so the runner works from any working directory). */
export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..')
export const RESULTS_DIR = join(BENCH_DIR, 'results')
export const RESULTS_MD = join(BENCH_DIR, 'RESULTS.md')
export const CHARTS_DIR = join(BENCH_DIR, 'charts')

export interface RecordEnvironment {
  name: string
  quick: boolean
  date: Date
  kafka: BenchRecord['kafka']
  brokerStartupMs: number | null
  benchWallMs: number
  totalWallMs: number
}

/** The machine the run is on: what a reader needs to compare two result files. */
export function machineInfo(): BenchRecord['machine'] {
  const list = cpus()
  return {
    cpus: list.length,
    cpu_model: list[0]?.model.trim() ?? 'unknown',
    total_mem_mb: Math.round(totalmem() / 2 ** 20),
    platform: platform(),
    arch: arch(),
  }
}

/** Combines a benchmark's result with the environment into the record that is written (pure). */
export function buildRecord(result: BenchResult, env: RecordEnvironment, machine = machineInfo()): BenchRecord {
  const value = result.metrics[result.headline.metric]
  const headlineValue = typeof value === 'number' ? value : null
  const baseline = result.baseline[result.headline.baseline] ?? null
  const ratio = headlineValue !== null && baseline !== null && baseline !== 0 ? round(headlineValue / baseline, 3) : null
  const min = result.target?.minRatio ?? null
  const max = result.target?.maxRatio ?? null
  const met = min === null && max === null ? null : ratio !== null && (min === null || ratio >= min) && (max === null || ratio <= max)
  const problems = (result.curves ?? []).flatMap(curveProblems)
  if (problems.length > 0) throw new BenchError('BENCH_FAILED', `unusable scale curve: ${problems.join('; ')}`)
  const checks = result.checks?.map((c) => {
    const m = result.metrics[c.metric]
    const b = c.baseline === undefined ? undefined : result.metrics[c.baseline]
    const value = typeof m !== 'number' ? null : b === undefined ? m : typeof b === 'number' && b !== 0 ? round(m / b, 3) : null
    const lo = c.min ?? null
    const hi = c.max ?? null
    return { goal: c.goal, metric: c.metric, baseline: c.baseline ?? null, value, min: lo, max: hi, met: value !== null && (lo === null || value >= lo) && (hi === null || value <= hi) }
  })
  return {
    name: env.name,
    date: env.date.toISOString(),
    node: process.version,
    quick: env.quick,
    machine,
    kafka: env.kafka,
    broker_startup_ms: env.brokerStartupMs,
    bench_wall_ms: Math.round(env.benchWallMs),
    total_wall_ms: Math.round(env.totalWallMs),
    params: result.params,
    metrics: result.metrics,
    baseline: result.baseline,
    headline: { metric: result.headline.metric, value: headlineValue, baseline_metric: result.headline.baseline, baseline },
    ratio,
    goal: result.goal,
    target: { min_ratio: min, max_ratio: max },
    met,
    ...(checks === undefined ? {} : { checks }),
    ...(result.curves === undefined ? {} : { curves: result.curves }),
  }
}

/** Writes `bench/results/<name>.json` (via a temporary file, so a killed run never leaves half a file). */
export function writeRecord(record: BenchRecord, dir = RESULTS_DIR): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${record.name}.json`)
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`)
  renameSync(tmp, file)
  return file
}

/** Every result file in `dir`, sorted by benchmark name. */
export function readRecords(dir = RESULTS_DIR): BenchRecord[] {
  let files: string[]
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return files
    .map((f) => {
      try {
        return JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchRecord
      } catch (err) {
        throw new BenchError('BENCH_FAILED', `cannot read result file ${join(dir, f)}: ${(err as Error).message}`, { cause: err })
      }
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Regenerates `bench/RESULTS.md` and every chart in `bench/charts/` from the result files present. */
export function writeResultsMarkdown(dir = RESULTS_DIR, file = RESULTS_MD, chartsDir = CHARTS_DIR): void {
  const records = readRecords(dir)
  rmSync(chartsDir, { recursive: true, force: true })
  for (const r of records) {
    for (const curve of r.curves ?? []) {
      mkdirSync(chartsDir, { recursive: true })
      writeFileSync(join(chartsDir, chartFile(r.name, curve.id)), renderCurveSvg(curve))
    }
  }
  writeFileSync(file, renderResultsMarkdown(records))
}

/** `<benchmark>-<curve>.svg` */
export function chartFile(name: string, id: string): string {
  return `${name}-${id}.svg`
}

/** The RESULTS.md document for these records (pure, deterministic). */
export function renderResultsMarkdown(records: readonly BenchRecord[]): string {
  const out: string[] = [
    '# Benchmark results',
    '',
    '<!-- Generated by `npm run bench -- <name>` from bench/results/*.json. Do not edit by hand. -->',
    '',
    'How to run them and what each field means: [README.md](README.md).',
    '',
  ]
  if (records.length === 0) {
    out.push('No results yet: run `npm run bench -- <name>`.', '')
    return out.join('\n')
  }
  out.push(
    '| Benchmark | Date | Quick | Headline | Baseline | Ratio | Goal | Met |',
    '|---|---|---|---|---:|---:|---|---|',
  )
  for (const r of records) {
    const headline = `${r.headline.metric} = ${fmt(r.headline.value)}`
    const baseline = `${r.headline.baseline_metric} = ${fmt(r.headline.baseline)}`
    out.push(`| [${r.name}](#${r.name}) | ${r.date} | ${r.quick ? 'yes' : 'no'} | ${cell(headline)} | ${cell(baseline)} | ${fmt(r.ratio)} | ${cell(r.goal)} | ${metCell(r.met)} |`)
  }
  out.push('')
  const checked = records.filter((r) => (r.checks ?? []).length > 0)
  if (checked.length > 0) {
    out.push('Further goals of the same runs:', '', '| Benchmark | Goal | Value | Met |', '|---|---|---:|---|')
    for (const r of checked) for (const c of r.checks ?? []) out.push(`| [${r.name}](#${r.name}) | ${cell(c.goal)} | ${fmt(c.value)} | ${metCell(c.met)} |`)
    out.push('')
  }
  const charted = records.filter((r) => (r.curves ?? []).length > 0)
  if (charted.length > 0) {
    out.push('Scale curves (SVG charts in [charts/](charts/), every point tabled under its benchmark):', '')
    for (const r of charted) for (const c of r.curves ?? []) out.push(`- [${cell(c.title)}](charts/${chartFile(r.name, c.id)}) (${r.name})`)
    out.push('')
  }
  for (const r of records) {
    out.push(
      `## ${r.name}`,
      '',
      `${r.quick ? 'Quick' : 'Full'} run of ${r.date} on ${r.machine.cpus} × ${r.machine.cpu_model} (${fmt(r.machine.total_mem_mb)} MB RAM, ${r.machine.platform}/${r.machine.arch}), Node ${r.node}; ` +
        `Kafka ${r.kafka.broker_version} (${r.kafka.broker === 'started' ? `broker started by the runner in ${fmt(r.broker_startup_ms)} ms` : 'external broker from KAFKA_BOOTSTRAP'}), ` +
        `client ${r.kafka.client_version}. Benchmark wall time ${fmt(r.bench_wall_ms)} ms, whole process ${fmt(r.total_wall_ms)} ms.`,
      '',
      `Ratio: ${r.headline.metric} / ${r.headline.baseline_metric} = **${fmt(r.ratio)}**. Goal: ${r.goal}. Met: ${metCell(r.met)}.`,
      '',
      ...(r.checks ?? []).map((c) => `- ${cell(c.goal)}: ${c.baseline === null ? c.metric : `${c.metric} / ${c.baseline}`} = **${fmt(c.value)}**, met: ${metCell(c.met)}.`),
      ...((r.checks ?? []).length > 0 ? [''] : []),
      ...(r.curves ?? []).flatMap((c) => [
        `### ${c.title}`,
        '',
        `![${cell(c.title)}](charts/${chartFile(r.name, c.id)})`,
        '',
        ...(c.note === undefined ? [] : [c.note, '']),
        ...renderCurveTable(c),
        '',
      ]),
      '| Metric | Value |',
      '|---|---:|',
      ...Object.entries(r.metrics).map(([k, v]) => `| ${k} | ${cell(fmt(v))} |`),
      '',
      '<details><summary>Parameters</summary>',
      '',
      '| Parameter | Value |',
      '|---|---|',
      ...Object.entries(r.params).map(([k, v]) => `| ${k} | ${cell(fmt(v))} |`),
      '',
      '</details>',
      '',
    )
  }
  return out.join('\n')
}

function metCell(met: boolean | null): string {
  return met === null ? 'n/a' : met ? 'yes' : 'no'
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

/** Locale-independent number formatting: thousands separators, at most 3 decimals. */
export function fmt(value: number | string | boolean | null | undefined): string {
  if (value === null || value === undefined) return '—'
  if (typeof value !== 'number') return String(value)
  if (!Number.isFinite(value)) return String(value)
  const abs = Math.abs(value)
  const digits = Number.isInteger(value) || abs >= 1000 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  const [int = '0', frac] = value.toFixed(digits).split('.')
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  return frac === undefined ? grouped : `${grouped}.${frac}`
}

/** Rounds to `digits` decimals (for figures stored in result files). */
export function round(value: number, digits = 0): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
