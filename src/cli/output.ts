/**
 * CLI output helpers: plain tables for people, JSON for scripts. Text that came from elsewhere (a record's
 * message, an audit row's target) never reaches the terminal with its control characters raw: an escape
 * sequence in a request path must not repaint the operator's screen (issue 13, finding 7).
 */

/** C0 and C1 controls, DEL, and the Unicode bidirectional overrides and isolates (they reorder what is shown). */
// eslint-disable-next-line no-control-regex -- control characters are what this matches
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g
// eslint-disable-next-line no-control-regex -- control characters are what this matches
const CONTROLS_BUT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

const escapeControl = (ch: string): string => {
  const code = ch.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}

/** `text` with every control character escaped (`\x1b`, `\u202e`), newlines and tabs included. */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, escapeControl)
}

/** `text` with its control characters escaped, newlines and tabs kept (multi-line output). */
export function terminalText(text: string): string {
  return text.replace(CONTROLS_BUT_LAYOUT, escapeControl)
}

/** Writes text for a person to stdout: control characters that came with the data are escaped (layout newlines kept). */
export function writeText(text: string): void {
  process.stdout.write(terminalText(text))
}

/** JSON, with C1 controls and bidi controls escaped too (JSON.stringify leaves them raw); it parses back to the same value. */
export function printJson(value: unknown): void {
  const json = JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)
  process.stdout.write(`${json}\n`)
}

/** A left-aligned text table with a header row. */
export function printTable(rows: ReadonlyArray<Record<string, unknown>>, columns?: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n')
    return
  }
  const cols = columns ?? Object.keys(rows[0]!)
  const cells = rows.map((r) => cols.map((c) => escapeControls(String(r[c] ?? ''))))
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()
  process.stdout.write(`${line(cols.map((c) => c.toUpperCase()))}\n${cells.map(line).join('\n')}\n`)
}
