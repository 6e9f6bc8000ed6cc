/**
 * The inbox's database cost (bench/README.md, "inbox"): on a fresh database (`DATABASE_URL`'s server),
 * groups of 16 rows are written by two clients at once — the `inbox` benchmark's shape without Kafka and
 * without Node's consumer — as the plain multi-row insert of the baseline, as the claim alone (with and
 * without `ON CONFLICT DO NOTHING`), and as the inbox's one-statement group (claim and effect together,
 * `statement` mode). Prints each one's time per group; rounds alternate, best of each kept.
 *
 *   node --import tsx bench/profile/inbox.ts [groups=2000] [rounds=3]
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import type { SqlExecutor } from '../../src/store/executor.js'
import { openPostgres } from '../../src/store/postgres.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { serverUrl } from '../lib/database.js'

const groups = Number(process.argv[2] ?? 2000)
const rounds = Number(process.argv[3] ?? 3)
const GROUP = 16
const CLIENTS = 2
const PAYLOAD = 'x'.repeat(64)

type Writer = (db: SqlExecutor, ids: string[]) => Promise<unknown>
const claimSql = (conflicts: boolean, from: number) =>
  `insert into lifeline_inbox (consumer, event_id, topic, partition, "offset")
   select $${from}, e, 't', 0, o from unnest($${from + 1}::text[], $${from + 2}::int8[]) as x(e, o)
   ${conflicts ? 'on conflict do nothing ' : ''}returning event_id`
const offsets = (ids: string[]) => ids.map((_, i) => String(i))
const writers: Record<string, Writer> = {
  'plain multi-row insert (baseline)': (db, ids) => db.query(`insert into effects (id, k, payload) values ${ids.map((_, i) => `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`).join(', ')}`, ids.flatMap((id) => [id, 'k', PAYLOAD])),
  'claim, on conflict do nothing': (db, ids) => db.query(claimSql(true, 1), ['c', ids, offsets(ids)]),
  'claim, plain insert': (db, ids) => db.query(claimSql(false, 1), ['c', ids, offsets(ids)]),
  'claim + effect, one statement (on conflict)': (db, ids) =>
    db.query(`with claimed as (${claimSql(true, 3)}), eff as (insert into effects (id, k, payload) select x.id, 'k', $2 from unnest($1::text[]) as x(id) join claimed on claimed.event_id = x.id) select event_id from claimed`, [ids, PAYLOAD, 'c', ids, offsets(ids)]),
  'claim + effect, one statement (plain claim)': (db, ids) =>
    db.query(`with claimed as (${claimSql(false, 3)}), eff as (insert into effects (id, k, payload) select x.id, 'k', $2 from unnest($1::text[]) as x(id) join claimed on claimed.event_id = x.id) select event_id from claimed`, [ids, PAYLOAD, 'c', ids, offsets(ids)]),
}

async function measure(db: SqlExecutor, name: string, write: Writer, round: number): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < groups) {
        const g = next++
        await write(db, Array.from({ length: GROUP }, (_, i) => `${round}-${name}-${g}-${i}`))
      }
    }),
  )
  return ((performance.now() - started) / groups) * CLIENTS
}

const name = `lifeline_profile_inbox_${randomBytes(4).toString('hex')}`
const admin = await openPostgres({ url: serverUrl(), poolSize: 1 })
await admin.query(`create database ${name}`)
const url = new URL(serverUrl())
url.pathname = `/${name}`
const db = await openPostgres({ url: url.href, poolSize: CLIENTS })
try {
  await migrateLifeline(db)
  await db.query('create table effects (id text primary key, k text not null, payload text not null)')
  const best = new Map<string, number>()
  for (let r = 0; r < rounds; r++) {
    const names = Object.keys(writers)
    for (const w of r % 2 === 0 ? names : names.reverse()) best.set(w, Math.min(best.get(w) ?? Infinity, await measure(db, w, writers[w]!, r)))
  }
  const base = best.get('plain multi-row insert (baseline)')!
  console.log(`${groups} groups of ${GROUP} rows, ${CLIENTS} clients, best of ${rounds} rounds; ms per group (and baseline / it)`)
  for (const [w, ms] of best) console.log(`${w.padEnd(46)} ${ms.toFixed(3)} ms  ${(base / ms).toFixed(2)}`)
} finally {
  await db.close()
  await admin.query(`drop database ${name}`)
  await admin.close()
}
