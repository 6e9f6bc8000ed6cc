import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { silentLogger } from '../../src/logger.js'
import { check } from '../../src/rehearsal/checker.js'
import { openEnvironment, type Environment } from '../../src/rehearsal/environment.js'
import { loadHistory } from '../../src/rehearsal/recheck.js'
import { writeRunReport } from '../../src/rehearsal/report.js'
import { runRehearsal, type RunOptions } from '../../src/rehearsal/run.js'
import { brokers } from '../helpers/kafka.js'
import { defer } from '../helpers/cleanup.js'

const base = (raw: string): RunOptions => ({
  seconds: 12,
  events: 400,
  keys: 40,
  consumers: 2,
  partitions: 3,
  faults: [],
  periodMs: 12_000,
  seed: 7,
  sessionTimeoutMs: 6000,
  commitIntervalMs: 500,
  retryDelaysMs: [500, 1500],
  drainTimeoutMs: 90_000,
  rawDir: raw,
  workload: { poison: 0.02, transient: 0.05, duplicates: 0.1, outOfOrder: 0.1, delayed: 0 },
  logger: silentLogger(),
})

describe('rehearsal end to end (real broker, private PostgreSQL)', { timeout: 900_000 }, () => {
  let env: Environment
  const raw = mkdtempSync(join(tmpdir(), 'lifeline-rehearsal-test-'))

  test('the reference consumer without faults: valid, every event accounted for, report and raw logs written', async (t) => {
    env = await openEnvironment({ brokers: 1, bootstrap: brokers(), logger: silentLogger() })
    defer(t, () => rmSync(raw, { recursive: true, force: true }))
    const result = await runRehearsal(env, base(raw))
    const c = result.check
    assert.equal(c.valid, true, JSON.stringify(Object.fromEntries(Object.entries(c.anomalies).filter(([, a]) => a.count > 0))))
    assert.ok(c.counts['produce.ok']! >= 400)
    assert.equal(c.counts['outcome.lost'], 0)
    // Every event applied once, except the poison ones the operator discarded.
    assert.equal(c.counts['outcome.applied']! + c.counts['operator.discarded']!, 400)
    assert.ok(c.counts['dlq.records']! >= 1, 'the poison events reached the DLQ')
    assert.equal(c.counts['dlq.records'], c.counts['operator.redriven']! + c.counts['operator.discarded']!)
    assert.ok(result.timeline.length > 5)

    const out = mkdtempSync(join(tmpdir(), 'lifeline-rehearsal-out-'))
    defer(t, () => rmSync(out, { recursive: true, force: true }))
    const files = writeRunReport(out, result)
    const json = JSON.parse(readFileSync(files.json, 'utf8')) as { valid: boolean; seed: number; headline: string; anomalies: Record<string, unknown> }
    assert.equal(json.valid, true)
    assert.equal(json.seed, 7)
    assert.match(json.headline, /^0 bad anomalies in 1 run x 12 s x 400 events \(faults: none\)$/)
    assert.equal(Object.keys(json.anomalies).length, 12)
    assert.match(readFileSync(files.html, 'utf8'), /<svg/)

    // The raw logs give the same verdict when checked again.
    const again = check(loadHistory(result.rawDir))
    assert.deepEqual(again.counts, c.counts)
    assert.equal(again.valid, true)
  })

  test('a consumer without the inbox, sequences or key order is caught: duplicate effects and key-order anomalies', async (t) => {
    defer(t, () => env.close())
    const result = await runRehearsal(env, { ...base(raw), seed: 8, consumer: new URL('../fixtures/rehearsal-naive-consumer.ts', import.meta.url).href, workload: { poison: 0, transient: 0, duplicates: 0.3, outOfOrder: 0.3, delayed: 0 } })
    assert.equal(result.check.valid, false)
    assert.ok(result.check.anomalies['duplicate-effect'].count > 0, 'duplicates applied twice')
    assert.ok(result.check.anomalies['key-order'].count > 0, 'out-of-order sequences applied out of order')
    assert.ok(result.check.anomalies['duplicate-effect'].examples.length <= 8)
    assert.equal(existsSync(join(result.rawDir, 'history.json')), true)
  })
})
