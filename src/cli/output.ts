/** CLI output helpers: plain tables for people, JSON for scripts. */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** A left-aligned text table with a header row. */
export function printTable(rows: ReadonlyArray<Record<string, unknown>>, columns?: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n')
    return
  }
  const cols = columns ?? Object.keys(rows[0]!)
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')))
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()
  process.stdout.write(`${line(cols.map((c) => c.toUpperCase()))}\n${cells.map(line).join('\n')}\n`)
}
