/**
 * The JSON paths of masking rules (pure): `$.a.b`, `$.items[*].email`, `$.items[0]`, `$['a b']`, `$..email`
 * (any depth), `$` (the whole value); applying a function at every match with the match's **concrete** path
 * (`$.items[1].email`, `$["a b"]`), one spelling per location: the associated data of a value encrypted there.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import { isJsonObject, type Json } from './json-text.js'

const options = (message: string) => new LifelineError('LL_OPTIONS_INVALID', `invalid options: ${message}`)

/** Segments of a parsed path: a property, any index (`*`), an index, or recursive descent to a property. */
export type Segment = { kind: 'prop'; name: string } | { kind: 'any' } | { kind: 'index'; index: number } | { kind: 'deep'; name: string }

export function parsePath(path: string): Segment[] {
  if (!path.startsWith('$')) throw options(`masking path ${JSON.stringify(path)} must start with $`)
  const segments: Segment[] = []
  const re = /\.\.([A-Za-z_$][\w$-]*)|\.([A-Za-z_$][\w$-]*)|\[\*\]|\[(\d+)\]|\['([^']+)'\]/gy
  re.lastIndex = 1
  while (re.lastIndex < path.length) {
    const at = re.lastIndex
    const m = re.exec(path)
    if (!m) throw options(`masking path ${JSON.stringify(path)}: cannot read from position ${at}`)
    if (m[1] !== undefined) segments.push({ kind: 'deep', name: m[1] })
    else if (m[2] !== undefined) segments.push({ kind: 'prop', name: m[2] })
    else if (m[3] !== undefined) segments.push({ kind: 'index', index: Number(m[3]) })
    else if (m[4] !== undefined) segments.push({ kind: 'prop', name: m[4] })
    else segments.push({ kind: 'any' })
  }
  return segments
}

/** The concrete path of a child: `$.a`, `$["a b"]`, `$[0]` (one spelling per location: the associated data of what sits there). */
export const child = (path: string, key: string | number): string => (typeof key === 'number' ? `${path}[${key}]` : /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`)

/** Applies `fn` to every value at `segments` under `root` (with its concrete path); returns the new root (the input is not mutated). */
export function mapPath(root: Json, segments: readonly Segment[], fn: (v: Json, path: string) => Json, path = '$'): Json {
  if (segments.length === 0) return fn(root, path)
  const [head, ...rest] = segments as [Segment, ...Segment[]]
  if (head.kind === 'deep') {
    const visit = (node: Json, at: string): Json => {
      if (Array.isArray(node)) return node.map((v, i) => visit(v, child(at, i)))
      if (isJsonObject(node)) {
        const out = Object.create(null) as { [k: string]: Json }
        for (const [k, v] of Object.entries(node)) out[k] = k === head.name ? mapPath(v, rest, fn, child(at, k)) : visit(v, child(at, k))
        return out
      }
      return node
    }
    return visit(root, path)
  }
  if (head.kind === 'prop') {
    if (!isJsonObject(root) || !Object.hasOwn(root, head.name)) return root
    const out = Object.assign(Object.create(null) as { [k: string]: Json }, root)
    out[head.name] = mapPath(root[head.name]!, rest, fn, child(path, head.name))
    return out
  }
  if (!Array.isArray(root)) return root
  if (head.kind === 'any') return root.map((v, i) => mapPath(v, rest, fn, child(path, i)))
  if (head.index >= root.length) return root
  const copy = root.slice()
  copy[head.index] = mapPath(copy[head.index]!, rest, fn, child(path, head.index))
  return copy
}

/** Every string of `node` (not its keys) through `fn`, with its concrete path. */
export function mapStrings(node: Json, fn: (s: string, path: string) => Json, path = '$'): Json {
  if (typeof node === 'string') return fn(node, path)
  if (Array.isArray(node)) return node.map((v, i) => mapStrings(v, fn, child(path, i)))
  if (isJsonObject(node)) {
    const out = Object.create(null) as { [k: string]: Json }
    for (const [k, v] of Object.entries(node)) out[k] = mapStrings(v, fn, child(path, k))
    return out
  }
  return node
}
