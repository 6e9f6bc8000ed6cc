import assert from 'node:assert/strict'
import { test } from 'node:test'
import { getRecord, indexRecord, listRecords, setStatus } from '../../src/dlq/records.js'
import { jobFailures } from '../../src/dlq/redrive/job-store.js'
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { LIFELINE_MIGRATIONS_DIR } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase } from '../helpers/db.js'

const COLUMNS = `topic, partition, "offset", key, value, headers, "timestamp", format, origin_topic, origin_partition, origin_offset, consumer_group, error_class, error_code, fingerprint, failed_at, replay_id`

for (const kind of databaseKinds()) {
  test(`${kind}: migration 0014 moves every record's status into lifeline_dlq_record_states and counts the replays that came back on their job`, async (t) => {
    const db = await freshDatabase(t, kind)
    const all = await loadMigrations(LIFELINE_MIGRATIONS_DIR)
    await migrate(db, all.filter((m) => m.version < 14))

    // Records as 0013 stored them: one pending, one replayed by job 1 (whose replay came back as the third), one without an origin.
    await db.query(
      `insert into lifeline_dlq_records (${COLUMNS}, status, status_reason, status_actor, replay_count) values
        ('orders.dlq', 0, 1, 'k1', 'v1', '[]', 0, 'lifeline', 'orders', 0, 10, 'billing', 'TypeError', 'E1', 'fp', now(), null, 'pending', null, null, 0),
        ('orders.dlq', 0, 2, 'k2', 'v2', '[]', 0, 'lifeline', 'orders', 0, 11, 'billing', 'TypeError', 'E1', 'fp', now(), null, 'failed-again', 'replay r-1 came back to the DLQ', 'indexer', 1),
        ('raw.dlq', 0, 3, 'k3', 'v3', '[]', 0, 'unknown', null, null, null, null, null, null, 'fp2', now(), null, 'discarded', 'noise', 'alice', 0)`,
    )
    const { rows: ids } = await db.query<{ id: string }>('select id::text as id from lifeline_dlq_records order by id')
    const [pending, replayed, discarded] = ids.map((r) => r.id) as [string, string, string]
    await db.query(`insert into lifeline_dlq_jobs (filter, target, status, total, done, succeeded, requested_by) values ('{}', '{"kind":"origin"}', 'completed', 1, 1, 1, 'alice')`)
    const { rows: jobs } = await db.query<{ id: string }>('select id::text as id from lifeline_dlq_jobs')
    const jobId = jobs[0]!.id
    await db.query(`insert into lifeline_dlq_replays (replay_id, record_id, job_id, target_topic, target_partition, target_offset, actor) values ('r-1', $1, $2, 'orders', 0, 12, 'job:1')`, [replayed, jobId])
    await db.query(
      `insert into lifeline_dlq_records (${COLUMNS}, previous_id) values ('orders.dlq', 0, 4, 'k2', 'v2', '[]', 0, 'lifeline', 'orders', 0, 12, 'billing', 'TypeError', 'E1', 'fp', now(), 'r-1', $1)`,
      [replayed],
    )

    await migrate(db, all)
    const { rows } = await db.query<{ id: string; status: string; status_reason: string | null; status_actor: string | null; replay_count: number; scope_topic: string }>(
      'select id::text as id, status, status_reason, status_actor, replay_count, scope_topic from lifeline_dlq_records order by id',
    )
    assert.deepEqual(rows.slice(0, 3), [
      { id: pending, status: 'pending', status_reason: null, status_actor: null, replay_count: 0, scope_topic: 'orders' },
      { id: replayed, status: 'failed-again', status_reason: 'replay r-1 came back to the DLQ', status_actor: 'indexer', replay_count: 1, scope_topic: 'orders' },
      { id: discarded, status: 'discarded', status_reason: 'noise', status_actor: 'alice', replay_count: 0, scope_topic: 'raw.dlq' },
    ])
    assert.equal(rows.length, 4)
    const { rows: columns } = await db.query<{ n: number }>(`select count(*)::int as n from information_schema.columns where table_name = 'lifeline_dlq_record_bodies' and column_name in ('status', 'status_reason', 'status_actor', 'status_at', 'replay_count')`)
    assert.equal(columns[0]!.n, 0, 'the status columns left the bodies table')
    assert.deepEqual(await jobFailures(db, jobId), { sent: 1, failed: 0, again: 1 })

    // After it: filters, status changes and new records go through the two tables.
    assert.deepEqual((await listRecords(db, { topic: 'raw.dlq' })).map((r) => r.id), [discarded])
    await setStatus(db, pending, 'resolved', { actor: 'alice', reason: 'fixed upstream', from: 'pending' })
    assert.equal((await getRecord(db, pending)).status, 'resolved')
    const stored = await indexRecord(db, { topic: 'payments.dlq', partition: 0, offset: 1, key: null, value: Buffer.from('v'), headers: [], timestamp: Date.now() }, {
      format: 'lifeline', originTopic: 'payments', consumerGroup: 'billing', errorClass: 'Error', errorCode: 'E2', errorMessage: 'no', fingerprint: 'fp3', details: {},
    })
    assert.equal(stored.inserted, true)
    assert.deepEqual((await listRecords(db, { topic: 'payments', status: ['pending'] })).map((r) => r.id), [stored.id])
  })
}
