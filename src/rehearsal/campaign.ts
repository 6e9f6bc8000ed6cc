/**
 * A campaign: R rehearsals on one environment (cluster and private PostgreSQL started once, fresh
 * topics and database per run, seeds `seed`, `seed+1`, ...), each with its JSON and HTML report, and a
 * summary with the headline and a table of the runs.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BAD_KINDS } from './checker.js'
import { openEnvironment } from './environment.js'
import { headline, writeRunReport } from './report.js'
import { runRehearsal, type RunOptions, type RunResult } from './run.js'

export interface CampaignOptions extends Omit<RunOptions, 'seed'> {
  runs: number
  seed: number
  brokers: 1 | 3
  bootstrap?: string[]
  outDir: string
  onRun?(result: RunResult, files: { json: string; html: string }): void
}

export interface CampaignResult {
  headline: string
  results: RunResult[]
  summary: string
}

/** A Markdown table of runs: seed, verdict, events, faults applied, bad anomalies by kind, drain. */
export function runsTable(results: readonly RunResult[]): string {
  const head = '| run | seed | valid | events | faults applied | bad anomalies | drain after heal | longest stall | took |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  const rows = results.map((r) => {
    const bad = BAD_KINDS.filter((k) => r.check.anomalies[k].count > 0).map((k) => `${k} ${r.check.anomalies[k].count}`).join(', ') || '0'
    const kinds = new Map<string, number>()
    for (const f of r.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1)
    const faults = [...kinds].map(([k, n]) => `${k}×${n}`).join(' ') || 'none'
    const l = r.check.liveness
    return `| ${r.run} | ${r.seed} | ${r.check.valid ? 'yes' : '**no**'} | ${r.options.events} | ${faults} | ${bad} | ${(l.drainMs / 1000).toFixed(1)} s | ${l.longestStall ? `${(l.longestStall.ms / 1000).toFixed(1)} s` : '—'} | ${Math.round((r.endedAt - r.startedAt) / 1000)} s |`
  })
  return [head, ...rows].join('\n')
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const env = await openEnvironment({ brokers: options.brokers, ...(options.bootstrap ? { bootstrap: options.bootstrap } : {}), logger: options.logger })
  const results: RunResult[] = []
  try {
    for (let i = 0; i < options.runs && !options.signal?.aborted; i++) {
      const result = await runRehearsal(env, { ...options, seed: options.seed + i })
      // A run cut short (Ctrl-C) did not drain nor run its operator phase: not a verdict.
      if (options.signal?.aborted) break
      const files = writeRunReport(options.outDir, result)
      results.push(result)
      options.onRun?.(result, files)
    }
  } finally {
    await env.close()
  }
  const line = headline(results)
  mkdirSync(options.outDir, { recursive: true })
  const summary = join(options.outDir, `campaign-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}.md`)
  writeFileSync(summary, `# Rehearsal campaign\n\n${line}\n\n${runsTable(results)}\n`)
  return { headline: line, results, summary }
}
