/**
 * The inbox's database profile (bench/README.md, `inbox`): the bench's headline pair without Kafka. N
 * synthetic records are handed to (a) the group-commit inbox with a `batchHandler` writing each group with
 * one multi-row insert and (b) the plain batched insert of the same rows in the same batches, by 32 workers
 * (the bench's concurrency), each starting its next record when its last one is done. Prints, per variant,
 * the throughput, the round trips per group (each extended-protocol Sync and each simple-protocol Query
 * message the client writes), and the CPU time this process and the PostgreSQL backends used.
 *
 *   node --import tsx bench/profile/inbox.ts [records=20000] [rounds=3]
 *
 * On a fresh database on `DATABASE_URL`'s server (default the local one), dropped at the end. Backend CPU is
 * read from /proc/<pid>/stat (Linux, the server on this machine).
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { createInbox, inboxDefaults } from '../../src/effects/inbox.js'
import type { LifelineMessage } from '../../src/runtime/options.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { batchedInsert, insertRows } from '../inbox.js'
import { benchDatabase } from '../lib/database.js'

const n = Number(process.argv[2] ?? 20_000)
const rounds = Number(process.argv[3] ?? 3)
const CONCURRENCY = 32
const GROUP = inboxDefaults.batchMaxRecords

// Round trips: node-postgres ends each extended-protocol statement with a Sync and sends each simple-protocol
// statement as one Query message; either is answered by one ReadyForQuery.
let roundTrips = 0
const proto = pg.Connection.prototype as unknown as Record<'sync' | 'query', (...args: unknown[]) => unknown>
for (const method of ['sync', 'query'] as const) {
  const original = proto[method]
  proto[method] = function (this: unknown, ...args: unknown[]) {
    roundTrips++
    return original.apply(this, args)
  }
}

const NEVER = new AbortController().signal
const message = (i: number): LifelineMessage<Buffer> => {
  const id = `evt-${i}`
  const key = `k-${i % 1000}`
  return { value: Buffer.alloc(0), key: Buffer.from(key), keyText: key, headers: [], header: (name) => (name === 'event-id' ? id : undefined), attempt: 1, signal: NEVER, topic: 'profile', partition: i % 3, offset: Math.floor(i / 3), timestamp: 0, raw: { key: null, value: null } }
}

async function backendCpuMs(db: SqlExecutor): Promise<number> {
  const { rows } = await db.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database()')
  let ticks = 0
  for (const { pid } of rows) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // a backend that just exited
    }
  }
  return ticks * 10
}

async function runVariant(db: SqlExecutor, variant: 'plainBatched' | 'batchHandler'): Promise<string> {
  await db.query('drop table if exists bench_effects')
  await db.query('create table bench_effects (id text primary key, k text not null, payload text not null)')
  await db.query('truncate lifeline_inbox')
  const inbox = createInbox<Buffer>({ db, consumer: 'profile', batchHandler: (events, { tx }) => insertRows(tx, events.map((e) => ({ id: e.context.eventId, key: e.message.keyText ?? '' }))) })
  const insert = batchedInsert(db, GROUP)
  const handle = variant === 'batchHandler' ? inbox.handler : (m: LifelineMessage<Buffer>) => insert(m.header('event-id')!, m.keyText ?? '')
  let next = 0
  const backendBefore = await backendCpuMs(db)
  const trips = roundTrips
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) await handle(message(next++))
    }),
  )
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)
  const tripsUsed = roundTrips - trips
  const backend = (await backendCpuMs(db)) - backendBefore
  const { rows } = await db.query<{ c: number }>('select count(*)::int as c from bench_effects')
  if (rows[0]!.c !== n) throw new Error(`expected ${n} rows, found ${rows[0]!.c}`)
  return `${variant.padEnd(12)} ${Math.round((n / ms) * 1000)} rec/s; ${(tripsUsed / (n / GROUP)).toFixed(2)} round trips per ${GROUP} records; node CPU ${Math.round((used.user + used.system) / 1000)} ms; backends CPU ${backend} ms`
}

const { db, drop } = await benchDatabase('lifeline_profile_inbox', CONCURRENCY)
try {
  for (let r = 0; r < rounds; r++) {
    for (const variant of r % 2 === 0 ? (['plainBatched', 'batchHandler'] as const) : (['batchHandler', 'plainBatched'] as const)) console.log(await runVariant(db, variant))
  }
} finally {
  await drop()
}
