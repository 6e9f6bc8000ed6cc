/**
 * A JSON diff (pure): the operator console shows it before an edited dead letter is stored, and the DLQ
 * keeps it with the edit (`lifeline_dlq_edits.diff`), so a reviewer sees what an edit changed.
 *
 * @module
 */

/** Plain JSON, as `JSON.parse` returns it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue }

export interface DiffOp {
  op: 'add' | 'remove' | 'replace'
  /** JSON pointer (RFC 6901). */
  path: string
  value?: JsonValue
  /** The value before (remove, replace). */
  old?: JsonValue
}

const pointer = (path: string, key: string | number) => `${path}/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`

/** An RFC 6902-like diff (add / remove / replace with the old value), objects by key, arrays by index. */
export function jsonDiff(before: JsonValue | undefined, after: JsonValue, path = ''): DiffOp[] {
  if (before === undefined) return [{ op: 'add', path, value: after }]
  if (typeof before !== typeof after || before === null || after === null || Array.isArray(before) !== Array.isArray(after) || typeof before !== 'object') {
    return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ op: 'replace', path, old: before, value: after }]
  }
  const ops: DiffOp[] = []
  if (Array.isArray(before) && Array.isArray(after)) {
    for (let i = 0; i < Math.min(before.length, after.length); i++) ops.push(...jsonDiff(before[i], after[i]!, pointer(path, i)))
    for (let i = before.length; i < after.length; i++) ops.push({ op: 'add', path: pointer(path, i), value: after[i]! })
    for (let i = before.length - 1; i >= after.length; i--) ops.push({ op: 'remove', path: pointer(path, i), old: before[i]! })
    return ops
  }
  const b = before as Record<string, JsonValue>
  const a = after as Record<string, JsonValue>
  for (const k of Object.keys(b)) if (!Object.hasOwn(a, k)) ops.push({ op: 'remove', path: pointer(path, k), old: b[k]! })
  for (const k of Object.keys(a)) ops.push(...jsonDiff(Object.hasOwn(b, k) ? b[k] : undefined, a[k]!, pointer(path, k)))
  return ops
}
