/**
 * The operator's part of a rehearsal, through the DLQ processor's library API (what `lifeline dlq` and
 * its HTTP API call): index the DLQ, fix the poison cause, then for each dead letter either redrive it
 * (to retry tier 1, so a parked key's head runs first and the records parked behind it follow in order)
 * or discard it (which releases its key) — to the origin for a consumer without tiers; later a second, forced redrive of the same records to their
 * origin, which must add no effect.
 *
 * @module
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createDlqIndexer } from '../dlq/indexer.js'
import { getRecord, listRecords } from '../dlq/records.js'
import { discardRecord, replayRecord } from '../dlq/redrive/replay.js'
import type { RedriveDeps } from '../dlq/redrive/types.js'
import { createProducer } from '../kafka/index.js'
import type { Logger } from '../logger.js'
import { createParkedKeys } from '../ordering/state-store.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import { CRASH_ENV } from '../util/crash-points.js'
import { seededRandom, deriveSeed } from './random.js'
import type { RehearsalEvent } from './workload.js'
import { loaderArgs } from '../util/node-args.js'

export interface OperatorOptions {
  brokers: string[]
  db: SqlExecutor
  dlqTopic: string
  service: string
  seed: number
  /** Fraction of dead-lettered events discarded instead of redriven (default 0.25), chosen by seed and event id. */
  discard?: number
  /**
   * Where redrives go: retry tier 1 (default; a parked key's head then runs before the records parked
   * behind it) or the origin topic (a consumer without retry tiers).
   */
  target?: 'retry-tier' | 'origin'
  /**
   * A `redrive.*` crash point (`<point>:<nth>`): the redrive then runs in a child process armed with it
   * (operator-child.ts); what it did not replay is replayed here afterwards. Needs `dbUrl`.
   */
  crashAt?: string
  dbUrl?: string
  /** How many DLQ records the topic holds now (the indexer must have stored them all). */
  expected: number
  logger: Logger
  signal?: AbortSignal
  onProgress?(line: string): void
}

export interface OperatorSession {
  /** When the poison cause was fixed (poison events succeed from then on), ms since the epoch. */
  fixedAt: number
  redriven: Array<{ id: string; eventId: string }>
  discarded: string[]
  /** The armed redrive crash point and whether the child reached it. */
  crash: { point: string; reached: boolean; at: number; end: number } | undefined
  /** Sends the forced second redrive of every redriven record to its origin; resolves with the count. */
  redriveAgain(): Promise<number>
  close(): Promise<void>
}

const OPERATOR_CHILD = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './operator-child.ts' : './operator-child.js', import.meta.url))

/** Runs operator-child.ts armed with `crashAt`; collects the ids it replayed; resolves when it exits. */
function runOperatorChild(config: { brokers: string[]; dbUrl: string; service: string; target: string; ids: string[] }, crashAt: string, done: Set<string>): Promise<{ crashed: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...loaderArgs(OPERATOR_CHILD), OPERATOR_CHILD], { env: { ...process.env, LIFELINE_REHEARSAL_OPERATOR: JSON.stringify(config), [CRASH_ENV]: crashAt }, stdio: ['ignore', 'pipe', 'pipe'] })
    let buffer = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString()
      for (const m of buffer.matchAll(/REPLAYED (\S+)\n/g)) done.add(m[1]!)
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('exit', () => resolve({ crashed: stderr.includes(`lifeline: crash point ${crashAt.split(':')[0]}`) }))
  })
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !signal?.aborted) {
    if (await check()) return true
    await new Promise((r) => setTimeout(r, 250))
  }
  return false
}

/** Indexes the DLQ, fixes the cause, redrives or discards every dead letter. */
export async function operate(options: OperatorOptions): Promise<OperatorSession> {
  // One decision per event, not per record: two dead letters of one event (a runtime that dead-letters
  // twice) get the same treatment, as an operator looking at the event would give them.
  const discard = (eventId: string) => seededRandom(deriveSeed(options.seed, `operator:${eventId}`))() < (options.discard ?? 0.25)
  const indexer = createDlqIndexer({ brokers: options.brokers, db: options.db, topics: [options.dlqTopic], groupId: `${options.dlqTopic}.indexer`, logger: options.logger })
  const producer = createProducer({ brokers: options.brokers, clientId: 'rehearsal-operator' })
  await indexer.start()
  await producer.connect()
  const deps: RedriveDeps = { db: options.db, producer, parkedKeys: createParkedKeys(options.db), logger: options.logger, kafka: { brokers: options.brokers } }
  await waitFor(async () => indexer.stats().indexed + indexer.stats().duplicates + indexer.stats().copies >= options.expected, 120_000, options.signal)
  options.onProgress?.(`indexed ${indexer.stats().indexed} dead letters`)
  await options.db.query('update rehearsal_control set fixed = true where id = 1')
  const fixedAt = Date.now()

  const redriven: OperatorSession['redriven'] = []
  const discarded: string[] = []
  const pending = []
  for (let afterId: string | undefined; ; ) {
    const page = await listRecords(options.db, { dlqTopic: options.dlqTopic, status: 'pending', limit: 500, ...(afterId ? { afterId } : {}) })
    if (page.length === 0) break
    pending.push(...page)
    afterId = page.at(-1)!.id
  }
  const toRedrive: OperatorSession['redriven'] = []
  for (const r of pending) {
    const detail = await getRecord(options.db, r.id)
    const event = JSON.parse(detail.value?.toString() ?? 'null') as RehearsalEvent | null
    const eventId = event?.id ?? `dlq:${r.id}`
    if (discard(eventId)) {
      await discardRecord(deps, r.id, { actor: 'rehearsal', reason: 'rehearsal: discarded by the operator' })
      discarded.push(eventId)
    } else toRedrive.push({ id: r.id, eventId })
  }
  const target = options.target ?? 'retry-tier'
  let crash: OperatorSession['crash']
  const done = new Set<string>()
  if (options.crashAt !== undefined && options.dbUrl !== undefined && toRedrive.length > 0) {
    const at = Date.now()
    const exit = await runOperatorChild({ brokers: options.brokers, dbUrl: options.dbUrl, service: options.service, target, ids: toRedrive.map((r) => r.id) }, options.crashAt, done)
    crash = { point: options.crashAt, reached: exit.crashed, at, end: Date.now() }
  }
  for (const r of toRedrive) {
    // A record the crashed child sent but did not finish recording stays `replaying` (or `replayed`): it is
    // in the target topic already, as after a processor killed there; replaying it again would be a
    // second copy the operator did not ask for.
    if (!done.has(r.id) && (await getRecord(options.db, r.id)).status === 'pending') {
      await replayRecord(deps, r.id, { actor: 'rehearsal', target: target === 'origin' ? { kind: 'origin' } : { kind: 'retry-tier', tier: 1, service: options.service } })
    }
    redriven.push(r)
  }
  options.onProgress?.(`redrove ${redriven.length}, discarded ${discarded.length}`)
  return {
    fixedAt,
    crash,
    redriven,
    discarded,
    async redriveAgain() {
      let sent = 0
      for (const r of redriven) {
        await replayRecord(deps, r.id, { actor: 'rehearsal', target: { kind: 'origin' }, force: true })
        sent++
      }
      return sent
    },
    async close() {
      await Promise.allSettled([indexer.close(), producer.close()])
    },
  }
}

/**
 * What the DLQ processor made of a DLQ topic: for each record (`partition@offset`), the dead letter it was
 * stored as, or the one it is a copy of (`lifeline_dlq_copies`). The checker counts records stored as one
 * dead letter once.
 */
export async function readDlqIndex(db: SqlQueryable, dlqTopic: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ partition: number; offset: string; id: string }>(
    `select partition, "offset"::text as "offset", id::text as id from lifeline_dlq_records where topic = $1
     union all
     select partition, "offset"::text, record_id::text from lifeline_dlq_copies where topic = $1`,
    [dlqTopic],
  )
  return Object.fromEntries(rows.map((r) => [`${Number(r.partition)}@${r.offset}`, r.id]))
}
