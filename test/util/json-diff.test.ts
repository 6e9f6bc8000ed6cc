import assert from 'node:assert/strict'
import { test } from 'node:test'
import { jsonDiff, type DiffOp, type JsonValue } from '../../src/util/json-diff.js'

/** Applies a diff (this module's flavour of RFC 6902) to a copy of `doc`: the diff must lead from before to after. */
function apply(doc: JsonValue, ops: readonly DiffOp[]): JsonValue {
  let root = structuredClone(doc)
  for (const op of ops) {
    if (op.path === '') {
      root = structuredClone(op.value!)
      continue
    }
    const keys = op.path.slice(1).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
    const last = keys.pop()!
    let parent = root as Record<string, JsonValue> | JsonValue[]
    for (const k of keys) parent = (parent as Record<string, JsonValue>)[k] as Record<string, JsonValue>
    if (op.op === 'remove') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1)
      else delete parent[last]
    } else (parent as Record<string, JsonValue>)[last] = structuredClone(op.value!)
  }
  return root
}

test('equal values have no diff', () => {
  assert.deepEqual(jsonDiff({ a: [1, { b: null }], c: 'x' }, { a: [1, { b: null }], c: 'x' }), [])
  assert.deepEqual(jsonDiff(3, 3), [])
})

test('objects diff by key: removed keys first, with their old value; replaced scalars keep theirs', () => {
  assert.deepEqual(jsonDiff({ a: 1, b: 2, gone: true }, { a: 1, b: 3, added: 'x' }), [
    { op: 'remove', path: '/gone', old: true },
    { op: 'replace', path: '/b', old: 2, value: 3 },
    { op: 'add', path: '/added', value: 'x' },
  ])
})

test('arrays diff by index: extra items added in order, missing ones removed from the end', () => {
  assert.deepEqual(jsonDiff([1, 2], [1, 5, 6, 7]), [
    { op: 'replace', path: '/1', old: 2, value: 5 },
    { op: 'add', path: '/2', value: 6 },
    { op: 'add', path: '/3', value: 7 },
  ])
  assert.deepEqual(jsonDiff([1, 2, 3, 4], [1]), [
    { op: 'remove', path: '/3', old: 4 },
    { op: 'remove', path: '/2', old: 3 },
    { op: 'remove', path: '/1', old: 2 },
  ])
})

test('a change of type (object, array, scalar, null) replaces the whole value at its path', () => {
  assert.deepEqual(jsonDiff({ a: { b: 1 } }, { a: [1] }), [{ op: 'replace', path: '/a', old: { b: 1 }, value: [1] }])
  assert.deepEqual(jsonDiff({ a: null }, { a: {} }), [{ op: 'replace', path: '/a', old: null, value: {} }])
  assert.deepEqual(jsonDiff('1', 1), [{ op: 'replace', path: '', old: '1', value: 1 }])
  assert.deepEqual(jsonDiff(undefined, { a: 1 }), [{ op: 'add', path: '', value: { a: 1 } }])
})

test('keys are escaped as JSON pointers (RFC 6901: ~ as ~0, / as ~1)', () => {
  assert.deepEqual(jsonDiff({ 'a/b': 1, 'c~d': { e: 1 } }, { 'a/b': 2, 'c~d': { e: 2 } }), [
    { op: 'replace', path: '/a~1b', old: 1, value: 2 },
    { op: 'replace', path: '/c~0d/e', old: 1, value: 2 },
  ])
})

test('applying the diff to the value before gives the value after', () => {
  const cases: Array<[JsonValue, JsonValue]> = [
    [{ id: 7, items: [{ sku: 'a', n: 1 }, { sku: 'b', n: 2 }], tags: ['x'] }, { id: 7, items: [{ sku: 'a', n: 3 }], tags: ['x', 'y', 'z'], note: 'fixed' }],
    [[[1, 2], [3]], [[1], [3, 4], []]],
    [{ a: { b: { c: 1 } } }, { a: { b: {} }, 'x/y': null }],
  ]
  for (const [before, after] of cases) assert.deepEqual(apply(before, jsonDiff(before, after)), after)
})
