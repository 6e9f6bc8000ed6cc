/**
 * Scale curves as SVG line charts: `bench/charts/<benchmark>-<curve>.svg`, drawn from the curves stored
 * in the result files (pure: the same curve always gives the same bytes), linked from RESULTS.md.
 *
 * A chart is a plain SVG with a title and description for screen readers, axes with "nice" ticks
 * (powers of ten on a log axis), one polyline with point markers per series, and a legend. RESULTS.md
 * also lists every point as a table, so the figures are readable without the picture.
 *
 * @module
 */

/** One line on a chart: `[x, y]` points, drawn in x order. A null y is a point that was not measured. */
export interface CurveSeries {
  name: string
  points: Array<[number, number | null]>
}

export interface CurveAxis {
  label: string
  /** Logarithmic scale (base 10); every value on it must be > 0. */
  log?: boolean
}

/** A scale curve: how one figure grows with the work (at least 4 points per series in a full run). */
export interface Curve {
  /** File-name part: `bench/charts/<benchmark>-<id>.svg` (lowercase letters, digits and dashes). */
  id: string
  title: string
  x: CurveAxis
  y: CurveAxis
  series: CurveSeries[]
  /** One sentence for readers: what the curve shows, how it was measured. */
  note?: string
}

const WIDTH = 640
const HEIGHT = 360
const MARGIN = { left: 72, right: 16, top: 40, bottom: 52 }
/** Colour-blind-safe palette (Okabe–Ito), with a distinct marker per series as a second cue. */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000']
const MARKERS = ['circle', 'square', 'triangle', 'diamond'] as const

/** The chart's SVG text. */
export function renderCurveSvg(curve: Curve): string {
  const xs = curve.series.flatMap((s) => s.points.map(([x]) => x))
  const ys = curve.series.flatMap((s) => s.points.map(([, y]) => y)).filter((y): y is number => y !== null)
  const xScale = axisScale(xs, curve.x.log === true, MARGIN.left, WIDTH - MARGIN.right)
  const yScale = axisScale(ys, curve.y.log === true, HEIGHT - MARGIN.bottom, MARGIN.top, true)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img" aria-labelledby="t d" font-family="sans-serif" font-size="12">`,
    `<title id="t">${esc(curve.title)}</title>`,
    `<desc id="d">${esc(describe(curve))}</desc>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(curve.title)}</text>`,
  ]
  const plotBottom = HEIGHT - MARGIN.bottom
  for (const t of xScale.ticks) {
    const px = num(xScale.map(t))
    out.push(`<line x1="${px}" y1="${MARGIN.top}" x2="${px}" y2="${plotBottom}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${px}" y="${plotBottom + 16}" text-anchor="middle">${esc(tickLabel(t))}</text>`)
  }
  for (const t of yScale.ticks) {
    const py = num(yScale.map(t))
    out.push(`<line x1="${MARGIN.left}" y1="${py}" x2="${WIDTH - MARGIN.right}" y2="${py}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${MARGIN.left - 6}" y="${num(yScale.map(t) + 4)}" text-anchor="end">${esc(tickLabel(t))}</text>`)
  }
  out.push(`<line x1="${MARGIN.left}" y1="${plotBottom}" x2="${WIDTH - MARGIN.right}" y2="${plotBottom}" stroke="#333"/>`)
  out.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${plotBottom}" stroke="#333"/>`)
  out.push(`<text x="${(MARGIN.left + WIDTH - MARGIN.right) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${esc(axisTitle(curve.x))}</text>`)
  out.push(`<text transform="translate(16 ${(MARGIN.top + plotBottom) / 2}) rotate(-90)" text-anchor="middle">${esc(axisTitle(curve.y))}</text>`)
  curve.series.forEach((series, i) => {
    const colour = COLOURS[i % COLOURS.length] as string
    const marker = MARKERS[i % MARKERS.length] as (typeof MARKERS)[number]
    const pts = [...series.points].filter((p): p is [number, number] => p[1] !== null).sort((a, b) => a[0] - b[0])
    const coords = pts.map(([x, y]) => [xScale.map(x), yScale.map(y)] as const)
    if (coords.length > 1) {
      out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${coords.map(([x, y]) => `${num(x)},${num(y)}`).join(' ')}"/>`)
    }
    for (const [x, y] of coords) out.push(markerSvg(marker, x, y, colour))
    const ly = MARGIN.top + 8 + i * 16
    const lx = MARGIN.left + 12
    out.push(markerSvg(marker, lx, ly, colour))
    out.push(`<text x="${lx + 10}" y="${ly + 4}">${esc(series.name)}</text>`)
  })
  out.push('</svg>', '')
  return out.join('\n')
}

/** The curve as markdown: a table with one row per x and one column per series. */
export function renderCurveTable(curve: Curve): string[] {
  const xs = [...new Set(curve.series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b)
  const header = `| ${cell(curve.x.label)} | ${curve.series.map((s) => cell(`${s.name} (${curve.y.label})`)).join(' | ')} |`
  const rule = `|---:|${curve.series.map(() => '---:').join('|')}|`
  const rows = xs.map((x) => {
    const values = curve.series.map((s) => {
      const p = s.points.find(([px]) => px === x)
      return p === undefined || p[1] === null ? '—' : tickLabel(p[1], true)
    })
    return `| ${tickLabel(x, true)} | ${values.join(' | ')} |`
  })
  return [header, rule, ...rows]
}

/** Problems that make a curve unusable (empty, a non-positive value on a log axis, a bad id). */
export function curveProblems(curve: Curve): string[] {
  const problems: string[] = []
  if (!/^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(curve.id)) problems.push(`curve id "${curve.id}" must be lowercase letters, digits and dashes`)
  if (curve.series.length === 0) problems.push(`curve ${curve.id} has no series`)
  for (const s of curve.series) {
    if (s.points.length === 0) problems.push(`curve ${curve.id}, series "${s.name}" has no point`)
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || (y !== null && !Number.isFinite(y))) problems.push(`curve ${curve.id}, series "${s.name}": point (${x}, ${y}) is not finite`)
      if (curve.x.log === true && x <= 0) problems.push(`curve ${curve.id}: x = ${x} on a log axis`)
      if (curve.y.log === true && y !== null && y <= 0) problems.push(`curve ${curve.id}: y = ${y} on a log axis`)
    }
  }
  return problems
}

interface Scale {
  map(v: number): number
  ticks: number[]
}

function axisScale(values: readonly number[], log: boolean, from: number, to: number, zeroBased = false): Scale {
  if (values.length === 0) return { map: () => from, ticks: [] }
  let lo = Math.min(...values)
  let hi = Math.max(...values)
  if (log) {
    const a = Math.floor(Math.log10(lo))
    const b = Math.max(Math.ceil(Math.log10(hi)), a + 1)
    const ticks: number[] = []
    for (let e = a; e <= b; e++) ticks.push(10 ** e)
    return { map: (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from), ticks }
  }
  if (zeroBased) lo = Math.min(0, lo)
  if (hi === lo) hi = lo + 1
  const step = niceStep((hi - lo) / 5)
  const start = Math.floor(lo / step) * step
  const end = Math.ceil(hi / step) * step
  const ticks: number[] = []
  for (let t = start; t <= end + step / 2; t += step) ticks.push(Number(t.toPrecision(12)))
  return { map: (v) => from + ((v - start) / (end - start)) * (to - from), ticks }
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw))
  const f = raw / p
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p
}

function markerSvg(kind: (typeof MARKERS)[number], x: number, y: number, colour: string): string {
  const r = 4
  switch (kind) {
    case 'circle':
      return `<circle cx="${num(x)}" cy="${num(y)}" r="${r}" fill="${colour}"/>`
    case 'square':
      return `<rect x="${num(x - r)}" y="${num(y - r)}" width="${2 * r}" height="${2 * r}" fill="${colour}"/>`
    case 'triangle':
      return `<polygon points="${num(x)},${num(y - r - 1)} ${num(x - r - 1)},${num(y + r)} ${num(x + r + 1)},${num(y + r)}" fill="${colour}"/>`
    case 'diamond':
      return `<polygon points="${num(x)},${num(y - r - 1)} ${num(x + r + 1)},${num(y)} ${num(x)},${num(y + r + 1)} ${num(x - r - 1)},${num(y)}" fill="${colour}"/>`
  }
}

function describe(curve: Curve): string {
  const parts = curve.series.map((s) => `${s.name}: ${s.points.map(([x, y]) => `${tickLabel(x, true)} → ${y === null ? 'not measured' : tickLabel(y, true)}`).join(', ')}`)
  return `${axisTitle(curve.y)} against ${axisTitle(curve.x)}. ${parts.join('; ')}.${curve.note ? ` ${curve.note}` : ''}`
}

function axisTitle(axis: CurveAxis): string {
  return axis.log === true ? `${axis.label} (log scale)` : axis.label
}

/** 1200 → "1.2k", 3000000 → "3M"; `exact` keeps every digit (grouped) for tables. */
function tickLabel(v: number, exact = false): string {
  if (exact) {
    const digits = Number.isInteger(v) || Math.abs(v) >= 1000 ? 0 : Math.abs(v) >= 10 ? 1 : Math.abs(v) >= 1 ? 2 : 3
    const [int = '0', frac] = v.toFixed(digits).split('.')
    const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
    return frac === undefined ? grouped : `${grouped}.${frac}`
  }
  const abs = Math.abs(v)
  for (const [unit, size] of [['G', 1e9], ['M', 1e6], ['k', 1e3]] as const) {
    if (abs >= size) return `${Number((v / size).toPrecision(3))}${unit}`
  }
  return String(Number(v.toPrecision(3)))
}

function num(v: number): string {
  return String(Math.round(v * 10) / 10)
}

function esc(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}
