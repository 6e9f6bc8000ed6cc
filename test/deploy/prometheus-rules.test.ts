/**
 * deploy/prometheus/lifeline-rules.yml: `promtool check rules`, `promtool test rules` with a firing and a
 * quiet case for every alert, and every runbook link pointing at a heading of docs/operations.md.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { test } from 'node:test'
import { alertNames, promtool, RULES_FILE, RULES_TEST_FILE } from '../helpers/prometheus.js'

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')))
}

test('promtool check rules: the rules file is valid', () => {
  const r = promtool(['check', 'rules', RULES_FILE])
  assert.equal(r.status, 0, r.output)
  assert.match(r.output, new RegExp(`SUCCESS: ${alertNames().length} rules found`))
})

test('promtool test rules: the unit tests pass', () => {
  const r = promtool(['test', 'rules', RULES_TEST_FILE], dirname(RULES_TEST_FILE))
  assert.equal(r.status, 0, r.output)
  assert.match(r.output, /SUCCESS/)
})

test('every alert has a unit test where it fires and one where it stays quiet', () => {
  const tests = readFileSync(RULES_TEST_FILE, 'utf8')
  const cases = [...tests.matchAll(/alertname: (\w+)\n\s+exp_alerts:( \[\])?/g)].map((m) => ({ alert: m[1]!, quiet: m[2] !== undefined }))
  const names = alertNames()
  assert.deepEqual(
    names,
    ['LifelineDeadLetters', 'LifelineParkedKeyOld', 'LifelineConsumerLag', 'LifelineConsumerStalled', 'LifelinePartitionsPaused', 'LifelineCircuitOpen', 'LifelineRetryStorm', 'LifelineReconciliationDrift', 'LifelineNewErrorGroup', 'LifelineApprovalWaiting', 'LifelineRedriveJobPaused', 'LifelineNotificationsFailing'],
    'the alerts the issue lists (dead letters, new error group, parked key age, lag, stalled, breaker, retry storm, drift, approvals, paused job) and two more',
  )
  for (const name of names) {
    assert.ok(cases.some((c) => c.alert === name && !c.quiet), `${name}: no test where it fires`)
    assert.ok(cases.some((c) => c.alert === name && c.quiet), `${name}: no test where it stays quiet`)
  }
  assert.deepEqual([...new Set(cases.map((c) => c.alert))].filter((a) => !names.includes(a)), [], 'tests of alerts that do not exist')
})

test('every alert has a severity and a runbook_url into a heading of docs/operations.md named after it', () => {
  const rules = readFileSync(RULES_FILE, 'utf8')
  const headings = anchors(readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8'))
  const blocks = rules.split(/^\s*- alert: /m).slice(1)
  assert.equal(blocks.length, alertNames().length)
  for (const block of blocks) {
    const name = block.split('\n')[0]!.trim()
    assert.match(block, /severity: (warning|critical)/, `${name}: severity`)
    const url = /runbook_url: "docs\/operations\.md#([a-z0-9-]+)"/.exec(block)?.[1]
    assert.equal(url, name.toLowerCase(), `${name}: runbook_url must be docs/operations.md#${name.toLowerCase()}`)
    assert.ok(headings.has(url), `docs/operations.md has no heading "${name}" (anchor #${url})`)
  }
})
