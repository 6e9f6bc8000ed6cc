/**
 * One rehearsal, end to end: fresh topics and database; the group's members started; the workload
 * produced while the nemesis runs its schedule and a sampler records throughput, lag, parked keys and
 * committed offsets every second; everything healed; the backlog drained; the operator phase (fix,
 * redrive or discard every dead letter, then a second redrive); the evidence collected and checked.
 *
 * @module
 */
import { mkdirSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Logger } from '../logger.js'
import { createParkedKeys } from '../ordering/state-store.js'
import { dlqTopicName } from '../runtime/options.js'
import { retryTopicName } from '../failure/tier-record.js'
import { migrateLifeline } from '../store/schema.js'
import { CRASH_POINTS } from '../util/crash-points.js'
import { check, type CheckResult } from './checker.js'
import { readDlq, readSourcePlaces } from './collect.js'
import { startOffsetSampler } from './sampler.js'
import { createEffectsTables, readEffects, readKeyState } from './effects.js'
import { freshDatabase, slotNetworks, type Environment, type SlotNetwork } from './environment.js'
import { Nemesis, skipReason } from './faults.js'
import type { History, OperatorLog } from './history.js'
import { readMemberLog } from './member-log.js'
import { saveHistory } from './recheck.js'
import { Members } from './members.js'
import { planSchedule, ROOT_KINDS, type FaultKind, type ScheduledFault } from './nemesis.js'
import { operate, readDlqIndex } from './operator.js'
import { runProducers, valueShas } from './producer.js'
import { generateWorkload, type WorkloadOptions } from './workload.js'
import { deriveSeed } from './random.js'

export interface RunOptions {
  /** The consumer module (default: the built-in reference consumer). */
  consumer?: string
  seconds: number
  events: number
  keys: number
  consumers: number
  partitions: number
  faults: FaultKind[]
  periodMs: number
  seed: number
  sessionTimeoutMs: number
  commitIntervalMs: number
  retryDelaysMs: number[]
  drainTimeoutMs: number
  /** Fraction of fault periods left quiet (default 0.25). */
  quiet?: number
  /** Where raw logs go (a folder per run). */
  rawDir: string
  workload?: Partial<Omit<WorkloadOptions, 'events' | 'keys' | 'seed' | 'produceMs'>>
  discard?: number
  logger: Logger
  signal?: AbortSignal
  progress?(p: Progress): void
}

export interface Progress {
  phase: string
  elapsedS: number
  produced: number
  planned: number
  applied: number
  lag: number | undefined
  parked: number | undefined
  fault: string | undefined
}

export interface TimelineSample {
  at: number
  produced: number
  applied: number
  lag: number | null
  parked: number | null
}

export interface RunResult {
  run: string
  seed: number
  startedAt: number
  endedAt: number
  options: Record<string, unknown>
  check: CheckResult
  schedule: ScheduledFault[]
  faults: History['faults']
  skipped: Array<{ kind: FaultKind; reason: string }>
  crashes: Array<{ member: string; crashPoint: string | undefined; signal: string | null; at: number }>
  timeline: TimelineSample[]
  phases: Record<string, number>
  rawDir: string
  environment: { brokers: number; external: boolean; postgres: string; root: boolean; netns: boolean }
}

export const REFERENCE_CONSUMER = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './reference-consumer.ts' : './reference-consumer.js', import.meta.url))

/** Crash points a consumer can reach: `redrive.*` belong to the DLQ processor's redrive, not a consumer. */
export function consumerCrashPoints(): string[] {
  return Object.keys(CRASH_POINTS).filter((p) => !p.startsWith('redrive.'))
}

/** Crash points of the DLQ processor's redrive (the operator phase arms one of them). */
export function redriveCrashPoints(): string[] {
  return Object.keys(CRASH_POINTS).filter((p) => p.startsWith('redrive.'))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export async function runRehearsal(env: Environment, options: RunOptions): Promise<RunResult> {
  const startedAt = Date.now()
  const run = `rh-${new Date(startedAt).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${options.seed}`
  const rawDir = resolve(options.rawDir, run)
  mkdirSync(rawDir, { recursive: true })
  const topic = `rh.${run}`
  const service = 'rehearsal'
  const groupId = `rh-${run}`
  const dlqTopic = dlqTopicName(service, topic)
  const phases: Record<string, number> = {}
  let phase = 'setup'
  const mark = (name: string) => {
    phases[name] = Date.now()
    phase = name
  }
  mark('setup')
  await env.admin.createTopics([{ topic, partitions: options.partitions, ...(env.brokers.length >= 3 ? { replicationFactor: 3 } : {}) }])
  const database = await freshDatabase(env, run.replace(/[^a-z0-9]/gi, '_').toLowerCase())
  const db = database.db
  await createEffectsTables(db)
  await migrateLifeline(db)

  const wantsNetwork = options.faults.some((k) => ROOT_KINDS.includes(k))
  const extraSlots = options.faults.includes('scale') ? 4 : 0
  let network: SlotNetwork | undefined
  if (wantsNetwork && env.netnsUnavailable === undefined) network = await slotNetworks(env, options.consumers + extraSlots)
  // Resolved here, so a member in a network namespace (or any working directory) loads the same file.
  const consumerModule = options.consumer === undefined ? REFERENCE_CONSUMER : options.consumer.startsWith('file:') ? options.consumer : pathToFileURL(resolve(options.consumer)).href
  const brokerPorts = env.brokers.map((b) => Number(b.split(':').at(-1)))
  const members = new Members(
    rawDir,
    (slot) => ({
      brokers: env.brokers,
      groupId,
      service,
      topic,
      dbUrl: database.socketUrl,
      module: consumerModule,
      sessionTimeoutMs: options.sessionTimeoutMs,
      commitIntervalMs: options.commitIntervalMs,
      retryDelaysMs: options.retryDelaysMs,
      ...(network?.netns.has(slot) ? { forward: { host: network.netns.get(slot)!.hostIp, ports: brokerPorts } } : {}),
    }),
    (slot) => network?.netns.get(slot)?.exec ?? [],
  )
  const faultEnv = { members, consumers: options.consumers, cluster: env.cluster, postgres: env.postgres, netns: network?.netns ?? new Map(), proxies: network?.proxies ?? [], root: env.root }
  const nemesis = new Nemesis(faultEnv)
  // Kinds this environment cannot inject are reported with their reason and left out of the schedule.
  for (const kind of options.faults) {
    const reason = skipReason(kind, faultEnv)
    if (reason !== undefined) nemesis.skipped.set(kind, reason)
  }
  const runnable = options.faults.filter((k) => !nemesis.skipped.has(k))
  const workload = generateWorkload({ ...(options.workload ?? {}), events: options.events, keys: options.keys, seed: options.seed, produceMs: Math.floor(options.seconds * 1000 * 0.8) })
  const schedule = planSchedule({ seed: options.seed, durationMs: options.seconds * 1000, periodMs: options.periodMs, kinds: runnable, consumers: options.consumers, brokers: env.brokers.length, sessionTimeoutMs: options.sessionTimeoutMs, crashPoints: consumerCrashPoints(), ...(options.quiet === undefined ? {} : { quiet: options.quiet }) })

  const timeline: TimelineSample[] = []
  const offsetSampler = startOffsetSampler({ brokers: env.brokers, group: groupId, topic })
  const applied = new Set<string>()
  let effectRows = 0
  let lastEffectId = 0
  const parked = createParkedKeys(db)
  let producer: ReturnType<typeof runProducers> | undefined
  const abort = new AbortController()
  options.signal?.addEventListener('abort', () => abort.abort())
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const t = Date.now()
      const latest = offsetSampler.latest()
      const o = latest !== undefined && t - latest.at < 3000 ? latest : undefined
      let parkedNow: number | null = null
      try {
        // Ids are taken at insert and committed out of order: look back a margin (the set ignores repeats);
        // the drain waits below ask for the ids still missing exactly.
        const { rows } = await db.query<{ id: string; event_id: string }>('select id, event_id from rehearsal_effects where id > $1', [lastEffectId - 5000])
        for (const r of rows) {
          applied.add(r.event_id)
          lastEffectId = Math.max(lastEffectId, Number(r.id))
        }
        effectRows = Number((await db.query<{ n: string }>('select count(*) as n from rehearsal_effects')).rows[0]!.n)
        parkedNow = (await parked.list({ group: groupId, status: 'parked', limit: 10_000 })).length
      } catch (err) {
        // The database is down (a fault): this sample has no database figures.
        if (!(err instanceof Error)) throw err
      }
      const lag = o ? o.partitions.reduce((n, p) => n + Math.max(0, p.high - Math.max(0, p.committed)), 0) : null
      timeline.push({ at: t, produced: producer?.acked ?? 0, applied: effectRows, lag, parked: parkedNow })
      options.progress?.({ phase, elapsedS: Math.round((t - startedAt) / 1000), produced: producer?.acked ?? 0, planned: workload.sends.length, applied: applied.size, lag: lag ?? undefined, parked: parkedNow ?? undefined, fault: nemesis.current })
      await sleep(Math.max(0, 1000 - (Date.now() - t)))
    }
  })()

  let operatorLog: OperatorLog = { fixedAt: Number.POSITIVE_INFINITY, redriven: [], discarded: [], secondRedrive: undefined, finalState: new Map(), ran: false }
  let healedAt = 0
  try {
    for (let i = 0; i < options.consumers; i++) members.start(i)
    await members.ready(180_000)
    mark('running')
    const startAt = Date.now() + 500
    producer = runProducers({ brokers: env.brokers, topic, workload, startAt })
    await nemesis.run(schedule, startAt, abort.signal)
    while (Date.now() < startAt + options.seconds * 1000 && !abort.signal.aborted) await sleep(200)
    mark('healing')
    await nemesis.healAll()
    healedAt = Date.now()
    mark('draining')
    const interrupted = new Promise<void>((r) => (abort.signal.aborted ? r() : abort.signal.addEventListener('abort', () => r(), { once: true })))
    // Ctrl-C: no drain, no operator phase; the run is not a verdict (the campaign drops it) and closes below.
    await Promise.race([producer.done, sleep(120_000), interrupted])
    // Everything acknowledged that is not poison and not held behind poison must apply.
    const required = () => {
      const lowestPoison = new Map<string, number>()
      const acked = new Set(producer!.log.filter((p) => p.outcome === 'ok').map((p) => p.eventId))
      for (const e of workload.events) if (e.kind === 'poison' && acked.has(e.id)) lowestPoison.set(e.key, Math.min(lowestPoison.get(e.key) ?? Infinity, e.seq))
      return workload.events.filter((e) => acked.has(e.id) && e.kind !== 'poison' && !(e.seq > (lowestPoison.get(e.key) ?? Infinity))).map((e) => e.id)
    }
    /** How many of `ids` have no effect yet (asked exactly for the ones the sampler has not seen). */
    const unapplied = async (ids: string[]): Promise<number> => {
      const missing = ids.filter((id) => !applied.has(id))
      if (missing.length === 0) return 0
      const { rows } = await db.query<{ event_id: string }>('select distinct event_id from rehearsal_effects where event_id = any($1::text[])', [missing])
      for (const r of rows) applied.add(r.event_id)
      return missing.length - rows.length
    }
    await waitUntil(async () => (await unapplied(required())) === 0, options.drainTimeoutMs, abort.signal)
    // Dead letters settle: the DLQ stops growing (the tiers' delays have passed).
    let dlqCount = -1
    await waitUntil(async () => {
      const n = (await env.admin.topicOffsets(dlqTopic)).reduce((s, p) => s + p.high, 0)
      const stable = n === dlqCount
      dlqCount = n
      return stable
    }, 60_000, abort.signal, Math.max(...options.retryDelaysMs) * 2 + 2000)

    if (!abort.signal.aborted) {
      mark('operator')
      const tiers = (await env.admin.listTopics()).includes(retryTopicName(service, topic, 1))
      // With crash points among the faults, the operator's redrive runs in a child armed with a `redrive.*` point.
      const redrivePoints = redriveCrashPoints()
      const crashAt = options.faults.includes('crash-point') && redrivePoints.length > 0 ? `${redrivePoints[deriveSeed(options.seed, 'redrive-crash') % redrivePoints.length]}:${1 + (deriveSeed(options.seed, 'redrive-nth') % 3)}` : undefined
      const session = await operate({ brokers: env.brokers, db, dlqTopic, service, seed: options.seed, discard: options.discard, target: tiers ? 'retry-tier' : 'origin', expected: dlqCount, logger: options.logger, signal: abort.signal, ...(crashAt ? { crashAt, dbUrl: database.url } : {}) })
      if (session.crash) nemesis.applied.push({ kind: 'crash-point', target: 'operator', detail: `${session.crash.point} (${session.crash.reached ? 'reached' : 'not reached'})`, start: session.crash.at, end: session.crash.end })
      const fixedAt = session.fixedAt
      const discarded = new Set(session.discarded)
      const acked = () => new Set(producer!.log.filter((p) => p.outcome === 'ok').map((p) => p.eventId))
      await waitUntil(async () => {
        const ok = acked()
        return (await unapplied(workload.events.filter((e) => ok.has(e.id) && !discarded.has(e.id)).map((e) => e.id))) === 0
      }, options.drainTimeoutMs, abort.signal)
      await sleep(3000)
      const before = Number((await db.query<{ n: string }>('select count(*) as n from rehearsal_effects')).rows[0]!.n)
      const sent = await session.redriveAgain()
      await sleep(Math.max(...options.retryDelaysMs) * 2 + 8000)
      const after = Number((await db.query<{ n: string }>('select count(*) as n from rehearsal_effects')).rows[0]!.n)
      await session.close()
      operatorLog = { fixedAt, redriven: session.redriven.map((r) => r.eventId), discarded: session.discarded, secondRedrive: { sent, effectsBefore: before, effectsAfter: after }, finalState: new Map(), ran: true }
    }
  } finally {
    mark('checking')
    sampling = false
    await sampler
    await offsetSampler.stop()
    await producer?.stop()
    await members.closeAll()
    await network?.close()
  }

  const dlq = await readDlq(env.brokers, env.admin, dlqTopic)
  const acked = new Set((producer?.log ?? []).flatMap((p) => (p.outcome === 'ok' ? [`${p.partition}@${p.offset}`] : [])))
  const unackedCopies: Record<string, string> = {}
  for (const [place, eventId] of await readSourcePlaces(env.brokers, env.admin, topic)) if (!acked.has(place)) unackedCopies[place] = eventId
  const dlqIndex = operatorLog.ran ? await readDlqIndex(db, dlqTopic) : undefined
  operatorLog.finalState = await readKeyState(db)
  const effects = await readEffects(db)
  await db.close()
  const memberEntries = readdirSync(rawDir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readMemberLog(join(rawDir, f)))
  const history: History = {
    topic,
    partitions: options.partitions,
    events: workload.events,
    produces: producer?.log ?? [],
    members: memberEntries,
    effects,
    dlq,
    offsets: offsetSampler.samples,
    faults: nemesis.applied,
    operator: operatorLog,
    healedAt,
    valueSha: valueShas(workload),
    ...(dlqIndex === undefined ? {} : { dlqIndex }),
    unackedCopies,
  }
  saveHistory(rawDir, history)
  const result = check(history)
  return {
    run,
    seed: options.seed,
    startedAt,
    endedAt: Date.now(),
    options: { consumer: options.consumer ?? 'reference', seconds: options.seconds, events: options.events, keys: options.keys, consumers: options.consumers, partitions: options.partitions, faults: options.faults, periodMs: options.periodMs, sessionTimeoutMs: options.sessionTimeoutMs, topic, groupId, dlqTopic },
    check: result,
    schedule,
    faults: nemesis.applied,
    skipped: [...nemesis.skipped].map(([kind, reason]) => ({ kind, reason })),
    crashes: members.exits.filter((e) => e.signal === 'SIGKILL' || e.crashPoint !== undefined).map((e) => ({ member: e.member, crashPoint: e.crashPoint, signal: e.signal, at: e.at })),
    timeline,
    phases,
    rawDir,
    environment: { brokers: env.brokers.length, external: env.cluster === undefined, postgres: env.postgres.version, root: env.root, netns: network !== undefined },
  }
}

/** Polls `check` until true, `timeoutMs` passed, or `signal` aborted; `every` ms apart (default 500). */
async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, signal: AbortSignal, every = 500): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !signal.aborted) {
    if (await check()) return true
    await sleep(every)
  }
  return false
}
