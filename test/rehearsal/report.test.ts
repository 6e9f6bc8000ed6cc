import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { canaryMetrics, recordRound } from '../../src/rehearsal/canary.js'
import { check } from '../../src/rehearsal/checker.js'
import { runsTable } from '../../src/rehearsal/campaign.js'
import { headline, resultsDocument } from '../../src/rehearsal/report.js'
import { renderHtml } from '../../src/rehearsal/report-html.js'
import type { RunResult } from '../../src/rehearsal/run.js'
import { cleanHistory, T0 } from '../helpers/rehearsal.js'

function result(history = cleanHistory(), seed = 3): RunResult {
  return {
    run: `rh-test-${seed}`,
    seed,
    startedAt: T0,
    endedAt: T0 + 60_000,
    options: { consumer: 'reference', seconds: 60, events: history.events.length, keys: 2, consumers: 3, partitions: 2 },
    check: check(history),
    schedule: [{ kind: 'kill', startMs: 10_000, endMs: 14_000, target: 1 }],
    faults: [{ kind: 'kill', target: 'c1', start: T0 + 10_000, end: T0 + 14_000 }],
    skipped: [{ kind: 'partition', reason: 'not root' }],
    crashes: [],
    timeline: Array.from({ length: 60 }, (_, i) => ({ at: T0 + i * 1000, produced: i * 10, applied: i * 9, lag: i % 7, parked: i % 3 === 0 ? null : 1 })),
    phases: { setup: T0 },
    rawDir: '/tmp/raw',
    environment: { brokers: 1, external: false, postgres: '15', root: true, netns: false },
  }
}

describe('rehearsal report', () => {
  test('the headline counts bad anomalies over runs, seconds, events and the faults applied', () => {
    assert.equal(headline([result(), result(cleanHistory(), 4)]), '0 bad anomalies in 2 runs x 60 s x 6 events (faults: kill)')
    const h = cleanHistory()
    const bad = result({ ...h, effects: [...h.effects, { ...h.effects[0]! }] })
    assert.match(headline([bad]), /^1 bad anomalies in 1 run x 60 s x 6 events/)
  })

  test('the JSON document has the verdict, seed, counts, every anomaly kind and the fault schedule', () => {
    const doc = resultsDocument(result()) as { valid: boolean; seed: number; anomalies: Record<string, { count: number }>; faults: { schedule: unknown[]; applied: unknown[]; skipped: unknown[] }; counts: Record<string, number> }
    assert.equal(doc.valid, true)
    assert.equal(doc.seed, 3)
    assert.equal(Object.keys(doc.anomalies).length, 12)
    assert.equal(doc.faults.schedule.length, 1)
    assert.equal(doc.faults.skipped.length, 1)
    assert.equal(doc.counts['outcome.applied'], 6)
  })

  test('the HTML is self-contained: inline SVG charts with fault bands and anomaly marks, the property table, examples', () => {
    const h = cleanHistory()
    const html = renderHtml(result({ ...h, effects: [...h.effects, { ...h.effects[0]! }] }), 'headline text')
    assert.equal((html.match(/<svg/g) ?? []).length, 3)
    assert.match(html, /<rect [^>]*fill="#f4a261"/) // the kill band
    assert.match(html, /<path d="M[^"]+" fill="#d00000"><title>duplicate-effect/)
    assert.match(html, /<tr class="bad"><td><code>duplicate-effect<\/code>/)
    assert.match(html, /<h3><code>duplicate-effect<\/code> \(1\)<\/h3>/)
    assert.match(html, /partition<\/code> skipped: not root/)
    assert.doesNotMatch(html, /<script|<link|src="http|href="http/)
  })

  test('the campaign table has a row per run; the canary metrics count rounds and anomalies', async () => {
    assert.equal(runsTable([result(), result(cleanHistory(), 4)]).split('\n').length, 4)
    const registry = new Registry()
    const metrics = canaryMetrics(registry)
    const h = cleanHistory()
    recordRound(metrics, result())
    recordRound(metrics, result({ ...h, effects: [...h.effects, { ...h.effects[0]! }] }))
    const text = await registry.metrics()
    assert.match(text, /lifeline_rehearsal_rounds_total\{valid="true"\} 1/)
    assert.match(text, /lifeline_rehearsal_rounds_total\{valid="false"\} 1/)
    assert.match(text, /lifeline_rehearsal_anomalies_total\{kind="duplicate-effect"\} 1/)
    assert.match(text, /lifeline_rehearsal_last_round_valid 0/)
    assert.match(text, /lifeline_rehearsal_events_total\{outcome="applied"\} 12/)
  })
})
