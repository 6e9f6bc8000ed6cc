/**
 * The nemesis at work: it applies a {@link ScheduledFault} schedule to the cluster, the database and the
 * members, records what actually happened and when (a fault's real begin and heal times), and can heal
 * everything at once. Faults the environment cannot inject (not root, one broker, an external cluster)
 * are skipped with their reason, never silently.
 *
 * @module
 */
import type { KafkaCluster } from '../dev/kafka-launcher.js'
import type { Netns } from '../dev/netns.js'
import type { PostgresInstance } from '../dev/postgres-launcher.js'
import type { TcpProxy } from '../dev/tcp-proxy.js'
import type { FaultInterval } from './history.js'
import type { Members } from './members.js'
import { CLUSTER_KINDS, INFRASTRUCTURE_KINDS, ROOT_KINDS, type FaultKind, type ScheduledFault } from './nemesis.js'

export interface FaultEnvironment {
  members: Members
  /** Consumer slots the schedule addresses (0..consumers-1). */
  consumers: number
  cluster: KafkaCluster | undefined
  postgres: PostgresInstance | undefined
  /** Per slot, when consumers run in network namespaces. */
  netns: Map<number, Netns>
  /** Every host-side proxy in front of the brokers (latency). */
  proxies: TcpProxy[]
  root: boolean
}

/** Why a kind cannot run here, or undefined when it can. */
export function skipReason(kind: FaultKind, env: Pick<FaultEnvironment, 'cluster' | 'postgres' | 'netns' | 'root'>): string | undefined {
  if (ROOT_KINDS.includes(kind) && !env.root) return 'not root: network namespaces (partition) and the proxy behind them (latency) need root'
  if (ROOT_KINDS.includes(kind) && env.netns.size === 0) return 'consumers are not in network namespaces (ip netns unavailable)'
  if (INFRASTRUCTURE_KINDS.includes(kind) && kind !== 'postgres' && env.cluster === undefined) return '--bootstrap: the cluster is not ours to break (consumer-side faults only)'
  if (kind === 'postgres' && env.postgres === undefined) return 'the database is not a private instance'
  if (CLUSTER_KINDS.includes(kind) && (env.cluster?.brokers.length ?? 0) < 3) return 'needs 3 brokers (--brokers 3): one broker down is an outage, not a failover'
  return undefined
}

export class Nemesis {
  readonly applied: FaultInterval[] = []
  readonly skipped = new Map<FaultKind, string>()
  current: string | undefined
  #extra = 0

  constructor(readonly env: FaultEnvironment) {}

  /** Runs the schedule from `startAt` (ms since the epoch) until it ends or `signal` aborts. */
  async run(schedule: readonly ScheduledFault[], startAt: number, signal: AbortSignal): Promise<void> {
    for (const fault of schedule) {
      const reason = skipReason(fault.kind, this.env)
      if (reason !== undefined) {
        this.skipped.set(fault.kind, reason)
        continue
      }
      if (!(await until(startAt + fault.startMs, signal))) return
      const interval: FaultInterval = { kind: fault.kind, start: Date.now(), end: 0 }
      if (fault.target !== undefined) interval.target = fault.kind.startsWith('broker') ? `broker ${fault.target}` : `c${fault.target}`
      if (fault.detail !== undefined) interval.detail = fault.detail
      this.current = `${fault.kind}${interval.target ? ` ${interval.target}` : ''}${fault.detail ? ` ${fault.detail}` : ''}`
      const heal = await this.#begin(fault, interval)
      await until(startAt + fault.endMs, signal)
      await heal()
      interval.end = Date.now()
      this.current = undefined
      this.applied.push(interval)
    }
  }

  /** Applies a fault; returns what heals it. */
  async #begin(f: ScheduledFault, interval: FaultInterval): Promise<() => Promise<void>> {
    const { members, cluster, postgres } = this.env
    const slot = f.target ?? 0
    switch (f.kind) {
      case 'kill':
        await members.kill(slot)
        return async () => {
          if (!members.running(slot)) members.start(slot)
        }
      case 'crash-point':
        await members.kill(slot)
        members.start(slot, { crashAt: f.detail! })
        return async () => {
          const reached = !members.running(slot)
          interval.detail = `${f.detail} (${reached ? 'reached' : 'not reached'})`
          await members.kill(slot)
          members.start(slot)
        }
      case 'pause':
        members.stop(slot)
        return async () => members.cont(slot)
      case 'scale':
        if (f.detail === 'in') {
          await members.terminate(slot)
          return async () => {
            if (!members.running(slot)) members.start(slot)
          }
        } else {
          const extra = this.env.consumers + this.#extra++
          interval.target = `c${extra}`
          members.start(extra)
          return () => members.terminate(extra)
        }
      case 'broker-kill':
      case 'broker-restart':
        await cluster!.stopBroker(slot, { hard: f.kind === 'broker-kill' })
        return () => cluster!.startBroker(slot)
      case 'broker-kill-all': {
        const ids = cluster!.state.nodes.map((n) => n.id)
        await Promise.all(ids.map((id) => cluster!.stopBroker(id, { hard: true })))
        return async () => {
          await Promise.all(ids.map((id) => cluster!.startBroker(id)))
        }
      }
      case 'postgres':
        await postgres!.stop({ mode: 'kill' })
        return () => postgres!.start()
      case 'partition': {
        const ns = this.env.netns.get(slot)!
        await ns.down()
        return () => ns.up()
      }
      case 'latency': {
        const ms = Number(f.detail ?? '100')
        for (const p of this.env.proxies) p.setDelay(ms)
        return async () => {
          for (const p of this.env.proxies) p.setDelay(0)
        }
      }
    }
  }

  /** Heals whatever may still be broken: every slot running and continued, brokers, database, links, no delay. */
  async healAll(): Promise<void> {
    const { members, cluster, postgres } = this.env
    for (const p of this.env.proxies) p.setDelay(0)
    for (const ns of this.env.netns.values()) await ns.up()
    if (postgres !== undefined && !postgres.running) await postgres.start()
    if (cluster !== undefined) for (const n of cluster.state.nodes) await cluster.startBroker(n.id)
    for (let i = 0; i < this.env.consumers; i++) {
      members.cont(i)
      if (!members.running(i)) members.start(i)
    }
  }
}

/** Sleeps until `at`; false when `signal` aborted first. */
async function until(at: number, signal: AbortSignal): Promise<boolean> {
  while (Date.now() < at) {
    if (signal.aborted) return false
    await new Promise((r) => setTimeout(r, Math.min(250, at - Date.now())))
  }
  return !signal.aborted
}
