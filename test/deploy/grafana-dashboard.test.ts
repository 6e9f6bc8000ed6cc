/**
 * deploy/grafana/lifeline.json: a Grafana dashboard model with the panels the issue asks for, every PromQL
 * expression parsing (promtool, offline: the expressions become recording rules of a temporary rules file
 * that `promtool check rules` parses), every panel on the `${datasource}` variable. That each metric it names
 * is one Lifeline emits is checked against live /metrics in metrics-names.test.ts.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers/db.js'
import { dashboardExpressions, interpolate, lifelineNames, loadDashboard, promtool } from '../helpers/prometheus.js'

const dashboard = loadDashboard()
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row')

test('the dashboard has the panels the issue lists, each with a query on the datasource variable', () => {
  assert.equal(dashboard.uid, 'lifeline')
  const titles = queryPanels.map((p) => p.title)
  for (const wanted of ['Throughput', 'Lag per topic', 'Retries by tier', 'Dead letters by group', 'Parked keys', 'Breaker state', 'Redrive jobs', 'Inbox duplicates skipped', 'Reorder buffer length', 'Sequence gaps per policy', 'Sequence duplicates', 'Reconciliation findings per job']) {
    assert.ok(titles.includes(wanted), `panel "${wanted}" missing`)
  }
  assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'))
  assert.ok(dashboard.templating.list.some((v) => v.name === 'group' && v.type === 'query'))
  const ids = new Set<number>()
  for (const p of dashboard.panels) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} twice`)
    ids.add(p.id)
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title}: wider than the grid`)
  }
  for (const p of queryPanels) {
    assert.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource`)
    assert.ok((p.targets ?? []).length > 0, `${p.title}: no query`)
    for (const t of p.targets!) {
      assert.equal(t.datasource?.uid, '${datasource}', `${p.title} ${t.refId}: datasource`)
      assert.ok(lifelineNames(t.expr).size > 0, `${p.title} ${t.refId}: names no Lifeline metric: ${t.expr}`)
    }
  }
})

test('every PromQL expression of the dashboard parses (promtool check rules over them, offline)', async (t) => {
  const exprs = dashboardExpressions(dashboard, { annotations: true })
  assert.ok(exprs.length >= 30, `only ${exprs.length} expressions`)
  const file = join(await tempDir(t), 'dashboard-rules.yml')
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `lifeline_dashboard:expr_${i}`, expr: interpolate(e) })) }] }))
  const r = promtool(['check', 'rules', file])
  assert.equal(r.status, 0, r.output)
  assert.match(r.output, new RegExp(`SUCCESS: ${exprs.length} rules found`))

  // The check is real: a broken expression is refused.
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: [{ record: 'x:y', expr: 'sum by (group (rate(lifeline_records_processed_total[1m]))' }] }] }))
  assert.notEqual(promtool(['check', 'rules', file]).status, 0)
})
