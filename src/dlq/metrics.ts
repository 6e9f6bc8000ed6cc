/**
 * The DLQ processor's own Prometheus metrics (the indexer's counters live in indexer.ts): what waits in the
 * DLQ database (records by status, pending records of the largest error groups), redrive jobs, approvals,
 * new error groups and the notifier's outcomes. Gauges are read from the last snapshot the watcher took
 * (src/dlq/watch.ts), so a scrape never queries the database. Registered in the registry the user passes
 * (never the global one); a metric already registered under a name is reused. Documented in docs/metrics.md.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { DLQ_STATUSES, type DlqStatus } from './records.js'
import type { RedriveJobStatus } from './redrive/types.js'
import { metric } from '../util/metric.js'

/** Every job status, checked complete by the compiler. */
const JOB_STATUS_SET = { 'awaiting-approval': true, ready: true, running: true, paused: true, completed: true, cancelled: true, failed: true } as const satisfies Record<RedriveJobStatus, true>
export const JOB_STATUSES = Object.keys(JOB_STATUS_SET) as RedriveJobStatus[]

export type NotificationKind = 'new-error-group' | 'dead-letter-rate' | 'job-paused' | 'approval-requested'
export const NOTIFICATION_KINDS: readonly NotificationKind[] = Object.freeze(['new-error-group', 'dead-letter-rate', 'job-paused', 'approval-requested'])

/**
 * What happened to a notification: `sent` (a webhook answered 2xx), `failed` (a webhook gave up after its
 * retries, or refused it), `duplicate` (same dedup key inside the window), `rate-limited` (a webhook's limit
 * was reached), `dropped` (a webhook's queue was full, or close() came first).
 */
export type NotificationOutcome = 'sent' | 'failed' | 'duplicate' | 'rate-limited' | 'dropped'
export const NOTIFICATION_OUTCOMES: readonly NotificationOutcome[] = Object.freeze(['sent', 'failed', 'duplicate', 'rate-limited', 'dropped'])

export interface ErrorGroupGauge {
  fingerprint: string
  errorClass: string
  errorCode: string
  pending: number
}

/** What the watcher read from the database in one pass. */
export interface DlqSnapshot {
  records: Partial<Record<DlqStatus, number>>
  /** The error groups with the most pending records (at most `groupsLimit`). */
  topPendingGroups: ErrorGroupGauge[]
  /** Error groups with at least one pending record. */
  pendingGroups: number
  jobs: Partial<Record<RedriveJobStatus, number>>
  approvalsPending: number
  /** When the oldest pending approval was requested (ms since the epoch), if any. */
  oldestApprovalAt: number | undefined
}

export interface DlqMetrics {
  snapshot(s: DlqSnapshot): void
  newErrorGroups(n: number): void
  watchPass(outcome: 'ok' | 'failed'): void
  notification(kind: NotificationKind, outcome: NotificationOutcome, n?: number): void
}

const noop: DlqMetrics = { snapshot: () => undefined, newErrorGroups: () => undefined, watchPass: () => undefined, notification: () => undefined }


/** The processor's metrics in `registry` (no-ops without one). */
export function createDlqMetrics(registry: Registry | undefined): DlqMetrics {
  if (!registry) return noop
  const registers = [registry]
  let last: DlqSnapshot | undefined
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, s: DlqSnapshot) => void) =>
    metric(registry, name, () =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          if (last) fill(this, last)
        },
      }),
    )
  gauge('lifeline_dlq_records', 'Dead letters in the DLQ database, by status.', ['status'], (g, s) => {
    for (const status of DLQ_STATUSES) g.set({ status }, s.records[status] ?? 0)
  })
  gauge('lifeline_dlq_pending_records', 'Pending dead letters of the largest error groups (by fingerprint).', ['fingerprint', 'error_class', 'error_code'], (g, s) => {
    for (const grp of s.topPendingGroups) g.set({ fingerprint: grp.fingerprint, error_class: grp.errorClass, error_code: grp.errorCode }, grp.pending)
  })
  gauge('lifeline_dlq_pending_groups', 'Error groups with at least one pending dead letter.', [], (g, s) => g.set(s.pendingGroups))
  gauge('lifeline_dlq_jobs', 'Redrive jobs, by status.', ['status'], (g, s) => {
    for (const status of JOB_STATUSES) g.set({ status }, s.jobs[status] ?? 0)
  })
  gauge('lifeline_dlq_approvals_pending', 'Actions waiting for a second person.', [], (g, s) => g.set(s.approvalsPending))
  gauge('lifeline_dlq_approvals_oldest_pending_age_seconds', 'Age of the oldest pending approval (0 when none).', [], (g, s) => g.set(s.oldestApprovalAt === undefined ? 0 : Math.max(0, (Date.now() - s.oldestApprovalAt) / 1000)))

  const counter = (name: string, help: string, labelNames: string[]) => metric(registry, name, () => new Counter({ name, help, labelNames, registers }))
  const newGroups = counter('lifeline_dlq_error_groups_new_total', 'Error groups (fingerprints) seen for the first time.', [])
  const passes = counter('lifeline_dlq_watch_passes_total', "The watcher's passes over the DLQ database, by outcome.", ['outcome'])
  const notifications = counter('lifeline_dlq_notifications_total', 'Webhook notifications, by kind and outcome (sent, failed, duplicate, rate-limited, dropped).', ['kind', 'outcome'])
  // Every series exists from the start at 0, so increase() sees the first event (a series born at 1 would not).
  newGroups.inc(0)
  for (const outcome of ['ok', 'failed']) passes.inc({ outcome }, 0)
  for (const kind of NOTIFICATION_KINDS) for (const outcome of NOTIFICATION_OUTCOMES) notifications.inc({ kind, outcome }, 0)

  return {
    snapshot: (s) => {
      last = s
    },
    newErrorGroups: (n) => newGroups.inc(n),
    watchPass: (outcome) => passes.inc({ outcome }),
    notification: (kind, outcome, n = 1) => notifications.inc({ kind, outcome }, n),
  }
}
