/**
 * Prometheus's own tools for the deploy/ tests: promtool (offline rule checks and unit tests) and a real
 * Prometheus server on loopback with a temp storage directory, stopped when the test ends. Both come from
 * Debian's `prometheus` package (installed by scripts/setup.sh).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { tempDir } from './db.js'
import { spawnForTest } from './process.js'

export const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool'
export const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus'
export const RULES_FILE = new URL('../../deploy/prometheus/lifeline-rules.yml', import.meta.url).pathname
export const RULES_TEST_FILE = new URL('../../deploy/prometheus/lifeline-rules.test.yml', import.meta.url).pathname
export const DASHBOARD_FILE = new URL('../../deploy/grafana/lifeline.json', import.meta.url).pathname

function need(binary: string): void {
  if (!existsSync(binary)) throw new Error(`${binary} is missing: install Debian's prometheus package (bash scripts/setup.sh does)`)
}

interface Target { expr: string; refId: string; datasource?: { uid: string } }
export interface Panel { id: number; type: string; title: string; datasource?: { type: string; uid: string }; targets?: Target[]; gridPos: { x: number; y: number; w: number; h: number } }
export interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Array<{ name: string; type: string }> }; annotations: { list: Array<{ expr?: string }> } }

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard
}

/** The PromQL of every panel target (and of the annotations, on request). */
export function dashboardExpressions(d: Dashboard = loadDashboard(), opts: { annotations?: boolean } = {}): string[] {
  const panels = d.panels.filter((p) => p.type !== 'row').flatMap((p) => (p.targets ?? []).map((t) => t.expr))
  return opts.annotations ? [...panels, ...d.annotations.list.flatMap((a) => (a.expr === undefined ? [] : [a.expr]))] : panels
}

/** Grafana's variables replaced by values PromQL accepts, as Grafana would before sending the query. */
export function interpolate(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h').replaceAll('$__interval', '30s').replaceAll('$group', '.+')
}

/** Runs promtool with `args`; returns its exit status and output. */
export function promtool(args: string[], cwd?: string): { status: number | null; output: string } {
  need(PROMTOOL)
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 120_000, ...(cwd === undefined ? {} : { cwd }) })
  if (r.error) throw r.error
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

/** The alert names of a rules file (`- alert: Name` lines). */
export function alertNames(file = RULES_FILE): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*- alert: (\w+)\s*$/gm)].map((m) => m[1]!)
}

/** Every `lifeline_*` metric name in a text (histogram series names folded to their family). */
export function lifelineNames(text: string): Set<string> {
  return new Set([...text.matchAll(/\blifeline_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')))
}

/** The metric families a /metrics text declares (`# TYPE name kind`). */
export function families(exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!))
}

/** A port nothing listens on right now (the OS picks it; a tiny race remains, so callers retry a failed start). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export interface PrometheusServer {
  url: string
  /** GET `path` of the HTTP API (`/api/v1/...`); rejects on a non-success answer. */
  api<T = unknown>(path: string): Promise<T>
  /** The server's stderr so far (for failure messages). */
  log(): string
}

/**
 * Starts a real Prometheus on a free loopback port with `scrapeTargets` scraped every second and
 * `ruleFiles` evaluated every second. Stopped (SIGTERM, then SIGKILL) and its storage removed when the
 * test ends.
 */
export async function startPrometheus(t: TestContext, opts: { scrapeTargets: Array<{ job: string; target: string }>; ruleFiles: string[] }): Promise<PrometheusServer> {
  need(PROMETHEUS)
  const dir = await tempDir(t, 'lifeline-prometheus')
  const config = join(dir, 'prometheus.yml')
  // JSON is YAML: no YAML writer needed.
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
      rule_files: opts.ruleFiles,
      scrape_configs: opts.scrapeTargets.map((s) => ({ job_name: s.job, static_configs: [{ targets: [s.target] }] })),
    }),
  )
  let lastError = ''
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort()
    const proc = spawnForTest(t, PROMETHEUS, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'])
    const child = proc.child
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 60_000
    let ready = false
    while (!ready && Date.now() < deadline && child.exitCode === null) {
      ready = await fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      )
      if (!ready) await new Promise((r) => setTimeout(r, 200))
    }
    if (ready) {
      return {
        url,
        log: proc.stderr,
        async api<T>(path: string): Promise<T> {
          const res = await fetch(`${url}${path}`)
          const body = (await res.json()) as { status: string; data: T; error?: string }
          if (!res.ok || body.status !== 'success') throw new Error(`Prometheus ${path}: HTTP ${res.status} ${body.error ?? ''}`)
          return body.data
        },
      }
    }
    lastError = proc.stderr()
    child.kill('SIGKILL')
    await proc.exited
  }
  throw new Error(`Prometheus did not become ready (3 attempts): ${lastError}`)
}
