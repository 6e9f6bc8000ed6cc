/**
 * The rehearsal's HTML report (pure: a result in, one self-contained page out — inline SVG and CSS, no
 * script, no CDN): a timeline of throughput, consumer lag and parked keys with the faults as shaded
 * bands and the anomalies as marks, the property table, the examples, the counts and the faults.
 *
 * @module
 */
import { BAD_KINDS, PROPERTY_TEXT } from './checker.js'
import { FAULT_KINDS } from './nemesis.js'
import type { RunResult, TimelineSample } from './run.js'

const esc = (s: unknown) => String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')

const COLORS: Record<string, string> = {
  kill: '#f4a261',
  'crash-point': '#e76f51',
  pause: '#e9c46a',
  scale: '#8ab17d',
  'broker-kill': '#a8dadc',
  'broker-kill-all': '#457b9d',
  'broker-restart': '#90bede',
  postgres: '#b197fc',
  partition: '#f28482',
  latency: '#ffd6a5',
}

interface Series {
  title: string
  unit: string
  values: Array<[number, number | null]>
}

function series(timeline: readonly TimelineSample[]): Series[] {
  const rate: Array<[number, number | null]> = []
  for (let i = 1; i < timeline.length; i++) {
    const a = timeline[i - 1]!
    const b = timeline[i]!
    rate.push([b.at, Math.max(0, (b.applied - a.applied) / Math.max(0.001, (b.at - a.at) / 1000))])
  }
  return [
    { title: 'throughput (effects/s)', unit: '/s', values: rate },
    { title: 'consumer lag (records)', unit: '', values: timeline.map((s) => [s.at, s.lag]) },
    { title: 'parked keys', unit: '', values: timeline.map((s) => [s.at, s.parked]) },
  ]
}

function chart(s: Series, result: RunResult, t0: number, t1: number, width: number, height: number): string {
  const left = 56
  const right = 10
  const top = 18
  const bottom = 20
  const w = width - left - right
  const h = height - top - bottom
  const x = (t: number) => left + ((t - t0) / Math.max(1, t1 - t0)) * w
  const max = Math.max(1, ...s.values.map(([, v]) => v ?? 0))
  const y = (v: number) => top + h - (v / max) * h
  const bands = result.faults
    .map((f) => `<rect x="${x(f.start).toFixed(1)}" y="${top}" width="${Math.max(1, x(f.end) - x(f.start)).toFixed(1)}" height="${h}" fill="${COLORS[f.kind] ?? '#ccc'}" opacity="0.45"><title>${esc(`${f.kind} ${f.target ?? ''} ${f.detail ?? ''} (${Math.round((f.end - f.start) / 1000)} s)`)}</title></rect>`)
    .join('')
  const segments: string[] = []
  let current: string[] = []
  for (const [t, v] of s.values) {
    if (v === null) {
      if (current.length > 1) segments.push(current.join(' '))
      current = []
      continue
    }
    current.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`)
  }
  if (current.length > 1) segments.push(current.join(' '))
  const lines = segments.map((p) => `<polyline points="${p}" fill="none" stroke="#1d3557" stroke-width="1.5"/>`).join('')
  const marks = result.check.marks
    .map((m) => `<path d="M${x(m.at).toFixed(1)},${top - 2} l-4,-7 h8 z" fill="#d00000"><title>${esc(m.kind)} at ${esc(new Date(m.at).toISOString())}</title></path>`)
    .join('')
  const ticks = [0, 0.5, 1].map((f) => `<text x="${left - 6}" y="${(y(max * f) + 4).toFixed(1)}" text-anchor="end">${Math.round(max * f)}</text>`).join('')
  const xticks: string[] = []
  const span = (t1 - t0) / 1000
  const step = span > 600 ? 120 : span > 240 ? 60 : span > 90 ? 30 : 10
  for (let sec = 0; sec <= span; sec += step) xticks.push(`<text x="${x(t0 + sec * 1000).toFixed(1)}" y="${height - 4}" text-anchor="middle">${sec}s</text>`)
  const phases = ['healing', 'operator']
    .filter((p) => result.phases[p] !== undefined)
    .map((p) => `<line x1="${x(result.phases[p]!).toFixed(1)}" y1="${top}" x2="${x(result.phases[p]!).toFixed(1)}" y2="${top + h}" stroke="#666" stroke-dasharray="3,3"><title>${p} from here</title></line><text x="${(x(result.phases[p]!) + 3).toFixed(1)}" y="${top + 9}" class="phase">${p}</text>`)
    .join('')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" class="chart"><text x="${left}" y="12" class="title">${esc(s.title)}</text>${bands}${phases}<line x1="${left}" y1="${top + h}" x2="${left + w}" y2="${top + h}" stroke="#999"/>${lines}${marks}${ticks}${xticks.join('')}</svg>`
}

export function renderHtml(result: RunResult, headline: string): string {
  const t0 = result.startedAt
  const t1 = Math.max(result.endedAt, ...result.timeline.map((s) => s.at))
  const charts = series(result.timeline).map((s) => chart(s, result, t0, t1, 960, 150)).join('\n')
  const legend = [...new Set(result.faults.map((f) => f.kind))].map((k) => `<span class="key"><i style="background:${COLORS[k] ?? '#ccc'}"></i>${esc(k)}</span>`).join(' ') + ' <span class="key"><b style="color:#d00000">▼</b> anomaly</span>'
  const rows = BAD_KINDS.map((k) => {
    const a = result.check.anomalies[k]
    return `<tr class="${a.count > 0 ? 'bad' : 'ok'}"><td><code>${k}</code></td><td>${esc(PROPERTY_TEXT[k])}</td><td class="n">${a.count}</td><td>${a.count > 0 ? 'FAIL' : 'ok'}</td></tr>`
  }).join('')
  const examples = BAD_KINDS.filter((k) => result.check.anomalies[k].count > 0)
    .map((k) => `<h3><code>${k}</code> (${result.check.anomalies[k].count})</h3><pre>${esc(result.check.anomalies[k].examples.map((e) => JSON.stringify(e)).join('\n'))}</pre>`)
    .join('')
  const counts = Object.entries(result.check.counts).map(([k, v]) => `<tr><td>${esc(k)}</td><td class="n">${v}</td></tr>`).join('')
  const faults = result.faults
    .map((f) => `<tr><td>${esc(f.kind)}</td><td>${esc(f.target ?? '')}</td><td>${esc(f.detail ?? '')}</td><td class="n">${Math.round((f.start - t0) / 1000)}</td><td class="n">${Math.round((f.end - f.start) / 100) / 10}</td><td>${esc(FAULT_KINDS[f.kind as keyof typeof FAULT_KINDS] ?? '')}</td></tr>`)
    .join('')
  const skipped = result.skipped.map((s) => `<li><code>${esc(s.kind)}</code> skipped: ${esc(s.reason)}</li>`).join('')
  const l = result.check.liveness
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lifeline rehearsal ${esc(result.run)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}h3{font-size:14px;margin:14px 0 4px}
.headline{font-size:17px;padding:10px 14px;border-radius:6px;margin:12px 0}.valid{background:#e6f4ea;border:1px solid #8fd19e}.invalid{background:#fde8e8;border:1px solid #f5a3a3}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fde8e8}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
.chart{display:block;margin:6px 0}.chart text{font-size:11px;fill:#555}.chart .title{font-weight:600;fill:#222}.chart .phase{font-size:10px;fill:#666}
.key{margin-right:12px;font-size:12px}.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;opacity:.6}
.meta{color:#555;font-size:13px}
</style></head><body>
<h1>Lifeline rehearsal <code>${esc(result.run)}</code></h1>
<div class="meta">seed ${result.seed} · consumer ${esc(result.options.consumer)} · ${result.environment.brokers} broker(s)${result.environment.external ? ' (external)' : ''} · PostgreSQL ${esc(result.environment.postgres)} · ${esc(result.options.consumers)} consumers · ${esc(result.options.partitions)} partitions · ${esc(result.options.events)} events over ${esc(result.options.keys)} keys · started ${esc(new Date(result.startedAt).toISOString())} · ${Math.round((result.endedAt - result.startedAt) / 1000)} s</div>
<div class="headline ${result.check.valid ? 'valid' : 'invalid'}">${result.check.valid ? '✔' : '✘'} ${esc(headline)}</div>
<h2>Timeline</h2>
<div>${legend}</div>
${charts}
<h2>Properties</h2>
<table><tr><th>property</th><th>bad when</th><th>count</th><th></th></tr>${rows}</table>
<p>Liveness (reported): drain after healing ${(l.drainMs / 1000).toFixed(1)} s; longest stall ${l.longestStall ? `${(l.longestStall.ms / 1000).toFixed(1)} s (key ${esc(l.longestStall.key)}, ${esc(l.longestStall.eventId)})` : '—'}; latency p50 ${Math.round(l.latencyP50Ms)} ms, p99 ${Math.round(l.latencyP99Ms)} ms. Dashed lines: the faults healed (<code>healing</code>), the operator phase began (<code>operator</code>).</p>
${examples ? `<h2>Examples</h2>${examples}` : ''}
<h2>Faults</h2>
<table><tr><th>fault</th><th>target</th><th>detail</th><th>at (s)</th><th>lasted (s)</th><th>what</th></tr>${faults}</table>
${skipped ? `<ul>${skipped}</ul>` : ''}
<h2>Counts</h2>
<table>${counts}</table>
<p class="meta">Raw logs (produce log, member logs): <code>${esc(result.rawDir)}</code>. Reproduce: <code>npm run rehearse -- --seed ${result.seed} ...</code> with the options above.</p>
</body></html>
`
}
