/**
 * The DLQ processor's watcher: every `watchMs` it reads the DLQ database — never the indexer's path, so
 * indexing never waits for it — and
 *
 * - takes the snapshot the processor's gauges serve (src/dlq/metrics.ts);
 * - finds **new error groups** among the records indexed since its last pass (a fingerprint no earlier
 *   record has), counts them and raises `new-error-group`;
 * - keeps a sliding window of indexed records and raises `dead-letter-rate` above the threshold;
 * - raises `approval-requested` for each new pending approval and `job-paused` each time a redrive job
 *   pauses (automatically or by an operator).
 *
 * State lives in memory: a watcher starts from the database's current end (nothing already there is
 * announced again after a restart). Records are read in id order; the indexer is the only writer of
 * records and commits its batches one after the other, so ids arrive in order.
 *
 * @module
 */
import type { Logger } from '../logger.js'
import type { SqlQueryable } from '../store/executor.js'
import { sleep } from '../util/sleep.js'
import type { Masker } from '../failure/masking.js'
import type { DlqMetrics, DlqSnapshot } from './metrics.js'
import { approvalRequested, deadLetterRate, jobPaused, newErrorGroup, type Notification } from './notification.js'

export interface DlqWatchOptions {
  db: SqlQueryable
  metrics: DlqMetrics
  /** Where raised notifications go (the notifier); none: only metrics. */
  notify?: (n: Notification) => void
  /** Raise `dead-letter-rate` when more than `threshold` records were indexed within `windowMs`. */
  deadLetterRate?: { threshold: number; windowMs: number }
  /** Pause between passes, ms. */
  watchMs: number
  /** Error groups exported with their pending count (the largest ones). */
  groupsLimit: number
  /** The processor's masker: error messages are masked again before they leave in a notification. */
  masker?: Masker
  /** The URL operators reach the API at (links in notifications). */
  publicUrl?: string
  logger: Logger
}

export const watchDefaults = { watchMs: 5000, groupsLimit: 20, rateWindowMs: 300_000, batch: 1000 } as const

/** Records indexed per pass within a sliding window, in total and by origin topic (pure: the clock is passed in). */
export class RateWindow {
  readonly #buckets: Array<{ at: number; byTopic: Map<string, number> }> = []
  constructor(readonly windowMs: number) {}
  add(now: number, byTopic: Map<string, number>): void {
    if (byTopic.size > 0) this.#buckets.push({ at: now, byTopic })
    this.#prune(now)
  }
  /** Total and per-topic counts within the window ending at `now`, topics largest first. */
  count(now: number): { total: number; topics: Array<{ topic: string; count: number }> } {
    this.#prune(now)
    const sums = new Map<string, number>()
    for (const b of this.#buckets) for (const [t, n] of b.byTopic) sums.set(t, (sums.get(t) ?? 0) + n)
    const topics = [...sums].map(([topic, count]) => ({ topic, count })).sort((a, b) => b.count - a.count || a.topic.localeCompare(b.topic))
    return { total: topics.reduce((s, t) => s + t.count, 0), topics }
  }
  #prune(now: number): void {
    while (this.#buckets.length > 0 && this.#buckets[0]!.at <= now - this.windowMs) this.#buckets.shift()
  }
}

export interface DlqWatch {
  /** Reads the starting point and takes a first snapshot, then passes every `watchMs` in the background. */
  start(): Promise<void>
  /** Stops after the pass in hand. Idempotent. */
  close(): Promise<void>
}

interface NewRecordRow {
  id: string
  fingerprint: string | null
  error_class: string | null
  error_code: string | null
  error_message: string | null
  topic: string
  origin_topic: string | null
  consumer_group: string | null
  failed_at: Date
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v))

export function createDlqWatch(options: DlqWatchOptions): DlqWatch {
  const { db, metrics, logger: log } = options
  const stop = new AbortController()
  const rate = options.deadLetterRate ? new RateWindow(options.deadLetterRate.windowMs) : undefined
  let lastRecordId = '0'
  let lastApprovalId = '0'
  /**
   * `id:pauses` of the paused jobs seen at the last pass (announced, or paused when the watcher started). Not
   * keyed by `updated_at`: a batch in flight when an operator pauses still records its progress, which moves
   * `updated_at` while the job stays paused, and that is not a second pause. Each pause counts (`pauses`).
   */
  let pausedSeen = new Set<string>()
  let loop: Promise<void> = Promise.resolve()
  let started = false
  let closing: Promise<void> | undefined

  async function pausedJobs(): Promise<Array<{ id: string; pauses: number; status_reason: string | null; updated_at: Date; done: number; total: number; requested_by: string }>> {
    const { rows } = await db.query(`select j.id::text as id, j.pauses, status_reason, updated_at, done, total, requested_by from lifeline_dlq_jobs j where status = 'paused' order by j.id`)
    return rows as never
  }
  const pauseKey = (j: { id: string; pauses: number }) => `${j.id}:${j.pauses}`

  /** The error message as it may leave: masked again under the processor's policies (with the record's value, so quoted clear values are found too). */
  async function safeMessage(row: NewRecordRow): Promise<string | null> {
    if (row.error_message === null || row.error_message === '') return null
    const masker = options.masker
    if (!masker) return row.error_message
    const policyTopic = row.origin_topic !== null && masker.covers(row.origin_topic) ? row.origin_topic : row.topic
    if (!masker.covers(policyTopic)) return row.error_message
    try {
      const { rows } = await db.query<{ value: Buffer | null }>('select value from lifeline_dlq_record_bodies where id = $1', [row.id])
      return masker.mask(policyTopic, { value: rows[0]?.value ?? null, errorMessage: row.error_message, headers: [] }).errorMessage
    } catch (err) {
      log.warn({ err, record: row.id }, 'masking a notification message failed: the message is left out')
      return null
    }
  }

  async function scanRecords(now: Date): Promise<boolean> {
    const { rows } = await db.query<NewRecordRow & Record<string, unknown>>(
      // Ids as text (int8 reads differently in pg and PGlite); ordered by the column, not by that text.
      `select r.id::text as id, fingerprint, error_class, error_code, error_message, topic, origin_topic, consumer_group, failed_at
         from lifeline_dlq_record_bodies r where r.id > $1 order by r.id limit $2`,
      [lastRecordId, watchDefaults.batch],
    )
    if (rows.length === 0) return false
    const before = lastRecordId
    const byTopic = new Map<string, number>()
    const firstOf = new Map<string, { row: NewRecordRow; count: number }>()
    for (const r of rows) {
      const topic = r.origin_topic ?? r.topic
      byTopic.set(topic, (byTopic.get(topic) ?? 0) + 1)
      if (r.fingerprint === null) continue
      const seen = firstOf.get(r.fingerprint)
      if (seen) seen.count++
      else firstOf.set(r.fingerprint, { row: r, count: 1 })
    }
    rate?.add(now.getTime(), byTopic)
    if (firstOf.size > 0) {
      const { rows: old } = await db.query<{ fingerprint: string }>('select distinct fingerprint from lifeline_dlq_record_bodies where fingerprint = any($1::text[]) and id <= $2', [[...firstOf.keys()], before])
      for (const o of old) firstOf.delete(o.fingerprint)
      if (firstOf.size > 0) metrics.newErrorGroups(firstOf.size)
      if (options.notify) {
        for (const [fingerprint, { row, count }] of firstOf) {
          options.notify(
            newErrorGroup({ fingerprint, errorClass: row.error_class, errorCode: row.error_code, message: await safeMessage(row), topic: row.origin_topic ?? row.topic, dlqTopic: row.topic, group: row.consumer_group, records: count, firstRecordId: row.id, at: row.failed_at, ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }) }),
          )
        }
      }
    }
    lastRecordId = rows[rows.length - 1]!.id
    return rows.length === watchDefaults.batch
  }

  async function scanApprovals(): Promise<void> {
    const { rows } = await db.query<{ id: string; action: string; requested_by: string; status: string; created_at: Date; record_id: string | null; job_id: string | null; count: string | null }>(
      `select a.id::text as id, action, requested_by, status, created_at, payload->>'id' as record_id, payload->>'jobId' as job_id, payload->>'count' as count
         from lifeline_dlq_approvals a where a.id > $1 order by a.id limit $2`,
      [lastApprovalId, watchDefaults.batch],
    )
    for (const a of rows) {
      lastApprovalId = a.id
      if (a.status !== 'pending' || !options.notify) continue
      const target = a.job_id !== null ? `job ${a.job_id}` : a.record_id !== null ? `record ${a.record_id}` : null
      const count = a.count !== null && /^\d+$/.test(a.count) ? Number(a.count) : null
      options.notify(approvalRequested({ approvalId: a.id, action: a.action, requestedBy: a.requested_by, target, count, at: a.created_at, ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }) }))
    }
  }

  async function scanPausedJobs(): Promise<void> {
    const jobs = await pausedJobs()
    const now = new Set<string>()
    for (const j of jobs) {
      const key = pauseKey(j)
      now.add(key)
      if (pausedSeen.has(key) || !options.notify) continue
      options.notify(jobPaused({ jobId: j.id, pause: num(j.pauses), reason: j.status_reason, done: num(j.done), total: num(j.total), requestedBy: j.requested_by, at: j.updated_at, ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }) }))
    }
    pausedSeen = now
  }

  /** One statement, so one consistent view of the database (its counts agree with each other). */
  async function snapshot(): Promise<DlqSnapshot> {
    const { rows } = await db.query<{ records: Record<string, number> | null; groups: Array<{ fingerprint: string; error_class: string | null; error_code: string | null; n: number; groups: number }> | null; jobs: Record<string, number> | null; approvals: string | number; oldest: Date | null }>(
      `select
         (select json_object_agg(status, n) from (select status, count(*) as n from lifeline_dlq_record_states group by status) s) as records,
         (select json_agg(g) from (
            select fingerprint, max(error_class) as error_class, max(error_code) as error_code, count(*) as n, count(*) over () as groups
              from lifeline_dlq_records where status = 'pending' and fingerprint is not null
             group by fingerprint order by n desc, fingerprint limit $1) g) as groups,
         (select json_object_agg(status, n) from (select status, count(*) as n from lifeline_dlq_jobs group by status) j) as jobs,
         (select count(*) from lifeline_dlq_approvals where status = 'pending')::text as approvals,
         (select min(created_at) from lifeline_dlq_approvals where status = 'pending') as oldest`,
      [options.groupsLimit],
    )
    const r = rows[0]!
    const groups = r.groups ?? []
    return {
      records: Object.fromEntries(Object.entries(r.records ?? {}).map(([k, v]) => [k, num(v)])),
      topPendingGroups: groups.map((g) => ({ fingerprint: g.fingerprint, errorClass: g.error_class ?? '', errorCode: g.error_code ?? '', pending: num(g.n) })),
      pendingGroups: num(groups[0]?.groups),
      jobs: Object.fromEntries(Object.entries(r.jobs ?? {}).map(([k, v]) => [k, num(v)])),
      approvalsPending: num(r.approvals),
      oldestApprovalAt: r.oldest === null ? undefined : new Date(r.oldest).getTime(),
    }
  }

  /**
   * One pass; returns true when more new records wait (a full batch was read). While it catches up with a
   * backlog it skips the snapshot (counting is the expensive part) until the last batch.
   */
  async function pass(withSnapshot: boolean): Promise<boolean> {
    // The snapshot comes first: whatever it counts, the scans after it have seen.
    if (withSnapshot) metrics.snapshot(await snapshot())
    const now = new Date()
    const more = await scanRecords(now)
    await scanApprovals()
    await scanPausedJobs()
    if (rate && options.notify && options.deadLetterRate) {
      const { total, topics } = rate.count(now.getTime())
      if (total > options.deadLetterRate.threshold) options.notify(deadLetterRate({ count: total, threshold: options.deadLetterRate.threshold, windowMs: options.deadLetterRate.windowMs, topics, at: now, ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }) }))
    }
    return more
  }

  async function run(): Promise<void> {
    let more = false
    while (!stop.signal.aborted) {
      try {
        more = await pass(!more)
        metrics.watchPass('ok')
      } catch (err) {
        if (stop.signal.aborted) return
        more = false
        metrics.watchPass('failed')
        log.error({ err }, 'DLQ watch pass failed; retrying at the next one')
      }
      if (!more) await sleep(options.watchMs, stop.signal).catch(() => undefined)
    }
  }

  return {
    async start() {
      if (started || closing) return
      started = true
      const ends = await db.query<{ records: string; approvals: string }>(
        'select (select coalesce(max(id), 0) from lifeline_dlq_record_bodies)::text as records, (select coalesce(max(id), 0) from lifeline_dlq_approvals)::text as approvals',
      )
      lastRecordId = ends.rows[0]!.records
      lastApprovalId = ends.rows[0]!.approvals
      pausedSeen = new Set((await pausedJobs()).map(pauseKey))
      metrics.snapshot(await snapshot())
      loop = run()
    },
    close() {
      closing ??= (async () => {
        stop.abort()
        await loop
      })()
      return closing
    },
  }
}
