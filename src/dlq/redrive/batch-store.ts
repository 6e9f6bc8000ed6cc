/**
 * The redrive's SQL over a running job's items (`lifeline_dlq_job_items`) and the records and replays they
 * name: reading a window of items, marking a prepared batch `sending`, recording a sent batch, and what
 * recovery reads. Every write of a batch holds the job's lease (fencing a runner that lost it).
 *
 * @module
 */
import { dlqConflict } from '../../errors.js'
import type { SqlQueryable } from '../../store/executor.js'
import { againOnConflict } from '../../store/driver-error.js'
import { SOURCE_COLUMNS, num, str, toSource } from './record-store.js'
import { leaseLockKey, type Acked, type Held, type ItemRow, type Marks, type Prepared, type Run, type SendFailure } from './run.js'
import type { RedriveJobStatus } from './types.js'

export async function loadItems(db: SqlQueryable, jobId: string, where: string, params: unknown[], limit?: number): Promise<ItemRow[]> {
  const { rows } = await db.query(
    `select i.seq, i.replay_id, ${SOURCE_COLUMNS} from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id
     where i.job_id = $1 and ${where} order by i.seq${limit === undefined ? '' : ` limit ${Math.floor(limit)}`}`,
    [jobId, ...params],
  )
  return rows.map((row) => ({ seq: Number(row.seq), replayId: str(row.replay_id), source: toSource(row) }))
}

/**
 * Fencing: shares the job's lease lock for the transaction (the runner's own transactions never wait for
 * each other, nor does the job row's update; a claim by another runner waits for them) and checks that the
 * job still names this runner. LL_DLQ_CONFLICT with `details.takenOver` otherwise: the transaction rolls
 * back, nothing of it is written, and the new runner's recovery settles the sends it was about to record.
 */
export async function holdLease(tx: SqlQueryable, run: Run): Promise<void> {
  await tx.query('select pg_advisory_xact_lock_shared(hashtextextended($1, 0))', [leaseLockKey(run.job.id)])
  const { rows } = await tx.query('select 1 from lifeline_dlq_jobs where id = $1 and runner = $2', [run.job.id, run.runner])
  if (rows.length === 0) throw dlqConflict(`redrive job ${run.job.id} was taken over by another runner`, { id: run.job.id, takenOver: true })
}


/**
 * Marks a prepared batch in one transaction: its records `replaying` (no event: see below), then the items
 * of those it moved `sending` with their replay ids, and their replay rows. Returns the items it left out: a
 * record read `pending` that is not any more (an operator discarded or resolved it since the window was
 * read, or a single replay took it) is not sent; the caller skips its item.
 */
export async function markSending(run: Run, ready: Prepared['ready']): Promise<Set<number>> {
  const { deps, job } = run
  return deps.db.transaction(async (tx) => {
    await holdLease(tx, run)
    // `replaying` without an event of its own: the item (`sending`, with its replay id) says which job has the
    // record in flight, and the event that ends it (`replayed`, or `pending` again) names the job and the replay.
    const { rows: moved } = await tx.query(
      `update lifeline_dlq_record_states r set status = 'replaying', status_reason = 'redrive', status_actor = $2, status_at = now() where r.id = any($1::int8[]) and r.status = 'pending' returning r.id`,
      [ready.map((r) => r.item.source.id), run.actor],
    )
    const movedIds = new Set(moved.map((m) => String(m.id)))
    const gone = new Set(ready.filter((r) => r.item.source.status === 'pending' && !movedIds.has(r.item.source.id)).map((r) => r.item.seq))
    const sending = gone.size === 0 ? ready : ready.filter((r) => !gone.has(r.item.seq))
    if (sending.length === 0) return gone
    await tx.query(`update lifeline_dlq_job_items i set status = 'sending', replay_id = x.r from unnest($2::int[], $3::text[]) as x(seq, r) where i.job_id = $1 and i.seq = x.seq`, [
      job.id, sending.map((r) => r.item.seq), sending.map((r) => r.replayId),
    ])
    await tx.query(
      `insert into lifeline_dlq_replays (replay_id, record_id, job_id, target_topic, target_partition, actor, replay_count)
       select x.id, x.rec, $1, x.t, x.p, $2, x.c from unnest($3::text[], $4::int8[], $5::text[], $6::int[], $7::int[]) as x(id, rec, t, p, c) on conflict (replay_id) do nothing`,
      [job.id, run.actor, sending.map((r) => r.replayId), sending.map((r) => r.item.source.id), sending.map((r) => r.planned.topic), sending.map((r) => r.planned.record.partition ?? null), sending.map((r) => r.count)],
    )
    // A forced replay of a record that was not pending keeps its event.
    const forced = sending.filter((r) => r.item.source.status !== 'pending')
    if (forced.length > 0) {
      await tx.query(
        `insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select x.id, x.s, x.s, $4, 'forced replay', jsonb_build_object('jobId', $5::text, 'replayId', x.replay_id) from unnest($1::int8[], $2::text[], $3::text[]) as x(id, replay_id, s)`,
        [forced.map((r) => r.item.source.id), forced.map((r) => r.replayId), forced.map((r) => r.item.source.status), run.actor, job.id],
      )
    }
    return gone
  })
}

/** Records the outcome of sends (acknowledged, failed, or never made) in one transaction. */
export async function recordBatch(
  run: Run,
  acked: readonly Acked[],
  failed: readonly SendFailure[],
  unsent: readonly { seq: number; replayId: string; recordId: string }[],
  prepSkipped: readonly { seq: number; recordId: string; detail: string }[],
  held: readonly Held[] = [],
): Promise<RedriveJobStatus | undefined> {
  const skipped = [...prepSkipped, ...held]
  const { db } = run.deps
  const jobId = run.job.id
  const actor = run.actor
  // Run again on a deadlock: the indexer, linking records that came back, locks the same rows in its order.
  return againOnConflict(() => db.transaction(async (tx) => {
    await holdLease(tx, run)
    if (acked.length > 0) {
      const rids = acked.map((a) => a.replayId)
      // Where each replay landed, on its item (its replay row keeps the topic and partition it was planned with).
      await tx.query(
        `update lifeline_dlq_job_items i set status = 'sent', detail = null, target_partition = x.p, target_offset = x.o from unnest($2::int[], $3::int[], $4::int8[]) as x(seq, p, o)
         where i.job_id = $1 and i.seq = x.seq`,
        [jobId, acked.map((a) => a.seq), acked.map((a) => a.ack.partition), acked.map((a) => String(a.ack.offset))],
      )
      // One row version per record: the replay count, and `replayed` unless it came back already (failed-again).
      await tx.query(
        `with x as (select * from unnest($1::int8[], $2::text[], $3::int[], $4::int8[]) as x(id, replay_id, p, o)),
         up as (
           update lifeline_dlq_record_states r set replay_count = r.replay_count + 1,
             status = case when r.status = 'replaying' then 'replayed' else r.status end,
             status_reason = case when r.status = 'replaying' then 'replayed' else r.status_reason end,
             status_actor = case when r.status = 'replaying' then $5 else r.status_actor end,
             status_at = case when r.status = 'replaying' then now() else r.status_at end
           from x where r.id = x.id
           returning r.id, x.replay_id, x.p, x.o, (select status from lifeline_dlq_record_states o where o.id = r.id) as before
         )
         insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select id, 'replaying', 'replayed', $5, 'replayed', jsonb_build_object('jobId', $6::text, 'replayId', replay_id, 'partition', p, 'offset', o) from up where before = 'replaying'`,
        [acked.map((a) => a.source.id), rids, acked.map((a) => a.ack.partition), acked.map((a) => String(a.ack.offset)), actor, jobId],
      )
    }
    const back = [
      ...failed.map((f) => ({ ...f, reason: `send failed: ${f.error}`.slice(0, 2000) })),
      ...unsent.map((u) => ({ ...u, reason: 'the job stopped before sending it' })),
      ...held.map((h) => ({ ...h, reason: 'an earlier record of its key failed in this run' })),
    ]
    if (back.length > 0) {
      await tx.query('delete from lifeline_dlq_replays where replay_id = any($1::text[]) and target_offset is null', [back.map((b) => b.replayId)])
      await tx.query(
        `with x as (select * from unnest($1::int8[], $2::text[], $3::text[]) as x(id, replay_id, reason)),
         up as (update lifeline_dlq_record_states r set status = 'pending', status_reason = x.reason, status_actor = $4, status_at = now() from x where r.id = x.id and r.status = 'replaying' returning r.id, x.replay_id, x.reason)
         insert into lifeline_dlq_events (record_id, from_status, to_status, actor, reason, detail)
         select id, 'replaying', 'pending', $4, reason, jsonb_build_object('jobId', $5::text, 'replayId', replay_id) from up`,
        [back.map((b) => b.recordId), back.map((b) => b.replayId), back.map((b) => b.reason), actor, jobId],
      )
    }
    if (failed.length > 0) {
      await tx.query(`update lifeline_dlq_job_items i set status = 'failed', detail = x.d from unnest($2::int[], $3::text[]) as x(seq, d) where i.job_id = $1 and i.seq = x.seq`, [
        jobId, failed.map((f) => f.seq), failed.map((f) => `send failed: ${f.error}`.slice(0, 2000)),
      ])
    }
    // Never sent: pending again, keeping its replay id (reused when it is sent).
    if (unsent.length > 0) await tx.query(`update lifeline_dlq_job_items set status = 'pending' where job_id = $1 and seq = any($2::int[])`, [jobId, unsent.map((u) => u.seq)])
    if (skipped.length > 0) {
      await tx.query(`update lifeline_dlq_job_items i set status = 'skipped', detail = x.d from unnest($2::int[], $3::text[]) as x(seq, d) where i.job_id = $1 and i.seq = x.seq`, [
        jobId, skipped.map((s) => s.seq), skipped.map((s) => s.detail.slice(0, 2000)),
      ])
    }
    const marks: Marks = {}
    for (const a of acked) {
      const t = (marks[a.ack.topic] ??= {})
      t[String(a.ack.partition)] = Math.max(t[String(a.ack.partition)] ?? 0, a.ack.offset + 1)
    }
    const { rows } = await tx.query(
      `update lifeline_dlq_jobs set done = done + $2, succeeded = succeeded + $3, failed = failed + $4, skipped = skipped + $5, updated_at = now(),
         marks = (select coalesce(jsonb_object_agg(t, parts), '{}'::jsonb) from (
           select t, jsonb_object_agg(p, o) as parts from (
             select t, p, max(o) as o from (
               select m.key as t, pp.key as p, (pp.value #>> '{}')::int8 as o from jsonb_each(marks) m, jsonb_each(m.value) pp
               union all
               select m.key, pp.key, (pp.value #>> '{}')::int8 from jsonb_each($6::jsonb) m, jsonb_each(m.value) pp
             ) all_marks group by t, p
           ) per_partition group by t
         ) merged)
       where id = $1 returning status, runner`,
      [jobId, acked.length + failed.length + skipped.length, acked.length, failed.length, skipped.length, JSON.stringify(marks)],
    )
    const row = rows[0]
    return row === undefined || row.runner !== run.runner ? undefined : (row.status as RedriveJobStatus)
  }))
}

/** Where the replays `replayIds` went, as far as their rows know (a row without an offset: not acknowledged). */
export async function replayTargets(db: SqlQueryable, replayIds: readonly string[]): Promise<Map<string, { topic: string; partition: number | null; offset: number | null }>> {
  const { rows } = await db.query('select replay_id, target_topic, target_partition, target_offset from lifeline_dlq_replays where replay_id = any($1::text[])', [replayIds])
  const known = new Map<string, { topic: string; partition: number | null; offset: number | null }>()
  for (const r of rows) known.set(r.replay_id as string, { topic: r.target_topic as string, partition: num(r.target_partition), offset: num(r.target_offset) })
  return known
}

/** The origin topics of the job's pending items. */
export async function pendingOriginTopics(db: SqlQueryable, jobId: string): Promise<string[]> {
  const { rows } = await db.query(
    `select distinct r.origin_topic as t from lifeline_dlq_job_items i join lifeline_dlq_records r on r.id = i.record_id where i.job_id = $1 and i.status = 'pending' and r.origin_topic is not null`,
    [jobId],
  )
  return rows.map((r) => r.t as string)
}
