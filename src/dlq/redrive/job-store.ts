/**
 * The redrive's SQL over jobs (`lifeline_dlq_jobs`, `kind = 'redrive'`): reading and listing them, the
 * dry-run counts, creating one with its frozen item list, status changes, a runner's claim and heartbeat,
 * and the state a run keeps on its job (baseline, canary, marks, its end). The item-level SQL of a running
 * job is in ./batch-store.ts.
 *
 * @module
 */
import type { SqlExecutor, SqlQueryable, SqlRow } from '../../store/executor.js'
import { filterClause, type ParsedFilter } from '../records.js'
import { num, str } from './record-store.js'
import { leaseLockKey, type Marks } from './run.js'
import type { RedriveJob, RedriveJobOptions, RedriveJobStatus, RedriveTarget } from './types.js'

const JOB_COLUMNS = 'id, status, status_reason, filter, target, rate_per_sec, canary, max_failure_rate, force, total, done, succeeded, failed, skipped, requested_by, approved_by, created_at, updated_at, heartbeat_at, options'

function toJob(row: SqlRow): RedriveJob {
  return {
    id: String(row.id), status: row.status as RedriveJobStatus, statusReason: str(row.status_reason), filter: row.filter as Record<string, unknown>, target: row.target as RedriveTarget,
    ratePerSec: num(row.rate_per_sec), canary: num(row.canary), maxFailureRate: num(row.max_failure_rate), force: row.force === true, total: Number(row.total), done: Number(row.done),
    succeeded: Number(row.succeeded), failed: Number(row.failed), skipped: Number(row.skipped), requestedBy: row.requested_by as string, approvedBy: str(row.approved_by),
    createdAt: row.created_at as Date, updatedAt: row.updated_at as Date, heartbeatAt: (row.heartbeat_at as Date | null) ?? null, options: row.options as RedriveJobOptions,
  }
}

// ---- reading and listing ----------------------------------------------------------------------------------

export async function selectJob(db: SqlQueryable, jobId: string): Promise<RedriveJob | undefined> {
  const { rows } = await db.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where id = $1 and kind = 'redrive'`, [jobId])
  return rows.length === 0 ? undefined : toJob(rows[0]!)
}

export async function selectJobs(db: SqlQueryable, statuses: readonly RedriveJobStatus[] | undefined, limit: number): Promise<RedriveJob[]> {
  const { rows } = await db.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where kind = 'redrive' and ($1::text[] is null or status = any($1::text[])) order by id desc limit $2`, [statuses ?? null, limit])
  return rows.map(toJob)
}

/** A record a redrive sends unless it is forced: `pending`; with force also `replayed` and `replaying`. */
const REPLAYABLE_SQL = `(r.status = 'pending' or ($1::boolean and r.status in ('replayed', 'replaying')))`

/** The dry run's counts by topic (`coalesce(origin_topic, topic)`): records, keys, replayable ones, their origin topics and services. */
export async function previewCounts(db: SqlQueryable, filter: ParsedFilter, force: boolean): Promise<SqlRow[]> {
  const params: unknown[] = [force]
  const { rows } = await db.query(
    `select coalesce(r.origin_topic, r.topic) as t, count(*)::int8 as n, count(distinct r.key)::int8 as keys, count(*) filter (where ${REPLAYABLE_SQL})::int8 as replayable,
       array_agg(distinct r.origin_topic) filter (where ${REPLAYABLE_SQL}) as topics, array_agg(distinct r.service) filter (where ${REPLAYABLE_SQL}) as services
     from lifeline_dlq_records r where ${filterClause(filter, params)} group by 1 order by 1`,
    params,
  )
  return rows
}

// ---- creating ---------------------------------------------------------------------------------------------

export async function insertJob(
  tx: SqlQueryable,
  j: { filter: Record<string, unknown>; target: RedriveTarget; ratePerSec: number | null; canary: number; maxFailureRate: number; force: boolean; status: RedriveJobStatus; actor: string; owner: string | null; options: RedriveJobOptions },
): Promise<string> {
  const { rows } = await tx.query(
    `insert into lifeline_dlq_jobs (kind, filter, target, rate_per_sec, canary, max_failure_rate, force, status, total, requested_by, requested_owner, options)
       values ('redrive', $1::jsonb, $2::jsonb, $3, $4, $5, $6, $7, 0, $8, $9, $10::jsonb) returning id`,
    [JSON.stringify(j.filter), JSON.stringify(j.target), j.ratePerSec, j.canary, j.maxFailureRate, j.force, j.status, j.actor, j.owner, JSON.stringify(j.options)],
  )
  return String(rows[0]!.id)
}

/**
 * Freezes the job's item list and counts it, then writes the counts on the job: items in origin topic, key,
 * origin offset order; records not replayable or waiting in another open job are skipped.
 */
export async function freezeItems(tx: SqlQueryable, jobId: string, filter: ParsedFilter, force: boolean): Promise<{ total: number; skipped: number; originTopics: Array<string | null>; services: Array<string | null> }> {
  const params: unknown[] = [force, jobId]
  // One statement freezes the list and counts it: the items (one INSERT ... SELECT, ordered in one sort:
  // work_mem keeps a 100k-record sort in memory) and the counts read from the same selection. Records
  // waiting in another open job are found with one hash join on the open jobs' items (usually few),
  // not one lookup per record.
  await tx.query(`set local work_mem = '64MB'`)
  const { rows: counts } = await tx.query(
    `with busy as (
       select distinct on (i.record_id) i.record_id, i.job_id from lifeline_dlq_job_items i join lifeline_dlq_jobs j on j.id = i.job_id
       where j.status in ('awaiting-approval', 'ready', 'running', 'paused') and i.job_id <> $2 and i.status in ('pending', 'sending')
       order by i.record_id, i.job_id
     ),
     picked as (
       select r.id, r.origin_topic, r.service,
         row_number() over (order by coalesce(r.origin_topic, r.topic), r.key nulls first, r.origin_offset nulls last, r.id) as seq,
         case when busy.job_id is not null then 'in job ' || busy.job_id when ${REPLAYABLE_SQL} then null else r.status end as detail
       from lifeline_dlq_records r left join busy on busy.record_id = r.id
       where ${filterClause(filter, params)}
     ),
     items as (
       insert into lifeline_dlq_job_items (job_id, seq, record_id, status, detail)
       select $2, seq, id, case when detail is null then 'pending' else 'skipped' end, detail from picked
     )
     select (select count(*) from picked)::int8 as total, (select count(*) from picked where detail is not null)::int8 as skipped,
       coalesce((select array_agg(t) from (select distinct origin_topic as t from picked where detail is null) x), '{}') as topics,
       coalesce((select array_agg(v) from (select distinct service as v from picked where detail is null) x), '{}') as services`,
    params,
  )
  const c = counts[0]!
  const total = Number(c.total)
  const skipped = Number(c.skipped)
  await tx.query('update lifeline_dlq_jobs set total = $2, skipped = $3, done = $3 where id = $1', [jobId, total, skipped])
  return { total, skipped, originTopics: c.topics as Array<string | null>, services: c.services as Array<string | null> }
}

/** The status a job's creation decided on (`decide`). */
export async function setCreatedStatus(tx: SqlQueryable, jobId: string, status: RedriveJobStatus): Promise<void> {
  await tx.query('update lifeline_dlq_jobs set status = $2 where id = $1', [jobId, status])
}

/** The job just created, in its creating transaction. */
export async function selectCreatedJob(tx: SqlQueryable, jobId: string): Promise<RedriveJob> {
  const { rows: job } = await tx.query(`select ${JOB_COLUMNS} from lifeline_dlq_jobs where id = $1`, [jobId])
  return toJob(job[0]!)
}

// ---- status -----------------------------------------------------------------------------------------------

/** Moves a job from one of `from` to `to` (a pause counted in `pauses`); undefined when it is in none of them. */
export async function updateJobStatus(db: SqlQueryable, jobId: string, to: RedriveJobStatus, from: readonly RedriveJobStatus[], reason: string): Promise<RedriveJob | undefined> {
  const { rows } = await db.query(
    `update lifeline_dlq_jobs set status = $2, status_reason = $3, updated_at = now(), pauses = pauses + (case when $2 = 'paused' then 1 else 0 end)
      where id = $1 and kind = 'redrive' and status = any($4::text[]) returning ${JOB_COLUMNS}`, [
    jobId, to, reason, [...from],
  ])
  return rows.length > 0 ? toJob(rows[0]!) : undefined
}

// ---- a runner's lease -------------------------------------------------------------------------------------

/**
 * Takes the job for `runner` when it is ready, paused (only when `resume`: an operator's resume), or running
 * with a heartbeat older than `leaseMs` (resuming a canary pause passes the canary); undefined when it cannot
 * be taken. A processor that found the job ready must not take it once an operator paused it meanwhile.
 */
export async function claimJob(db: SqlExecutor, jobId: string, runner: string, leaseMs: number, options: { resume: boolean }): Promise<RedriveJob | undefined> {
  // Exclusive: waits for the previous runner's open batch transactions, whose writes its recovery then sees.
  const rows = await db.transaction(async (tx) => {
    await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [leaseLockKey(jobId)])
    const { rows } = await tx.query(
      `update lifeline_dlq_jobs set status = 'running', runner = $2, heartbeat_at = now(), updated_at = now(),
         status_reason = case when status = 'running' then 'resumed after an interruption' else null end,
         options = case when status = 'paused' and status_reason like 'canary%' then options || '{"canaryPassed": true}'::jsonb else options end
       where id = $1 and kind = 'redrive' and (status = 'ready' or ($4::boolean and status = 'paused') or (status = 'running' and (heartbeat_at is null or heartbeat_at < now() - ($3::int8 * interval '1 millisecond'))))
       returning ${JOB_COLUMNS}`,
      [jobId, runner, leaseMs, options.resume],
    )
    return rows
  })
  return rows.length > 0 ? toJob(rows[0]!) : undefined
}

/** A heartbeat of the job's runner: the job's status, or undefined when the job no longer names this runner. */
export async function beat(db: SqlQueryable, jobId: string, runner: string): Promise<RedriveJobStatus | undefined> {
  const { rows } = await db.query('update lifeline_dlq_jobs set heartbeat_at = now() where id = $1 and runner = $2 returning status', [jobId, runner])
  return rows.length === 0 ? undefined : (rows[0]!.status as RedriveJobStatus)
}

/** Ids of the redrive jobs left `running` with a heartbeat older than `staleMs` (or none). */
export async function staleJobIds(db: SqlQueryable, staleMs: number): Promise<string[]> {
  const { rows } = await db.query(
    `select id from lifeline_dlq_jobs where kind = 'redrive' and status = 'running' and (heartbeat_at is null or heartbeat_at < now() - ($1::int8 * interval '1 millisecond')) order by id`,
    [staleMs],
  )
  return rows.map((r) => String(r.id))
}

// ---- a run's state on its job -----------------------------------------------------------------------------

/** Sends so far and its replays that came back to a DLQ: the job's counters (`came_back` is kept by the indexer). */
export async function jobFailures(db: SqlQueryable, jobId: string): Promise<{ sent: number; failed: number; again: number }> {
  const { rows } = await db.query('select j.succeeded, j.failed, j.came_back as again from lifeline_dlq_jobs j where j.id = $1', [jobId])
  return { sent: Number(rows[0]!.succeeded), failed: Number(rows[0]!.failed), again: Number(rows[0]!.again) }
}

export async function saveBaseline(db: SqlQueryable, jobId: string, baseline: { sent: number; failed: number; again: number }): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set options = options || jsonb_build_object('baseline', $2::jsonb) where id = $1`, [jobId, JSON.stringify(baseline)])
}

/** The seq of the canary's last item (the `canary`-th item not skipped), or undefined when there are fewer. */
export async function canaryEnd(db: SqlQueryable, jobId: string, canary: number): Promise<number | undefined> {
  const { rows } = await db.query(`select seq from lifeline_dlq_job_items where job_id = $1 and status <> 'skipped' order by seq offset $2 limit 1`, [jobId, canary - 1])
  return rows.length === 0 ? undefined : Number(rows[0]!.seq)
}

export async function saveCanaryEnd(db: SqlQueryable, jobId: string, seq: number): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set options = options || jsonb_build_object('canaryLastSeq', $2::int) where id = $1`, [jobId, seq])
}

/** The canary's items sent, and those that failed or came back to the DLQ. */
export async function canaryOutcome(db: SqlQueryable, jobId: string, lastSeq: number): Promise<{ sent: number; bad: number }> {
  const { rows } = await db.query(
    `select count(*) filter (where i.status = 'sent')::int8 as sent, count(*) filter (where i.status = 'failed' or (i.status = 'sent' and (r.status = 'failed-again' or exists (select 1 from lifeline_dlq_records n where n.previous_id = r.id and n.replay_id = i.replay_id))))::int8 as bad
     from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id where i.job_id = $1 and i.seq <= $2 and i.status in ('sent', 'failed')`,
    [jobId, lastSeq],
  )
  return { sent: Number(rows[0]!.sent), bad: Number(rows[0]!.bad) }
}

export async function passCanary(db: SqlQueryable, jobId: string): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set options = options || '{"canaryPassed": true}'::jsonb where id = $1`, [jobId])
}

export async function readMarks(db: SqlQueryable, jobId: string): Promise<Marks> {
  const { rows } = await db.query('select marks from lifeline_dlq_jobs where id = $1', [jobId])
  return (rows[0]?.marks as Marks) ?? {}
}

export async function writeMarks(db: SqlQueryable, jobId: string, marks: Marks): Promise<void> {
  await db.query('update lifeline_dlq_jobs set marks = $2::jsonb where id = $1', [jobId, JSON.stringify(marks)])
}

/** The runner pauses its own job (canary, failure rate) while it still holds it. */
export async function pauseRunning(db: SqlQueryable, jobId: string, runner: string, reason: string): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set status = 'paused', status_reason = $3, updated_at = now(), pauses = pauses + 1 where id = $1 and runner = $2 and status = 'running'`, [jobId, runner, reason])
}

export async function completeRunning(db: SqlQueryable, jobId: string, runner: string): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set status = 'completed', status_reason = null, updated_at = now() where id = $1 and runner = $2 and status = 'running'`, [jobId, runner])
}

export async function failRunning(db: SqlQueryable, jobId: string, runner: string, reason: string): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set status = 'failed', status_reason = $3, updated_at = now() where id = $1 and runner = $2 and status = 'running'`, [jobId, runner, reason])
}

/** Stopped by its caller: left running without a heartbeat or runner, so a resume takes it at once. */
export async function abandonRunning(db: SqlQueryable, jobId: string, runner: string): Promise<void> {
  await db.query(`update lifeline_dlq_jobs set heartbeat_at = null, runner = null where id = $1 and runner = $2 and status = 'running'`, [jobId, runner])
}

/** The runner lets go of its job (whatever its status). */
export async function releaseRunner(db: SqlQueryable, jobId: string, runner: string): Promise<void> {
  await db.query('update lifeline_dlq_jobs set runner = null where id = $1 and runner = $2', [jobId, runner])
}
