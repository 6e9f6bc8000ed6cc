/**
 * The overview's chart: dead letters per hour as server-rendered SVG bars (no script, no inline style),
 * each bar titled with its hour and count, and the same numbers in a table for screen readers.
 *
 * @module
 */
import { Head } from './layout.js'

export interface HourCount {
  hour: Date
  count: number
}

const W = 720
const H = 180
const PAD = { left: 40, right: 8, top: 10, bottom: 24 }

/** Bar geometry (pure): x, y, width, height of each hour's bar and the axis maximum. */
export function barLayout(hours: readonly HourCount[]): { max: number; bars: Array<{ x: number; y: number; w: number; h: number }> } {
  const max = Math.max(1, ...hours.map((h) => h.count))
  const innerW = W - PAD.left - PAD.right
  const innerH = H - PAD.top - PAD.bottom
  const slot = innerW / Math.max(1, hours.length)
  return {
    max,
    bars: hours.map((h, i) => {
      const bh = Math.round((h.count / max) * innerH)
      return { x: Math.round(PAD.left + i * slot + 1), y: PAD.top + innerH - bh, w: Math.max(1, Math.floor(slot) - 2), h: bh }
    }),
  }
}

const hourLabel = (d: Date) => `${d.toISOString().slice(11, 13)}:00`

export function HourlyChart(props: { hours: HourCount[] }) {
  const { max, bars } = barLayout(props.hours)
  const total = props.hours.reduce((s, h) => s + h.count, 0)
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">
        <title id="chart-title">{`Dead letters per hour over the last ${props.hours.length} hours: ${total} in all, at most ${max} in one hour`}</title>
        <line class="axis" x1={PAD.left} y1={H - PAD.bottom} x2={W - PAD.right} y2={H - PAD.bottom} />
        <text class="tick" x={PAD.left - 4} y={PAD.top + 8} text-anchor="end">
          {String(max)}
        </text>
        <text class="tick" x={PAD.left - 4} y={H - PAD.bottom} text-anchor="end">
          0
        </text>
        {bars.map((b, i) => (
          <rect class="bar" x={b.x} y={b.y} width={b.w} height={b.h}>
            <title>{`${hourLabel(props.hours[i]!.hour)} UTC: ${props.hours[i]!.count}`}</title>
          </rect>
        ))}
        {props.hours.map((h, i) =>
          i % 4 === 0 ? (
            <text class="tick" x={bars[i]!.x} y={H - 6}>
              {hourLabel(h.hour)}
            </text>
          ) : null,
        )}
      </svg>
      <figcaption>Dead letters per hour (UTC), last {props.hours.length} hours: {total} in all.</figcaption>
      <details>
        <summary>The numbers</summary>
        <table>
          <Head cols={['Hour (UTC)', 'Dead letters']} />
          <tbody>
            {props.hours.map((h) => (
              <tr>
                <td>{h.hour.toISOString().slice(0, 13).replace('T', ' ')}:00</td>
                <td>{h.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  )
}
