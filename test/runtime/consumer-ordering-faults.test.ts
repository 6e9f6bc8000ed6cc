import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { test } from 'node:test'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { migrateLifeline } from '../../src/store/schema.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { freshDatabase } from '../helpers/db.js'
import { defer, producer, randomName, topic, waitFor } from '../helpers/kafka.js'
import type { TestContext } from 'node:test'

const KEYS = 1000
const PER_KEY = 6

/** The plan: which record of which key is poison, which fail transiently, which arrive twice or swapped. */
function plan() {
  const records: Array<{ key: string; seq: number; poison?: boolean; fails?: number }> = []
  const poisonKeys = new Map<string, number>()
  for (let k = 0; k < KEYS; k++) {
    const key = `key-${k}`
    const seqs = Array.from({ length: PER_KEY }, (_, i) => i + 1)
    // Out of order: every 7th key has seq 2 and 3 swapped, every 11th seq 5 and 6.
    if (k % 7 === 0) [seqs[1], seqs[2]] = [seqs[2]!, seqs[1]!]
    if (k % 11 === 0) [seqs[4], seqs[5]] = [seqs[5]!, seqs[4]!]
    for (const seq of seqs) {
      const r: { key: string; seq: number; poison?: boolean; fails?: number } = { key, seq }
      if (k % 97 === 3 && seq === 3) {
        r.poison = true // ~1%: dead-lettered, the key parks until an operator releases it
        poisonKeys.set(key, seq)
      } else if (k % 13 === 5 && seq === 2) r.fails = 2 // in-place twice, then succeeds in retry tier 1
      else if (k % 29 === 7 && seq === 4) r.fails = 3 // succeeds in retry tier 2
      records.push(r)
      if (k % 17 === 0 && seq === 4) records.push({ ...r }) // a duplicate delivery
    }
  }
  return { records, poisonKeys }
}

function worker(t: TestContext, env: Record<string, string>, name: string): { child: ChildProcess; started: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/ordered-worker.ts', import.meta.url).pathname], {
    env: { ...process.env, ...env, NAME: name },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
  defer(t, () => {
    child.kill('SIGKILL')
  })
  const started = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('STARTED')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before starting: ${stderr}`)))
  })
  return { child, started }
}

async function effectsByKey(db: SqlExecutor): Promise<Map<string, number[]>> {
  const { rows } = await db.query<{ key: string; seq: number }>('select key, seq from effects order by id')
  const out = new Map<string, number[]>()
  for (const r of rows) out.set(r.key, [...(out.get(r.key) ?? []), Number(r.seq)])
  return out
}

test(`${KEYS} sequenced keys with poison, transient failures, duplicates and reordering survive a kill -9 and rebalances while keys are parked`, { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL (a PostgreSQL server shared by the worker processes)', timeout: 240_000 }, async (t) => {
  const source = await topic(t, { partitions: 4 })
  const db = await freshDatabase(t, 'postgres')
  await migrateLifeline(db)
  await db.query('create table effects (id bigserial primary key, key text not null, seq int not null, worker text not null)')
  const { rows } = await db.query<{ db: string }>('select current_database() as db')
  const url = new URL(process.env.DATABASE_URL!)
  url.pathname = `/${rows[0]!.db}`
  const groupId = randomName('ordered')
  const env = { TOPIC: source, GROUP: groupId, DATABASE_URL: url.href }
  const { records, poisonKeys } = plan()
  const p = producer(t)
  const send = (rs: typeof records) => p.send(rs.map((r) => ({ topic: source, key: r.key, value: JSON.stringify(r) })))
  const half = Math.floor(records.length / 2)

  const a = worker(t, env, 'a')
  await a.started
  await send(records.slice(0, half))
  const keys = createParkedKeys(db)
  // Crash while keys are parked and records are in flight.
  await waitFor(async () => (await keys.list({ group: groupId, limit: 10_000 })).length >= 3, 'some keys parked before the crash', 60_000)
  a.child.kill('SIGKILL')
  await new Promise((r) => a.child.once('exit', r))
  const atCrash = { effects: [...(await effectsByKey(db)).values()].reduce((n, s) => n + s.length, 0), parked: (await keys.list({ group: groupId, limit: 10_000 })).length }
  t.diagnostic(`at the kill -9: ${atCrash.effects} effects, ${atCrash.parked} keys parked`)
  assert.ok(atCrash.effects < half, 'the crash happened mid-processing')

  // Two new members share the partitions (a rebalance while keys are parked); the rest arrives meanwhile.
  const b = worker(t, env, 'b')
  const c = worker(t, env, 'c')
  await Promise.all([b.started, c.started])
  await send(records.slice(half))

  // Everything but the poison and what is parked behind it gets applied.
  const expectedBeforeRelease = (key: string): number[] => {
    const poison = poisonKeys.get(key)
    return Array.from({ length: PER_KEY }, (_, i) => i + 1).filter((s) => poison === undefined || s < poison)
  }
  const firstOccurrences = (seqs: number[]) => [...new Set(seqs)]
  await waitFor(
    async () => {
      const effects = await effectsByKey(db)
      for (let k = 0; k < KEYS; k++) {
        const key = `key-${k}`
        if (firstOccurrences(effects.get(key) ?? []).length !== expectedBeforeRelease(key).length) return false
      }
      return true
    },
    'every record except the poison and those parked behind it',
    120_000,
  )
  const parked = await keys.list({ group: groupId, limit: 10_000 })
  assert.deepEqual(parked.map((k) => k.keyText).sort(), [...poisonKeys.keys()].sort(), 'exactly the poison keys stay parked')
  for (const k of parked) {
    assert.equal(k.headLocation, 'dlq')
    assert.equal(k.parkedRecords, PER_KEY - poisonKeys.get(k.keyText!)!, `${k.keyText}: the records after its poison are parked`)
  }

  // Another rebalance (b leaves) and the operator discards every poison record: the parked records replay in order.
  b.child.kill('SIGTERM')
  await new Promise((r) => b.child.once('exit', r))
  for (const k of parked) await keys.release({ group: groupId, topic: source, key: k.key, actor: 'test', reason: 'discarded' })
  await waitFor(async () => (await keys.list({ group: groupId, limit: 10_000 })).length === 0, 'every released key drained', 60_000)

  const effects = await effectsByKey(db)
  let duplicates = 0
  for (let k = 0; k < KEYS; k++) {
    const key = `key-${k}`
    const seqs = effects.get(key) ?? []
    const first = firstOccurrences(seqs)
    const poison = poisonKeys.get(key)
    const expected = Array.from({ length: PER_KEY }, (_, i) => i + 1).filter((s) => s !== poison)
    assert.deepEqual(first, expected, `${key}: every record applied, first applications in sequence order`)
    duplicates += seqs.length - first.length
  }
  const { rows: ev } = await db.query<{ event: string; n: string }>('select event, count(*) as n from lifeline_key_events where group_id = $1 group by event order by event', [groupId])
  t.diagnostic(`re-applied after the crash: ${duplicates}; key events: ${ev.map((e) => `${e.event}=${e.n}`).join(', ')}`)
  // At-least-once: only records that ran before the crash and were not yet committed may run again.
  assert.ok(duplicates < records.length / 4, `re-applied records after the crash: ${duplicates}`)
  const { rows: dead } = await db.query<{ n: string }>("select count(*) as n from lifeline_key_events where group_id = $1 and event = 'parked'", [groupId])
  assert.ok(Number(dead[0]!.n) >= poisonKeys.size, 'every poison parked its key')
})
