/**
 * The DLQ processor's queries on embedded PGlite, which runs no autovacuum (bench/README.md, dlq-queries):
 * `records` dead letters seeded as the `dlq-queries` benchmark seeds them, then each query the API serves
 * timed (mean of 3 after one warm-up) with the tables never analyzed (their statistics removed, as a PGlite
 * database has them until something runs `ANALYZE`), then analyzed (what the indexer now does as it fills
 * them, src/store/table-stats.ts).
 *
 *   node --import tsx bench/profile/dlq-pglite.ts [records=100000]
 *
 * @module
 */
import { QUERIES, runQuery, seed } from '../dlq-queries.js'
import { benchPglite } from '../lib/database.js'

const records = Number(process.argv[2] ?? 100_000)
const TABLES = "'lifeline_dlq_record_bodies'::regclass, 'lifeline_dlq_record_states'::regclass"
const { db, drop } = await benchPglite('lifeline-profile-dlq-pglite')
try {
  let started = performance.now()
  await seed(db, 1, records) // seeds and analyzes
  console.log(`${records} records seeded in ${(performance.now() - started).toFixed(0)} ms; ms per query (mean of 3)`)
  for (const state of ['never analyzed', 'analyzed']) {
    if (state === 'never analyzed') {
      // PGlite runs as a superuser: forget what seed()'s ANALYZE learnt, as if it had never run.
      await db.query(`delete from pg_statistic where starelid in (${TABLES})`)
      await db.query(`update pg_class set reltuples = -1, relpages = 0 where oid in (${TABLES})`)
    } else await db.query('analyze lifeline_dlq_record_bodies, lifeline_dlq_record_states')
    const out: string[] = []
    for (const q of QUERIES) {
      await runQuery(db, q)
      started = performance.now()
      for (let i = 0; i < 3; i++) await runQuery(db, q)
      out.push(`${q.id} ${((performance.now() - started) / 3).toFixed(1)}`)
    }
    console.log(`${state}: ${out.join(', ')}`)
  }
} finally {
  await drop()
}
