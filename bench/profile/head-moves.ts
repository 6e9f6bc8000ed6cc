/**
 * The ordering protocol's hot statements against a group with many parked keys (bench/README.md, hol notes,
 * "Plans on a table that filled fast"): a fresh database on `DATABASE_URL`'s server and an embedded PGlite,
 * each with `keys` parked keys of one consumer group, then 50 head moves, "placed" marks and head checks of
 * 20 keys each through `ProtocolStore` (named prepared statements on the server). Two states of the table:
 * - `never analyzed`: the keys were written and no ANALYZE ran since (autovacuum has not come by yet on the
 *   server, where the profile turns it off for these tables so it cannot come by halfway; PGlite runs none),
 *   and the store's own ANALYZE is off (`analyzeFirstAt: Infinity`): the runtime before it had none. The statements' plans were made while the table was empty, as a consumer's
 *   first statements make them.
 * - `as the runtime keeps it`: the same, after the store counted those rows and ran its ANALYZE
 *   (src/store/table-stats.ts).
 * The keys are written by one `INSERT ... SELECT` (writing 20,000 keys through a never-analyzed table's
 * plans would take minutes); the store is then told it wrote them, as it counts its own writes.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/profile/head-moves.ts [keys=20000]
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { ANALYZED_TABLES, ProtocolStore, type HeadMove } from '../../src/ordering/protocol-store.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { benchDatabase, benchPglite } from '../lib/database.js'

const keys = Number(process.argv[2] ?? 20_000)
const GROUP = 'g'
const BATCH = 20
const ROUNDS = 50

async function measure(db: SqlExecutor, analyzed: boolean): Promise<string> {
  // Autovacuum off for the run: "not analyzed yet" must not turn into "analyzed" halfway through a measurement.
  if (db.kind === 'postgres') for (const t of ANALYZED_TABLES) await db.query(`alter table ${t} set (autovacuum_enabled = false)`)
  const store = new ProtocolStore(db, analyzed ? {} : { analyzeFirstAt: Infinity })
  const { epoch } = await store.claim(GROUP, 'src', 0, 'm', true)
  const fence = { topic: 'src', partition: 0, epoch }
  const tokens = new Map<string, string>()
  const move = (k: string, offset: number): HeadMove => {
    const prev = tokens.get(k)
    const token = randomUUID()
    tokens.set(k, token)
    return {
      topic: 'src', partition: 0, key: Buffer.from(k), expect: prev ? { status: 'parked', token: prev } : { status: 'none' }, token, headOffset: offset,
      location: 'retry:1', errorCode: 'E', errorMessage: 'poison', copy: { topic: 'tier1', partition: 0, key: Buffer.from(k), value: Buffer.alloc(256, 'x'), headers: [] },
    }
  }
  const heads = (ks: string[]) => ks.map((k) => ({ topic: 'src', key: Buffer.from(k), token: tokens.get(k)! }))
  // A consumer's first statements: plans made on an empty table (a generic plan after five executions).
  for (let i = 0; i < 12; i++) {
    await store.moveHeads(fence, GROUP, [move(`w${i}`, i)])
    await store.placedMany(fence, GROUP, heads([`w${i}`]))
    await store.areHeads(GROUP, heads([`w${i}`]))
  }
  await db.query(
    `insert into lifeline_parked_keys
     select (jsonb_populate_record(null::lifeline_parked_keys, to_jsonb(p) || jsonb_build_object('key', '\\x' || encode(convert_to('f' || g, 'UTF8'), 'hex')))).*
     from lifeline_parked_keys p, generate_series(1, $1::int) g where p.key = 'w0'::bytea`,
    [keys],
  )
  if (analyzed) {
    store.statistics.wrote(keys)
    await store.statistics.settled()
  }
  const batch = Array.from({ length: BATCH }, (_, j) => `b${j}`)
  await store.moveHeads(fence, GROUP, batch.map((k) => move(k, 0)))
  const t0 = performance.now()
  for (let i = 0; i < ROUNDS; i++) {
    const r = await store.moveHeads(fence, GROUP, batch.map((k) => move(k, i)))
    if (r.some((x) => x !== 'ok')) throw new Error(`head move: ${r.join()}`)
  }
  const t1 = performance.now()
  for (let i = 0; i < ROUNDS; i++) await store.placedMany(fence, GROUP, heads(batch))
  const t2 = performance.now()
  for (let i = 0; i < ROUNDS; i++) if ((await store.areHeads(GROUP, heads(batch))).some((h) => !h)) throw new Error('not heads')
  const t3 = performance.now()
  const ms = (a: number, b: number) => ((b - a) / ROUNDS).toFixed(2).padStart(8)
  return `${ms(t0, t1)} ${ms(t1, t2)} ${ms(t2, t3)}`
}

console.log(`${keys} parked keys in the group; ms per statement of ${BATCH} keys (mean of ${ROUNDS})`)
console.log('database  table                     moveHeads placedMany areHeads')
for (const analyzed of [false, true]) {
  const label = (analyzed ? 'as the runtime keeps it' : 'never analyzed').padEnd(25)
  const server = await benchDatabase('lifeline_profile_moves', 1)
  try {
    console.log(`server    ${label} ${await measure(server.db, analyzed)}`)
  } finally {
    await server.drop()
  }
  const lite = await benchPglite('lifeline-profile-moves')
  try {
    console.log(`pglite    ${label} ${await measure(lite.db, analyzed)}`)
  } finally {
    await lite.drop()
  }
}
