import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { curveProblems, renderCurveSvg, renderCurveTable, type Curve } from '../../bench/lib/charts.js'
import { buildRecord, renderResultsMarkdown, writeRecord, writeResultsMarkdown } from '../../bench/lib/results.js'
import type { BenchResult } from '../../bench/lib/types.js'

const curve: Curve = {
  id: 'keys',
  title: 'Throughput vs keys <in flight>',
  x: { label: 'distinct keys', log: true },
  y: { label: 'records/s' },
  series: [
    { name: 'lifeline', points: [[1000, 50_000], [10_000, 48_000], [100_000, 40_000], [1_000_000, 30_000]] },
    { name: 'raw', points: [[1000, 60_000], [1_000_000, null]] },
  ],
}

const env = { name: 'demo', quick: false, date: new Date('2026-12-04T00:00:00Z'), kafka: { broker: 'external' as const, broker_version: 'x', client_version: 'y' }, brokerStartupMs: null, benchWallMs: 1, totalWallMs: 2 }
const machine = { cpus: 2, cpu_model: 'cpu', total_mem_mb: 1, platform: 'linux', arch: 'x64' }

function result(extra: Partial<BenchResult> = {}): BenchResult {
  return {
    params: {},
    metrics: { a_rps: 90, b_rps: 100, speedup: 86 },
    baseline: { b_rps: 100 },
    headline: { metric: 'a_rps', baseline: 'b_rps' },
    goal: 'a / b ≥ 0.95',
    target: { minRatio: 0.95 },
    summary: [],
    ...extra,
  }
}

test('a curve renders as an accessible SVG: escaped title, log ticks, one polyline per series with 2+ points, a marker per measured point', () => {
  const svg = renderCurveSvg(curve)
  assert.match(svg, /<title id="t">Throughput vs keys &lt;in flight&gt;<\/title>/)
  assert.match(svg, /role="img"/)
  for (const tick of ['>1k<', '>10k<', '>100k<', '>1M<']) assert.ok(svg.includes(tick), `tick ${tick}`)
  assert.equal(svg.match(/<polyline /g)?.length, 1, 'the raw series has a single measured point: no line')
  assert.equal(svg.match(/<circle /g)?.length, 4 + 1, 'four markers and the legend marker for the first series')
  assert.match(svg, /1,000,000 → not measured/)
})

test('a curve tables every x with one column per series', () => {
  const rows = renderCurveTable(curve)
  assert.equal(rows[0], '| distinct keys | lifeline (records/s) | raw (records/s) |')
  assert.equal(rows.length, 2 + 4)
  assert.equal(rows[2], '| 1,000 | 50,000 | 60,000 |')
  assert.equal(rows.at(-1), '| 1,000,000 | 30,000 | — |')
})

test('unusable curves are named: bad id, empty series, non-positive values on a log axis', () => {
  assert.deepEqual(curveProblems(curve), [])
  const bad: Curve = { ...curve, id: 'Bad id', series: [{ name: 's', points: [[0, 1]] }, { name: 'e', points: [] }] }
  const problems = curveProblems(bad)
  assert.equal(problems.length, 3)
  assert.match(problems.join('\n'), /lowercase/)
  assert.match(problems.join('\n'), /x = 0 on a log axis/)
  assert.match(problems.join('\n'), /has no point/)
  assert.throws(() => buildRecord(result({ curves: [bad] }), env, machine), { code: 'BENCH_FAILED' })
})

test('further goals are evaluated as plain values or ratios, and a missing metric is not met', () => {
  const record = buildRecord(result({
    checks: [
      { goal: 'speedup ≥ 85x', metric: 'speedup', min: 85 },
      { goal: 'a/b ≤ 0.5', metric: 'a_rps', baseline: 'b_rps', max: 0.5 },
      { goal: 'missing', metric: 'nope', min: 1 },
    ],
  }), env, machine)
  assert.equal(record.met, false, 'the headline 0.9 misses 0.95')
  assert.deepEqual(record.checks?.map((c) => [c.value, c.met]), [[86, true], [0.9, false], [null, false]])
})

test('results regenerate RESULTS.md with the goals, chart links and tables, and the charts folder from the records', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-results-'))
  try {
    const results = join(dir, 'results')
    const charts = join(dir, 'charts')
    writeRecord(buildRecord(result({ curves: [curve], checks: [{ goal: 'speedup ≥ 85x', metric: 'speedup', min: 85 }] }), env, machine), results)
    writeResultsMarkdown(results, join(dir, 'RESULTS.md'), charts)
    assert.deepEqual(readdirSync(charts), ['demo-keys.svg'])
    const md = readFileSync(join(dir, 'RESULTS.md'), 'utf8')
    assert.ok(md.includes('](charts/demo-keys.svg)'))
    assert.ok(md.includes('| [demo](#demo) | speedup ≥ 85x | 86 | yes |'))
    assert.ok(md.includes('| 100,000 | 40,000 | — |'))
    assert.equal(md, renderResultsMarkdown([JSON.parse(readFileSync(join(results, 'demo.json'), 'utf8'))]))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
