/**
 * The `lifeline_reconcile_*` metrics (docs/reconciliation.md), in a registry the caller passes.
 *
 * @module
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { metric } from '../../util/metric.js'
import type { ReconcileKind, ReconcileStatus } from './define.js'

export interface ReconcileMetrics {
  found(name: string, kind: ReconcileKind, n: number): void
  repaired(name: string, kind: ReconcileKind, n: number): void
  repairFailed(name: string, kind: ReconcileKind, n: number): void
  finished(name: string, status: ReconcileStatus): void
}

const metricsByRegistry = new WeakMap<Registry, ReconcileMetrics>()

/** Metrics in a registry the caller passes (never the global one); a metric already registered under the name is reused. */
export function reconcileMetrics(registry: Registry | undefined): ReconcileMetrics | undefined {
  if (registry === undefined) return undefined
  const cached = metricsByRegistry.get(registry)
  if (cached !== undefined) return cached
  const registers = [registry]
  const counter = (name: string, help: string, labelNames: string[]) => metric(registry, name, () => new Counter({ name, help, labelNames, registers }))
  const found = counter('lifeline_reconcile_mismatches_total', 'Findings recorded by reconciliation runs (each run counts the drift it finds), by kind.', ['name', 'kind'])
  const repaired = counter('lifeline_reconcile_repaired_total', 'Findings repaired by reconciliation runs, by kind.', ['name', 'kind'])
  const failed = counter('lifeline_reconcile_repair_failures_total', 'Repair attempts that failed, by kind.', ['name', 'kind'])
  const runs = counter('lifeline_reconcile_runs_total', 'Reconciliation runs that ended, by status (completed, failed, aborted).', ['name', 'status'])
  const last = metric(registry, 'lifeline_reconcile_last_run_timestamp_seconds', () => new Gauge({ name: 'lifeline_reconcile_last_run_timestamp_seconds', help: 'Unix time the last completed run of a reconciliation finished.', labelNames: ['name'], registers }))
  const made: ReconcileMetrics = {
    found: (name, kind, n) => found.inc({ name, kind }, n),
    repaired: (name, kind, n) => repaired.inc({ name, kind }, n),
    repairFailed: (name, kind, n) => failed.inc({ name, kind }, n),
    finished: (name, status) => {
      runs.inc({ name, status })
      if (status === 'completed') last.set({ name }, Date.now() / 1000)
    },
  }
  metricsByRegistry.set(registry, made)
  return made
}
