/**
 * The crash-point matrix (issue 10): for every named crash point of the consumer's protocols, on both
 * databases, a worker process runs a workload in which every kind of head exists at once — a head in a
 * retry tier (two keys: succeeding in tier 1 and in tier 2), a head in the DLQ (released by an operator),
 * a parked record failing again on replay (a new head in the DLQ, released again), an operator release of
 * a head still waiting in a retry tier, a sequence gap skipped by policy with a late straggler, duplicates,
 * and plain keys — and is killed with SIGKILL the first time it passes the point. It is restarted (no crash
 * armed) and driven to the end; then the invariants are checked:
 * - nothing lost: every event not given up by an operator is applied;
 * - no effect twice (the inbox) and no event of a key applied after a later one;
 * - no key stuck: no parked key left;
 * - no head runnable twice: a head given up by an operator never applies, each dead-lettered head is in
 *   the DLQ as one copy (two records only ever with the same park token: a copy produced again after a
 *   crash between its acknowledgement and its confirmation, which the DLQ processor indexes once).
 *
 * Runs as part of `npm run test:faults` (and CI); `npm run test:faults -- --test-name-pattern=park.after-state`
 * runs one point.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { CRASH_POINTS, type CrashPointName } from '../../src/util/crash-points.js'
import { decodeFailureHeaders } from '../../src/runtime/headers.js'
import { RetryHeaders } from '../../src/runtime/retry-topics.js'
import { databaseKinds, freshDatabase, pgliteDataDir, type DatabaseKind } from '../helpers/db.js'
import { producer, randomName, topic } from '../helpers/kafka.js'
import { header, readAll } from '../helpers/lifeline.js'
import { startWorker, type Dump, type Worker } from '../helpers/worker.js'

/** Points this workload cannot pass (other protocols, tested where they live). */
const ELSEWHERE: Partial<Record<CrashPointName, string>> = {
  'redrive.after-produce': 'the DLQ processor (test/dlq/redrive-crash.test.ts)',
  'redrive.after-status': 'the DLQ processor (test/dlq/redrive-crash.test.ts)',
  'recover.after-produce': 'needs an earlier crash: its own test below',
}

interface Event {
  id: string
  key: string
  seq: number
  poison?: boolean
  fails?: number
}

function workload(): Event[] {
  const ev = (key: string, seq: number, extra: Partial<Event> = {}): Event => ({ id: `${key}#${seq}`, key, seq, ...extra })
  const events: Event[] = [
    ev('tier', 1, { fails: 2 }), ev('tier', 2), ev('tier', 3), // 2 attempts in place, succeeds in tier 1
    ev('dlq', 1, { poison: true }), ev('dlq', 2), ev('dlq', 3), // head in the DLQ, released by an operator
    ev('replay', 1, { poison: true }), ev('replay', 2, { poison: true }), ev('replay', 3), // fails again on replay
    ev('oprel', 1, { fails: 99 }), ev('oprel', 2), // fails in tier 1 (a hop), released by an operator while it waits in tier 2
    ev('gap', 1), ev('gap', 3), ev('gap', 4), // seq 2 comes late, after the gap was skipped
    ev('dup', 1), ev('dup', 2), ev('dup', 2), ev('dup', 3), // seq 2 produced twice
  ]
  for (let k = 0; k < 6; k++) for (let s = 1; s <= 3; s++) events.push(ev(`p${k}`, s))
  return events
}

/** What each key must have applied, in order, once the operators did their part. */
const EXPECTED: Record<string, number[]> = {
  tier: [1, 2, 3], dlq: [2, 3], replay: [3], oprel: [2], gap: [1, 3, 4], dup: [1, 2, 3],
  ...Object.fromEntries(Array.from({ length: 6 }, (_, k) => [`p${k}`, [1, 2, 3]])),
}
/** Heads an operator gives up: never applied. */
const GIVEN_UP = ['dlq#1', 'replay#1', 'replay#2', 'oprel#1', 'gap#2']

async function databaseEnv(t: TestContext, kind: DatabaseKind): Promise<Record<string, string>> {
  if (kind === 'pglite') return { PGLITE_DIR: await pgliteDataDir(t) }
  const db = await freshDatabase(t, 'postgres')
  const { rows } = await db.query<{ db: string }>('select current_database() as db')
  await db.close()
  const url = new URL(process.env.DATABASE_URL!)
  url.pathname = `/${rows[0]!.db}`
  return { DATABASE_URL: url.href }
}

/**
 * Runs the workload with `crashes` armed one after the other (each in a new worker); returns the final dump
 * and the points that were passed.
 */
async function run(t: TestContext, kind: DatabaseKind, crashes: string[]): Promise<{ dump: Dump; crashed: string[]; source: string; workers: Worker[] }> {
  const source = await topic(t, { partitions: 2 })
  // Tier 2 holds its head long enough for the operator to release it even across a restart.
  const base = { TOPIC: source, GROUP: randomName('crash'), TIERS: '300,8000', SEQ_TIMEOUT_MS: '1200', ...(await databaseEnv(t, kind)) }
  const workers: Worker[] = []
  const crashed: string[] = []
  const start = async () => {
    const armed = crashes[workers.length] ?? ''
    const w = await startWorker(t, { ...base, LIFELINE_CRASH_AT: armed }, `w${workers.length}`)
    workers.push(w)
    return w
  }
  let w = await start()
  const p = producer(t)
  const events = workload()
  await p.send(events.map((e) => ({ topic: source, key: e.key, value: JSON.stringify(e) })))
  let lateSent = false
  const released = new Map<string, number>()
  const deadline = Date.now() + 120_000
  for (;;) {
    assert.ok(Date.now() < deadline, `the workload did not finish: last dump ${JSON.stringify(await w.dump().catch(() => undefined))}\n${w.stderr.slice(-2000)}`)
    if (!w.alive) {
      await w.exited
      if (w.crashed) crashed.push(crashes[workers.length - 1]!)
      else assert.fail(`worker ${w.name} died without reaching its crash point: ${w.stderr.slice(-3000)}`)
      w = await start()
      continue
    }
    const dump = await w.dump()
    if (!dump) continue
    const applied = (key: string) => dump.effects.filter((e) => e.key === key).map((e) => e.seq)
    // The operators: release each head in the DLQ (and the head waiting in tier 2), once per head.
    for (const k of dump.parked) {
      // (oprel's head reaches the DLQ only if a restart took longer than its tier-2 delay.)
      const wants = (k.key === 'dlq' && k.location === 'dlq') || (k.key === 'replay' && k.location === 'dlq') || (k.key === 'oprel' && (k.location === 'retry:2' || k.location === 'dlq'))
      if (wants && k.status === 'parked' && k.state === 'placed' && (released.get(`${k.key}@${k.location}@${k.records}`) ?? 0) === 0) {
        released.set(`${k.key}@${k.location}@${k.records}`, 1)
        w.send(`release ${k.key}`)
      }
    }
    if (!lateSent && applied('gap').includes(4)) {
      lateSent = true
      await p.send([{ topic: source, key: 'gap', value: JSON.stringify({ id: 'gap#2', key: 'gap', seq: 2 }) }])
    }
    const done = Object.entries(EXPECTED).every(([key, seqs]) => applied(key).length >= seqs.length) && dump.parked.length === 0 && lateSent
    if (done) {
      // Quiet for a moment (a stale copy coming due, a late straggler) before the final look.
      await new Promise((r) => setTimeout(r, 3000))
      const last = await w.dump()
      if (last && last.parked.length === 0) {
        await w.close()
        return { dump: last, crashed, source, workers }
      }
    }
    await new Promise((r) => setTimeout(r, 150))
  }
}

async function checkInvariants(t: TestContext, result: Awaited<ReturnType<typeof run>>): Promise<void> {
  const { dump, source, workers } = result
  // No effect twice; nothing lost; per key in order.
  const ids = dump.effects.map((e) => e.id)
  assert.equal(new Set(ids).size, ids.length, `an effect applied twice: ${ids.filter((id, i) => ids.indexOf(id) !== i).join(', ')}`)
  for (const [key, seqs] of Object.entries(EXPECTED)) {
    assert.deepEqual(dump.effects.filter((e) => e.key === key).map((e) => e.seq), seqs, `${key}: applied exactly its events, in order`)
  }
  for (const id of GIVEN_UP) assert.ok(!ids.includes(id), `${id} was given up by an operator (or skipped as a gap) and must never apply`)
  assert.deepEqual(dump.parked, [], 'no key stuck')
  // The DLQ: dlq#1, replay#1, replay#2 (heads), gap#2 (a straggler); each one logical copy.
  const dlq = await readAll(t, `proto.${source}.dlq`, 4, 20_000)
  // Read a moment longer: a duplicate or an extra dead letter must show up here.
  dlq.push(...(await readAll(t, `proto.${source}.dlq`, 99, 2_000)).slice(dlq.length))
  const byId = new Map<string, Set<string>>()
  for (const r of dlq) {
    const id = (JSON.parse(r.value!.toString()) as Event).id
    byId.set(id, (byId.get(id) ?? new Set()).add(header(r, RetryHeaders.token) ?? `no-token:${r.offset}`))
  }
  byId.delete('oprel#1') // dead-lettered only when a restart outlasted its tier-2 delay; never applied either way
  assert.deepEqual([...byId.keys()].sort(), ['dlq#1', 'gap#2', 'replay#1', 'replay#2'])
  for (const [id, tokens] of byId) assert.equal(tokens.size, 1, `${id}: one copy in the DLQ (copies of a head share its token)`)
  const straggler = dlq.find((r) => (JSON.parse(r.value!.toString()) as Event).id === 'gap#2')!
  assert.equal(decodeFailureHeaders(straggler.headers)?.errorCode, 'LL_SEQUENCE_LATE')
  // The head given up in tier 2 never ran successfully after its release (its copy was stale).
  const invokes = workers.flatMap((w) => w.events.filter((e) => e.ev === 'invoke'))
  assert.ok(invokes.filter((e) => e.id === 'oprel#1' && e.tier === 2).length <= 1, 'the given-up head ran at most once in tier 2 (before its release)')
}

for (const kind of databaseKinds()) {
  for (const point of Object.keys(CRASH_POINTS) as CrashPointName[]) {
    const elsewhere = ELSEWHERE[point]
    test(`${kind}: crash at ${point}`, { skip: elsewhere ? `passed by ${elsewhere}` : false, timeout: 240_000 }, async (t) => {
      const result = await run(t, kind, [point])
      assert.deepEqual(result.crashed, [point], `the workload passed ${point} and the worker died there`)
      await checkInvariants(t, result)
    })
  }
  test(`${kind}: crash at park.after-state, then at recover.after-produce while the next owner produces the pending copy again`, { timeout: 240_000 }, async (t) => {
    const result = await run(t, kind, ['park.after-state', 'recover.after-produce'])
    assert.deepEqual(result.crashed, ['park.after-state', 'recover.after-produce'])
    await checkInvariants(t, result)
  })
}
