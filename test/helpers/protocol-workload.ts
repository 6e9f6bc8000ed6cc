/**
 * The workload of the crash-point matrix and the fault tests (test/faults/): every kind of head at once,
 * driven to its end by "operators" over the protocol worker's stdin, and the invariants checked after it.
 *
 * - `tier`: its head fails twice in place and succeeds in retry tier 1;
 * - `dlq`: its head is poison (to the DLQ), released by an operator;
 * - `replay`: its head and its first follower are poison: the follower fails again on replay (a new head in
 *   the DLQ), released again;
 * - `oprel`: its head fails in tier 1 (a hop) and is released by an operator while it waits in tier 2;
 * - `gap`: seq 2 arrives after the gap at 2 was skipped by policy (a late straggler, dead-lettered);
 * - `dup`: seq 2 produced twice; `p0`..`p5`: plain keys.
 */
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import { RetryHeaders } from '../../src/failure/tier-record.js'
import { freshDatabase, pgliteDataDir, type DatabaseKind } from './db.js'
import { header, readAll } from './lifeline.js'
import { producer as kafkaProducer, randomName } from './kafka.js'
import { startWorker, type Dump, type Worker } from './worker.js'
import type { KafkaProducer } from '../../src/kafka/types.js'

export interface WorkloadEvent {
  id: string
  key: string
  seq: number
  poison?: boolean
  fails?: number
  slowMs?: number
}

export function workload(extra: WorkloadEvent[] = []): WorkloadEvent[] {
  const ev = (key: string, seq: number, more: Partial<WorkloadEvent> = {}): WorkloadEvent => ({ id: `${key}#${seq}`, key, seq, ...more })
  const events: WorkloadEvent[] = [
    ev('tier', 1, { fails: 2 }), ev('tier', 2), ev('tier', 3),
    ev('dlq', 1, { poison: true }), ev('dlq', 2), ev('dlq', 3),
    ev('replay', 1, { poison: true }), ev('replay', 2, { poison: true }), ev('replay', 3),
    ev('oprel', 1, { fails: 99 }), ev('oprel', 2),
    ev('gap', 1), ev('gap', 3), ev('gap', 4),
    ev('dup', 1), ev('dup', 2), ev('dup', 2), ev('dup', 3),
  ]
  for (let k = 0; k < 6; k++) for (let s = 1; s <= 3; s++) events.push(ev(`p${k}`, s))
  return [...events, ...extra]
}

/** What each key must have applied, in order, once the operators did their part. */
export const EXPECTED: Record<string, number[]> = {
  tier: [1, 2, 3], dlq: [2, 3], replay: [3], oprel: [2], gap: [1, 3, 4], dup: [1, 2, 3],
  ...Object.fromEntries(Array.from({ length: 6 }, (_, k) => [`p${k}`, [1, 2, 3]])),
}

/** Events an operator gives up (or a gap policy skipped): never applied. */
export const GIVEN_UP = ['dlq#1', 'replay#1', 'replay#2', 'oprel#1', 'gap#2']

/** Dead letters the workload must leave (one logical copy each). */
export const DEAD_LETTERS = ['dlq#1', 'gap#2', 'replay#1', 'replay#2']

/** The worker's database: a fresh PGlite directory, or a fresh database on the PostgreSQL server (or on `serverUrl`). */
export async function databaseEnv(t: TestContext, kind: DatabaseKind, serverUrl?: string): Promise<Record<string, string>> {
  if (kind === 'pglite') return { PGLITE_DIR: await pgliteDataDir(t) }
  if (serverUrl) return { DATABASE_URL: serverUrl }
  const db = await freshDatabase(t, 'postgres')
  const { rows } = await db.query<{ db: string }>('select current_database() as db')
  await db.close()
  const url = new URL(process.env.DATABASE_URL!)
  url.pathname = `/${rows[0]!.db}`
  return { DATABASE_URL: url.href }
}

export interface RunOptions {
  source: string
  /** The workers' environment (TOPIC, GROUP, the database, KAFKA_BOOTSTRAP...): TIERS and SEQ_TIMEOUT_MS default to the workload's. */
  env: Record<string, string>
  /** LIFELINE_CRASH_AT of the first workers, one per start (later starts run unarmed). */
  crashes?: string[]
  /** How many workers run at once (default 1). */
  members?: number
  /** Called on every look at the workers (about every 150 ms) until it returns true (a fault, once). */
  fault?: (run: RunState) => Promise<boolean>
  /** More events: keys whose poison head the operators release from the DLQ like `dlq`'s. */
  extra?: Extra
  producer?: KafkaProducer
  timeoutMs?: number
}

export interface Extra {
  events: WorkloadEvent[]
  /** Applied per key, in order. */
  expected: Record<string, number[]>
  /** Event ids of heads given up from the DLQ (each in it once). */
  deadLetters: string[]
}

export interface RunState {
  workers: Worker[]
  /** The last dump (of the first live worker). */
  dump: Dump | undefined
  /** Points the workers died at. */
  crashed: string[]
  /** Restarts a worker that died or was killed (by the driver loop). */
  paused: Set<Worker>
}

export interface RunResult {
  dump: Dump
  crashed: string[]
  /** Every worker that ran, in start order. */
  workers: Worker[]
  extra?: Extra
}

/** Produces the workload and drives it to its end (operators, the late straggler, restarts of dead workers). */
export async function runWorkload(t: TestContext, o: RunOptions): Promise<RunResult> {
  const env = { TIERS: '300,5000', SEQ_TIMEOUT_MS: '1200', ...o.env }
  const crashes = o.crashes ?? []
  const state: RunState = { workers: [], dump: undefined, crashed: [], paused: new Set() }
  let starts = 0
  const armedOf = new Map<Worker, string>()
  const all: Worker[] = []
  const start = async () => {
    const armed = crashes[starts] ?? ''
    const w = await startWorker(t, { ...env, LIFELINE_CRASH_AT: armed }, `w${starts}`)
    starts++
    armedOf.set(w, armed)
    all.push(w)
    state.workers.push(w)
    return w
  }
  for (let i = 0; i < (o.members ?? 1); i++) await start()
  const p = o.producer ?? kafkaProducer(t)
  await p.send(workload(o.extra?.events).map((e) => ({ topic: o.source, key: e.key, value: JSON.stringify(e) })))
  const expected = { ...EXPECTED, ...o.extra?.expected }
  const releasedFromDlq = new Set(['dlq', 'replay', ...Object.keys(o.extra?.expected ?? {})])
  let lateSent = false
  let faulted = o.fault === undefined
  // Release commands by head (key, location, records behind it), and when sent: a command sent to a worker
  // that died before acting on it is sent again (a second release of a released key changes nothing).
  const released = new Map<string, number>()
  const deadline = Date.now() + (o.timeoutMs ?? 150_000)
  for (;;) {
    const live = state.workers.filter((w) => w.alive)
    for (const w of state.workers.filter((x) => !x.alive && !x.child.killed && !state.paused.has(x))) {
      // Died on its own: at its crash point (anything else is a failure).
      await w.exited
      state.workers.splice(state.workers.indexOf(w), 1)
      if (w.crashed) state.crashed.push(armedOf.get(w)!)
      else assert.fail(`worker ${w.name} died without reaching a crash point: ${w.stderr.slice(-3000)}`)
    }
    // Keep `members` workers running (a killed one is restarted too).
    for (const w of state.workers.filter((x) => !x.alive && x.child.killed && !state.paused.has(x))) state.workers.splice(state.workers.indexOf(w), 1)
    while (state.workers.filter((w) => !state.paused.has(w)).length < (o.members ?? 1)) await start()
    const w = state.workers.find((x) => x.alive && !state.paused.has(x))
    assert.ok(Date.now() < deadline, `the workload did not finish: last dump ${JSON.stringify(state.dump)}\n${live.map((x) => x.stderr.slice(-1500)).join('\n---\n')}`)
    const dump = w ? await w.dump() : undefined
    if (!dump) {
      await new Promise((r) => setTimeout(r, 150))
      continue
    }
    state.dump = dump
    if (!faulted) faulted = await o.fault!(state)
    const applied = (key: string) => dump.effects.filter((e) => e.key === key).map((e) => e.seq)
    // The operators: release each head in the DLQ (and the one waiting in tier 2), once per head.
    for (const k of dump.parked) {
      const wants = (releasedFromDlq.has(k.key) && k.location === 'dlq') || (k.key === 'oprel' && (k.location === 'retry:2' || k.location === 'dlq'))
      const id = `${k.key}@${k.location}@${k.records}`
      if (wants && k.status === 'parked' && k.state === 'placed' && Date.now() - (released.get(id) ?? 0) > 3000) {
        released.set(id, Date.now())
        w!.send(`release ${k.key}`)
      }
    }
    if (!lateSent && applied('gap').includes(4)) {
      lateSent = true
      await p.send([{ topic: o.source, key: 'gap', value: JSON.stringify({ id: 'gap#2', key: 'gap', seq: 2 }) }])
    }
    // The late straggler's dead letter acknowledged: under load (a broker restarting) it can come after the
    // keys are done, and closing the workers before it would leave it unwritten (uncommitted, not lost).
    const stragglerOut = all.some((x) => x.events.some((e) => e.ev === 'dead-letter' && (e as { code?: string }).code === 'LL_SEQUENCE_LATE'))
    const done = faulted && lateSent && stragglerOut && dump.parked.length === 0 && Object.entries(expected).every(([key, seqs]) => applied(key).length >= seqs.length)
    if (done) {
      // Quiet for a moment (a stale copy coming due, a late straggler) before the final look.
      await new Promise((r) => setTimeout(r, 3000))
      const last = await w!.dump()
      if (last && last.parked.length === 0) {
        for (const x of state.workers) await x.close()
        return { dump: last, crashed: state.crashed, workers: all, ...(o.extra ? { extra: o.extra } : {}) }
      }
    }
    await new Promise((r) => setTimeout(r, 150))
  }
}

/** Nothing lost, no effect twice, per-key order, no key stuck, one logical DLQ copy per dead letter. */
export async function checkInvariants(t: TestContext, source: string, result: RunResult, brokers?: string[]): Promise<void> {
  const { dump, workers } = result
  const expected = { ...EXPECTED, ...result.extra?.expected }
  const deadLetters = [...DEAD_LETTERS, ...(result.extra?.deadLetters ?? [])].sort()
  const ids = dump.effects.map((e) => e.id)
  assert.equal(new Set(ids).size, ids.length, `an effect applied twice: ${dump.effects.filter((e, i) => ids.indexOf(e.id) !== i).map((e) => `${e.id} (by ${(e as { worker?: string }).worker})`).join(', ')}; workers: ${workers.map((w) => w.name).join(', ')}`)
  for (const [key, seqs] of Object.entries(expected)) {
    assert.deepEqual(dump.effects.filter((e) => e.key === key).map((e) => e.seq), seqs, `${key}: applied exactly its events, in order`)
  }
  for (const id of [...GIVEN_UP, ...(result.extra?.deadLetters ?? [])]) assert.ok(!ids.includes(id), `${id} was given up by an operator (or skipped as a gap) and must never apply`)
  assert.deepEqual(dump.parked, [], 'no key stuck')
  const dlqTopic = `proto.${source}.dlq`
  const dlq = await readAll(t, dlqTopic, deadLetters.length, 30_000, brokers)
  // Read a moment longer: a duplicate or an extra dead letter must show up here.
  dlq.push(...(await readAll(t, dlqTopic, 99, 2_000, brokers)).slice(dlq.length))
  const byId = new Map<string, Set<string>>()
  for (const r of dlq) {
    const id = (JSON.parse(r.value!.toString()) as WorkloadEvent).id
    byId.set(id, (byId.get(id) ?? new Set()).add(header(r, RetryHeaders.token) ?? `no-token:${r.offset}`))
  }
  byId.delete('oprel#1') // dead-lettered only when a restart outlasted its tier-2 delay; never applied either way
  assert.deepEqual([...byId.keys()].sort(), deadLetters)
  for (const [id, tokens] of byId) assert.equal(tokens.size, 1, `${id}: one copy in the DLQ (copies of a head share its token)`)
  const straggler = dlq.find((r) => (JSON.parse(r.value!.toString()) as WorkloadEvent).id === 'gap#2')!
  assert.equal(decodeFailureHeaders(straggler.headers)?.errorCode, 'LL_SEQUENCE_LATE')
  const invokes = workers.flatMap((w) => w.events.filter((e) => e.ev === 'invoke'))
  const oprel = invokes.filter((e) => e.id === 'oprel#1' && e.tier === 2)
  // On failure, say enough to tell a redelivery (a worker replaced, a copy produced twice) from a protocol fault.
  const story = () => JSON.stringify({ invokes: oprel, workers: workers.map((w) => ({ name: w.name, events: w.events.filter((e) => e.ev === 'released' || e.ev === 'revoked' || e.ev === 'fenced' || e.ev === 'error' || (e.ev !== 'invoke' && e.ev !== 'commit' && e.ev !== 'dump' && JSON.stringify(e).includes('oprel'))).slice(0, 20) })) })
  assert.ok(oprel.length <= 1, `the given-up head ran at most once in tier 2 (before its release): ${story()}`)
}

export { randomName }
