import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import { CRASH_ENV, CRASH_POINTS, parseCrashSpec } from '../../src/util/crash-points.js'
import { BEGIN, END, crashPointTable } from '../../scripts/docs-crash-points.js'
import { readSection } from '../../scripts/lib/doc-section.js'

test('docs/crash-points.md lists exactly the points in code', () => {
  assert.equal(readSection(new URL('../../docs/crash-points.md', import.meta.url), BEGIN, END), crashPointTable(), 'stale: run `node --import tsx scripts/docs-crash-points.ts`')
})

test('parseCrashSpec: a point, a point with a count, and refusals', () => {
  assert.deepEqual(parseCrashSpec('park.after-state'), { point: 'park.after-state', nth: 1 })
  assert.deepEqual(parseCrashSpec('commit.after:3'), { point: 'commit.after', nth: 3 })
  for (const bad of ['park.after-stat', '', 'commit.after:0', 'commit.after:x', 'commit.after:1:2', 'commit.after:1.5', 'toString', '__proto__']) {
    assert.throws(() => parseCrashSpec(bad), (e: Error & { code?: string }) => e.code === 'LL_OPTIONS_INVALID' && e.message.includes(CRASH_ENV), bad)
  }
})

/** Runs a child that passes `point` five times, printing a line before each pass. */
function runChild(env: Record<string, string>): Promise<{ signal: NodeJS.Signals | null; code: number | null; stdout: string; stderr: string }> {
  const script = `
    const { crashPoint } = await import(${JSON.stringify(new URL('../../src/util/crash-points.ts', import.meta.url).href)})
    for (let i = 1; i <= 5; i++) { process.stdout.write('pass ' + i + '\\n'); crashPoint('commit.after') }
    process.stdout.write('survived\\n')`
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

test('an armed point kills the process with SIGKILL at its nth pass; unarmed points are inert', async () => {
  const killed = await runChild({ [CRASH_ENV]: 'commit.after:3' })
  assert.equal(killed.signal, 'SIGKILL')
  assert.equal(killed.stdout.trim(), 'pass 1\npass 2\npass 3')
  assert.match(killed.stderr, /crash point commit\.after \(pass 3\) reached: SIGKILL/)

  const other = await runChild({ [CRASH_ENV]: 'park.after-state' })
  assert.equal(other.code, 0)
  assert.match(other.stdout, /survived/)

  const off = await runChild({ [CRASH_ENV]: '' })
  assert.equal(off.code, 0)

  const typo = await runChild({ [CRASH_ENV]: 'commit.aftr' })
  assert.notEqual(typo.code, 0)
  assert.match(typo.stderr, /unknown crash point "commit\.aftr"/)
  assert.equal(typo.stdout, '')
})

test('every point has a name of the form area.after[-step] or area.before and a description', () => {
  for (const [name, moment] of Object.entries(CRASH_POINTS)) {
    assert.match(name, /^[a-z]+\.(after(-[a-z-]+)?|before)$/)
    assert.ok(moment.length > 20)
  }
})
