/**
 * End to end on a real Prometheus (Debian's package): it scrapes a consumer process's /metrics every second
 * with deploy/prometheus/lifeline-rules.yml loaded and evaluated every second. Dead letters caused on the
 * real broker make `LifelineDeadLetters` fire; a handler that never finishes makes `LifelineConsumerStalled`
 * fire (after its `for: 1m`). Generous timeouts and polling: the machine is shared and slow.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import { spawnForTest } from '../helpers/process.js'
import { alertNames, RULES_FILE, startPrometheus, type PrometheusServer } from '../helpers/prometheus.js'

interface Alert { labels: Record<string, string>; state: 'pending' | 'firing'; value: string }
interface RuleGroup { name: string; rules: Array<{ name: string; type: string; health: string; lastError?: string }> }

async function firing(prom: PrometheusServer, name: string, labels: Record<string, string>): Promise<Alert | undefined> {
  const { alerts } = await prom.api<{ alerts: Alert[] }>('/api/v1/alerts')
  return alerts.find((a) => a.labels.alertname === name && a.state === 'firing' && Object.entries(labels).every(([k, v]) => a.labels[k] === v))
}

async function queryValue(prom: PrometheusServer, promql: string): Promise<number | undefined> {
  const { result } = await prom.api<{ result: Array<{ value: [number, string] }> }>(`/api/v1/query?query=${encodeURIComponent(promql)}`)
  return result[0] === undefined ? undefined : Number(result[0].value[1])
}

test('a real Prometheus with the rules loaded fires LifelineDeadLetters on dead letters and LifelineConsumerStalled on a stalled consumer', { timeout: 600_000 }, async (t) => {
  const source = await topic(t, { partitions: 2 })
  const group = randomName('observed')
  const proc = spawnForTest(t, process.execPath, ['--import', 'tsx', new URL('../fixtures/observed-consumer.ts', import.meta.url).pathname], { env: { ...process.env, TOPIC: source, GROUP: group, STALL_MS: '3000', LIFELINE_LOG_LEVEL: 'silent' } }, 15_000)
  const child = proc.child
  await waitFor(() => proc.stdout().includes('\n') || child.exitCode !== null, 'the consumer process to serve its metrics', 120_000)
  assert.equal(child.exitCode, null, `the consumer process exited: ${proc.stderr()}`)
  const metricsUrl = new URL((JSON.parse(proc.stdout().split('\n')[0]!) as { url: string }).url)

  const prom = await startPrometheus(t, { scrapeTargets: [{ job: 'lifeline-consumer', target: metricsUrl.host }], ruleFiles: [RULES_FILE] })
  await waitFor(async () => (await prom.api<{ activeTargets: Array<{ health: string }> }>('/api/v1/targets')).activeTargets.some((x) => x.health === 'up'), 'the consumer target to be up', 120_000)
  const { groups } = await prom.api<{ groups: RuleGroup[] }>('/api/v1/rules?type=alert')
  assert.deepEqual(groups.flatMap((g) => g.rules.map((r) => r.name)).sort(), [...alertNames()].sort(), 'every alert of the rules file is loaded')
  await waitFor(async () => (await queryValue(prom, `lifeline_consumer_ready{group="${group}"}`)) === 1, 'the consumer ready in Prometheus', 120_000)

  // Dead letters. A fresh Prometheus has no history, so the first dead letter (a counter series born at 1)
  // is not "new" to it (see the rules file); more dead letters after Prometheus has seen the series are.
  const p = producer(t)
  await p.send([{ topic: source, key: 'p0', value: '{"poison":true}' }])
  await waitFor(async () => (await queryValue(prom, `sum(lifeline_records_dead_lettered_total{group="${group}"})`)) === 1, 'Prometheus to scrape the first dead letter', 120_000)
  await p.send([1, 2, 3].map((i) => ({ topic: source, key: `p${i}`, value: '{"poison":true}' })))
  await waitFor(async () => (await firing(prom, 'LifelineDeadLetters', { group, topic: source, error_code: 'E_POISON' })) !== undefined, 'LifelineDeadLetters firing', 180_000)
  const dead = (await firing(prom, 'LifelineDeadLetters', { group }))!
  assert.equal(dead.labels.severity, 'warning')
  assert.ok(Number(dead.value) >= 1, `increase ${dead.value}`)
  assert.equal(await firing(prom, 'LifelineConsumerStalled', { group }), undefined, 'not stalled: dead letters are progress')

  // A handler that never finishes: after STALL_MS the process reports the stall; the alert fires after `for: 1m`.
  await p.send([{ topic: source, key: 'h', value: '{"hang":true}' }])
  await waitFor(async () => (await queryValue(prom, `lifeline_consumer_stalled{group="${group}"}`)) === 1, 'Prometheus to see the stall', 120_000)
  const ready = await fetch(new URL('/readyz', metricsUrl))
  assert.equal(ready.status, 503)
  await waitFor(async () => (await firing(prom, 'LifelineConsumerStalled', { group })) !== undefined, 'LifelineConsumerStalled firing', 240_000)
  assert.equal((await firing(prom, 'LifelineConsumerStalled', { group }))!.labels.severity, 'critical')

  // Every rule evaluated without error on the real series.
  const after = await prom.api<{ groups: RuleGroup[] }>('/api/v1/rules?type=alert')
  const broken = after.groups.flatMap((g) => g.rules).filter((r) => r.health === 'err')
  assert.deepEqual(broken.map((r) => `${r.name}: ${r.lastError}`), [])
  assert.equal(prom.log().includes('level=error'), false, prom.log())
})
