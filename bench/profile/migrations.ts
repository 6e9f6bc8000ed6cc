/**
 * How long the DLQ's table-rewriting migrations take on a large database (docs/operations.md, "Upgrading").
 * On a fresh database of `DATABASE_URL`'s server, migrates to 0013, stores N dead letters as 0013 kept them
 * (one wide table; values of ~200 bytes and Lifeline's failure headers, statuses spread over pending,
 * replayed and discarded), runs `vacuum analyze`, then applies each later migration on its own and prints its
 * time. The database is dropped at the end.
 *
 *   node --import tsx bench/profile/migrations.ts [records=1000000]
 *
 * @module
 */
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { LIFELINE_MIGRATIONS_DIR } from '../../src/store/schema.js'
import { benchDatabase } from '../lib/database.js'

const n = Number(process.argv[2] ?? 1_000_000)
if (!Number.isSafeInteger(n) || n < 1) throw new Error(`records must be a positive integer, got ${process.argv[2]}`)
const all = await loadMigrations(LIFELINE_MIGRATIONS_DIR)
const { db, drop } = await benchDatabase('lifeline_profile_migrations', 1, (x) => migrate(x, all.filter((m) => m.version <= 13)))
try {
  const headers = JSON.stringify(
    ['lifeline.origin.topic', 'lifeline.origin.partition', 'lifeline.origin.offset', 'lifeline.origin.timestamp', 'lifeline.group', 'lifeline.service', 'lifeline.error.class', 'lifeline.error.code',
      'lifeline.error.message', 'lifeline.error.fingerprint', 'lifeline.attempts', 'lifeline.failure.first', 'lifeline.failure.last', 'trace-id'].map((key) => ({ key, value: `${key}-value` })),
  )
  const started = performance.now()
  // Chunks of 100k rows: one statement per chunk keeps the WAL and the sort of each index build bounded.
  for (let from = 1; from <= n; from += 100_000) {
    const to = Math.min(n, from + 99_999)
    await db.query(
      `insert into lifeline_dlq_records (topic, partition, "offset", key, value, headers, "timestamp", format, origin_topic, origin_partition, origin_offset, origin_timestamp,
         consumer_group, service, error_class, error_code, error_message, fingerprint, attempts, first_failure_at, last_failure_at, failed_at, status, status_reason, status_actor, replay_count)
       select 'orders.dlq', g % 12, g, convert_to('key-' || (g % 10000), 'utf8'), convert_to(repeat('x', 200) || g, 'utf8'), $3::jsonb, 0, 'lifeline', 'orders.' || (g % 20), g % 12, g, 0,
         'billing-' || (g % 5), 'svc', 'TypeError', 'E_' || (g % 50), 'failure ' || (g % 500), 'fp-' || (g % 200), 3, now(), now(), now() - (g || ' seconds')::interval,
         case when g % 10 = 0 then 'replayed' when g % 10 = 1 then 'discarded' else 'pending' end, case when g % 10 = 1 then 'noise' end, case when g % 10 < 2 then 'alice' end, case when g % 10 = 0 then 1 else 0 end
       from generate_series($1::int8, $2::int8) g`,
      [from, to, headers],
    )
  }
  await db.query('vacuum analyze')
  console.log(`seeded ${n} records at 0013 in ${Math.round(performance.now() - started)} ms`)
  for (const m of all.filter((m) => m.version > 13)) {
    const t0 = performance.now()
    await migrate(db, all.filter((x) => x.version <= m.version))
    console.log(`${m.file}: ${Math.round(performance.now() - t0)} ms`)
  }
  const { rows } = await db.query<{ n: string }>('select count(*)::text as n from lifeline_dlq_records')
  if (Number(rows[0]!.n) !== n) throw new Error(`the view shows ${rows[0]!.n} records, expected ${n}`)
} finally {
  await drop()
}
