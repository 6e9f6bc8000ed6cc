/**
 * The import graph of src/ (docs/architecture.md): every import goes to the same folder or to a lower
 * layer (arrows point down), and no module imports itself back through others (no cycle).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const SRC = fileURLToPath(new URL('../src/', import.meta.url))

/** Layers, bottom first: a folder (or top-level file) may import only from its own folder and lower layers. */
export const LAYERS: readonly string[][] = [
  ['errors', 'logger'],
  ['util'],
  ['kafka', 'store', 'dev', 'retry'],
  ['trace', 'failure'],
  ['ordering'],
  ['runtime'],
  ['effects', 'observe', 'dlq'],
  ['console'],
  ['demo', 'rehearsal'],
  ['cli'],
  ['index', 'api'],
]

function files(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) files(path, out)
    else if (entry.endsWith('.ts')) out.push(path)
  }
  return out
}

const IMPORT = /(?:^|\s)(?:import|export)\s[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(IMPORT)].map((m) => normalize(join(dirname(file), (m[1] ?? m[2])!)).replace(/\.js$/, '.ts'))
}

const unit = (file: string) => relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '')
const layerOf = (u: string) => LAYERS.findIndex((l) => l.includes(u))

test('every folder of src/ has a layer', () => {
  const units = new Set(files(SRC).map(unit))
  for (const u of units) assert.notEqual(layerOf(u), -1, `src/${u} is in no layer of test/architecture.test.ts (and docs/architecture.md)`)
})

test('arrows point down: no module imports from its own or a higher layer outside its folder', () => {
  const up: string[] = []
  for (const file of files(SRC)) {
    const from = unit(file)
    for (const target of imports(file)) {
      const to = unit(target)
      if (to !== from && layerOf(to) >= layerOf(from)) up.push(`${relative(SRC, file)} → ${relative(SRC, target)}`)
    }
  }
  assert.deepEqual(up, [])
})

test('the module graph has no cycle', () => {
  const graph = new Map(files(SRC).map((f) => [f, imports(f)]))
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const cycles: string[] = []
  const visit = (f: string) => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(f)), f].map((x) => relative(SRC, x)).join(' → '))
      return
    }
    state.set(f, 'open')
    stack.push(f)
    for (const t of graph.get(f) ?? []) if (graph.has(t)) visit(t)
    stack.pop()
    state.set(f, 'done')
  }
  for (const f of graph.keys()) visit(f)
  assert.deepEqual(cycles, [])
})
