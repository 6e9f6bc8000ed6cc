import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import type { History } from '../../src/rehearsal/history.js'
import { saveHistory } from '../../src/rehearsal/recheck.js'
import { defer } from '../helpers/cleanup.js'
import { runCli } from '../helpers/cli.js'
import { cleanHistory } from '../helpers/rehearsal.js'
import { brokers, waitFor } from '../helpers/kafka.js'

/** Writes a run's raw folder (history.json and one member log) as a rehearsal leaves it. */
function rawRun(t: TestContext, history: History): string {
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-rehearse-cli-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  saveHistory(dir, history)
  writeFileSync(join(dir, 'c0.1.jsonl'), history.members.map((m) => JSON.stringify(m)).join('\n') + '\n')
  return dir
}

describe('lifeline rehearse', () => {
  test('--recheck prints the verdict of a run\'s raw logs; exit code 1 when an anomaly is found', async (t) => {
    const clean = await runCli(['rehearse', '--recheck', rawRun(t, cleanHistory())])
    const verdict = JSON.parse(clean.stdout) as { valid: boolean; bad: number; anomalies: Record<string, unknown> }
    assert.equal(verdict.valid, true)
    assert.deepEqual(verdict.anomalies, {})

    const h = cleanHistory()
    const saved = process.exitCode
    defer(t, () => (process.exitCode = saved))
    const bad = await runCli(['rehearse', '--recheck', rawRun(t, { ...h, effects: [...h.effects, { ...h.effects[0]! }] })])
    const badVerdict = JSON.parse(bad.stdout) as { valid: boolean; anomalies: Record<string, { count: number }> }
    assert.equal(badVerdict.valid, false)
    assert.equal(badVerdict.anomalies['duplicate-effect']!.count, 1)
    assert.equal(process.exitCode, 1)
  })

  test('bad options are refused before anything starts', async () => {
    await assert.rejects(runCli(['rehearse', '--faults', 'kill,meteor']), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /unknown fault "meteor"/.test((e as Error).message))
    await assert.rejects(runCli(['rehearse', '--brokers', '2']), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /--brokers must be 1 or 3/.test((e as Error).message))
    await assert.rejects(runCli(['rehearse', '--consumer', 'test/fixtures/rehearsal-not-a-consumer.ts']), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL'))
  })
})

test('Ctrl-C during a run: the campaign closes what it started, says so, and exits with 130', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lifeline-rehearse-sigint-'))
  defer(t, () => rmSync(dir, { recursive: true, force: true }))
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../../src/cli/main.ts', import.meta.url).pathname, 'rehearse', '--bootstrap', brokers().join(','), '--seconds', '60', '--events', '2000', '--consumers', '1', '--partitions', '2', '--faults', 'none', '--out', join(dir, 'out'), '--raw', join(dir, 'raw')], { stdio: ['ignore', 'pipe', 'pipe'] })
  defer(t, () => child.kill('SIGKILL'))
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await waitFor(() => /\[running/.test(stderr), 'the run to start', 60_000)
  const interruptedAt = Date.now()
  child.kill('SIGINT')
  const code = await exited
  const forced = /still open after the interrupt \(([^)]*)\)/.exec(stderr)?.[1]
  t.diagnostic(`exited ${Date.now() - interruptedAt} ms after the signal${forced === undefined ? '' : ` (forced; still open: ${forced})`}`)
  assert.equal(code, 130, stderr.slice(-2000))
  assert.match(stderr, /interrupted: 0 run\(s\) finished before the signal/)
  assert.ok(Date.now() - interruptedAt < 60_000, `it exits without waiting for the run to end (took ${Date.now() - interruptedAt} ms): ${stderr.slice(-3000)}`)
})
