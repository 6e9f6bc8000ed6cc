/**
 * The nemesis's schedule (pure): the run is cut into periods (~30 s); each period is quiet or brings one
 * fault, chosen with the seed from the kinds enabled, that begins a little after the period starts and
 * heals before it ends. The first period is always quiet (a warm-up) and the schedule ends before the
 * run does, so the last stretch measures recovery. The same seed gives the same schedule.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import { deriveSeed, pick, randomInt, seededRandom } from './random.js'

export const FAULT_KINDS = {
  kill: 'a consumer is killed with SIGKILL, restarted a few seconds later',
  'crash-point': 'a consumer is restarted with LIFELINE_CRASH_AT=<point>:<nth> (a named crash point) and killed there; restarted clean afterwards (redrive.* points: the operator\'s redrive, in a child process)',
  pause: 'a consumer is stopped with SIGSTOP past its session timeout (a zombie), then SIGCONT',
  scale: 'the group is scaled out by one consumer (started) or in by one (closed with SIGTERM), then back',
  'broker-kill': 'one broker is killed with SIGKILL, restarted later (3 brokers only)',
  'broker-kill-all': 'every broker is killed with SIGKILL, all restarted later (3 brokers only)',
  'broker-restart': 'one broker is stopped cleanly (SIGTERM), restarted later (3 brokers only)',
  postgres: 'the private PostgreSQL is killed with SIGKILL (crash recovery at start), restarted later',
  partition: "a consumer's network link to the brokers goes down (a veth link in its network namespace), then up (root only)",
  latency: 'every consumer-to-broker connection gets 50-300 ms added each way (a delaying TCP proxy; root only)',
} as const

export type FaultKind = keyof typeof FAULT_KINDS

/** Named groups for `--faults`. */
export const FAULT_GROUPS: Record<string, FaultKind[]> = {
  consumer: ['kill', 'crash-point', 'pause', 'scale'],
  broker: ['broker-kill', 'broker-kill-all', 'broker-restart'],
  database: ['postgres'],
  network: ['partition', 'latency'],
  ci: ['kill', 'crash-point', 'scale'],
  all: Object.keys(FAULT_KINDS) as FaultKind[],
  none: [],
}

/** Kinds that need the harness's own cluster and database (not `--bootstrap`). */
export const INFRASTRUCTURE_KINDS: readonly FaultKind[] = ['broker-kill', 'broker-kill-all', 'broker-restart', 'postgres']
/** Kinds that need 3 brokers. */
export const CLUSTER_KINDS: readonly FaultKind[] = ['broker-kill', 'broker-kill-all', 'broker-restart']
/** Kinds that need root (network namespaces). */
export const ROOT_KINDS: readonly FaultKind[] = ['partition', 'latency']

export interface ScheduledFault {
  kind: FaultKind
  /** ms after the run starts. */
  startMs: number
  endMs: number
  /** Consumer slot (kill, crash-point, pause, partition) or broker id (broker-kill, broker-restart). */
  target?: number
  /** crash-point: `<point>:<nth>`; scale: `out` or `in`; latency: the delay in ms. */
  detail?: string
}

export interface ScheduleOptions {
  seed: number
  durationMs: number
  periodMs: number
  kinds: readonly FaultKind[]
  consumers: number
  brokers: number
  sessionTimeoutMs: number
  /** Crash points a consumer can reach (the names of CRASH_POINTS that the consumer runtime passes). */
  crashPoints: readonly string[]
  /** Fraction of periods left quiet (default 0.25). */
  quiet?: number
}

/** Parses `--faults` (kinds and group names, comma-separated); LL_REHEARSAL for an unknown name. */
export function parseFaults(spec: string): FaultKind[] {
  const out = new Set<FaultKind>()
  for (const name of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const group = FAULT_GROUPS[name]
    if (group !== undefined) for (const k of group) out.add(k)
    else if (Object.hasOwn(FAULT_KINDS, name)) out.add(name as FaultKind)
    else throw new LifelineError('LL_REHEARSAL', `unknown fault ${JSON.stringify(name)}; kinds: ${Object.keys(FAULT_KINDS).join(', ')}; groups: ${Object.keys(FAULT_GROUPS).join(', ')}`)
  }
  return [...out]
}

/** The fault schedule for a run. */
export function planSchedule(options: ScheduleOptions): ScheduledFault[] {
  const random = seededRandom(deriveSeed(options.seed, 'nemesis'))
  const quiet = options.quiet ?? 0.25
  const out: ScheduledFault[] = []
  const periods = Math.floor(options.durationMs / options.periodMs)
  for (let i = 1; i < periods; i++) {
    const from = i * options.periodMs
    const roll = random()
    if (options.kinds.length === 0 || roll < quiet) continue
    const kind = pick(random, options.kinds)
    const startMs = from + randomInt(random, 1000, Math.max(1000, Math.floor(options.periodMs * 0.2)))
    const room = from + options.periodMs - 2000 - startMs
    const length = (min: number, max: number) => Math.max(1000, Math.min(room, randomInt(random, min, max)))
    const slot = randomInt(random, 0, options.consumers - 1)
    switch (kind) {
      case 'kill':
        out.push({ kind, startMs, endMs: startMs + length(2000, 6000), target: slot })
        break
      case 'crash-point': {
        const point = pick(random, options.crashPoints)
        out.push({ kind, startMs, endMs: startMs + length(Math.max(8000, options.periodMs * 0.5), Math.max(10_000, options.periodMs * 0.7)), target: slot, detail: `${point}:${random() < 0.7 ? 1 : 2}` })
        break
      }
      case 'pause':
        out.push({ kind, startMs, endMs: startMs + length(options.sessionTimeoutMs + 3000, options.sessionTimeoutMs + 8000), target: slot })
        break
      case 'scale':
        out.push({ kind, startMs, endMs: startMs + length(8000, 15_000), ...(random() < 0.5 ? { detail: 'out' } : { detail: 'in', target: slot }) })
        break
      case 'broker-kill':
      case 'broker-restart':
        out.push({ kind, startMs, endMs: startMs + length(5000, 15_000), target: randomInt(random, 1, options.brokers) })
        break
      case 'broker-kill-all':
        out.push({ kind, startMs, endMs: startMs + length(3000, 8000) })
        break
      case 'postgres':
        out.push({ kind, startMs, endMs: startMs + length(3000, 10_000) })
        break
      case 'partition':
        out.push({ kind, startMs, endMs: startMs + length(options.sessionTimeoutMs + 2000, options.sessionTimeoutMs + 10_000), target: slot })
        break
      case 'latency':
        out.push({ kind, startMs, endMs: startMs + length(8000, 20_000), detail: String(randomInt(random, 50, 300)) })
        break
    }
  }
  return out
}
