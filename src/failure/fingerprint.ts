/**
 * Failure fingerprints: what groups failures of one kind and origin (the DLQ processor's error groups, the
 * `lifeline.error.fingerprint` header). Part of the failure record, shared by the runtime (writing) and the
 * DLQ processor (reading other systems' dead letters).
 *
 * @module
 */
import { createHash } from 'node:crypto'

/** How many stack frames a fingerprint covers. */
export const FINGERPRINT_FRAMES = 5

/**
 * A path as it appears in a fingerprint: `node_modules/<package>` inside dependencies (versions and file
 * layout inside a package do not split a fingerprint), else its last two segments (the deploy root differs
 * between machines; the file does not).
 */
function shortPath(path: string): string {
  const clean = path
    .replace(/^file:\/\//, '')
    .replace(/[?#].*$/, '')
    .replace(/\\/g, '/')
    .replace(/^\/?[A-Za-z]:\//, '/')
  const inModules = clean.lastIndexOf('/node_modules/')
  if (inModules >= 0) {
    const parts = clean.slice(inModules + '/node_modules/'.length).split('/')
    const pkg = parts[0]?.startsWith('@') === true ? parts.slice(0, 2).join('/') : parts[0]
    return `node_modules/${pkg ?? ''}`
  }
  return clean.split('/').filter((part) => part !== '').slice(-2).join('/')
}

const PATH_START = /^(?:file:\/\/|[A-Za-z]:[\\/]|\/)/
const LINE_COL = /(?::\d+){1,2}$/

/** A frame location (`path:line:col`, `node:internal/...:l:c`, `native`, `eval at ...`) without line:col. */
function normaliseLocation(location: string): string {
  const bare = location.replace(LINE_COL, '')
  if (PATH_START.test(bare)) return shortPath(bare)
  // `eval at fn (path:l:c), <anonymous>:l:c`: normalise every path and line:col inside it.
  return bare
    .replace(/(?<=[\s(])(?:file:\/\/|[A-Za-z]:[\\/]|\/)[^\s()<>,]*/g, (path) => shortPath(path.replace(LINE_COL, '')))
    .replace(/:\d+(?::\d+)?(?=\)|,|$)/g, '')
}

/**
 * One V8 stack frame without what varies between builds and machines: line and column numbers and the
 * absolute path prefix. `at handle (/srv/app/src/orders/handler.ts:42:13)` → `at handle (orders/handler.ts)`.
 */
export function normaliseFrame(frame: string): string {
  const trimmed = frame.trim()
  const withFunction = /^at (.*?) \((.*)\)$/.exec(trimmed)
  if (withFunction !== null) return `at ${withFunction[1] ?? ''} (${normaliseLocation(withFunction[2] ?? '')})`
  return `at ${normaliseLocation(trimmed.replace(/^at /, ''))}`
}

/** The top {@link FINGERPRINT_FRAMES} frames of a V8 stack, normalised; message lines are skipped. */
export function stackFrames(stack: string | undefined): string[] {
  if (stack === undefined) return []
  const frames: string[] = []
  for (const line of stack.split('\n')) {
    if (!/^\s*at\s/.test(line)) continue
    frames.push(normaliseFrame(line))
    if (frames.length === FINGERPRINT_FRAMES) break
  }
  return frames
}

/**
 * Groups failures of the same kind and origin: the first 16 hex chars of the sha256 of the error class, the
 * code and the top {@link FINGERPRINT_FRAMES} normalised frames. The message is left out on purpose: it
 * carries ids, numbers and timestamps that would split one bug into thousands of groups.
 */
export function fingerprint(errorClass: string, code: string, stack: string | undefined): string {
  return createHash('sha256')
    .update(JSON.stringify([errorClass, code, stackFrames(stack)]))
    .digest('hex')
    .slice(0, 16)
}
