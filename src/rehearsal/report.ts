/**
 * The rehearsal's results: a JSON file per run (valid?, counts per outcome, every anomaly kind with its
 * count and up to 8 examples, the seed, the fault schedule and what was applied or skipped, the
 * timeline), the HTML report beside it, and the one-line headline.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BAD_KINDS } from './checker.js'
import { renderHtml } from './report-html.js'
import type { RunResult } from './run.js'

/** `0 bad anomalies in R runs x T s x N events (faults: ...)`. */
export function headline(results: readonly RunResult[]): string {
  const bad = results.reduce((n, r) => n + r.check.bad, 0)
  const seconds = [...new Set(results.map((r) => r.options.seconds as number))].join('/')
  const events = [...new Set(results.map((r) => r.options.events as number))].join('/')
  const applied = [...new Set(results.flatMap((r) => r.faults.map((f) => f.kind)))].sort()
  return `${bad} bad anomalies in ${results.length} run${results.length === 1 ? '' : 's'} x ${seconds} s x ${events} events (faults: ${applied.length === 0 ? 'none' : applied.join(', ')})`
}

export function resultsDocument(result: RunResult): Record<string, unknown> {
  return {
    run: result.run,
    valid: result.check.valid,
    headline: headline([result]),
    seed: result.seed,
    startedAt: new Date(result.startedAt).toISOString(),
    durationS: Math.round((result.endedAt - result.startedAt) / 1000),
    options: result.options,
    environment: result.environment,
    counts: result.check.counts,
    anomalies: Object.fromEntries(BAD_KINDS.map((k) => [k, result.check.anomalies[k]])),
    liveness: result.check.liveness,
    faults: {
      schedule: result.schedule,
      applied: result.faults.map((f) => ({ ...f, start: new Date(f.start).toISOString(), end: new Date(f.end).toISOString(), seconds: Math.round((f.end - f.start) / 100) / 10 })),
      skipped: result.skipped,
    },
    crashes: result.crashes.map((c) => ({ ...c, at: new Date(c.at).toISOString() })),
    phases: Object.fromEntries(Object.entries(result.phases).map(([k, v]) => [k, new Date(v).toISOString()])),
    rawLogs: result.rawDir,
    timeline: result.timeline,
    marks: result.check.marks,
  }
}

/** Writes `<run>.json` and `<run>.html` into `dir`; returns their paths. */
export function writeRunReport(dir: string, result: RunResult): { json: string; html: string } {
  mkdirSync(dir, { recursive: true })
  const json = join(dir, `${result.run}.json`)
  const html = join(dir, `${result.run}.html`)
  writeFileSync(json, `${JSON.stringify(resultsDocument(result), null, 2)}\n`)
  writeFileSync(html, renderHtml(result, headline([result])))
  return { json, html }
}
