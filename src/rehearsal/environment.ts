/**
 * What a rehearsal (or a campaign of them) runs on: a Kafka cluster the harness starts (1 or 3 brokers)
 * or an existing one (`--bootstrap`), a private PostgreSQL instance, and an admin client. Per run, a
 * fresh database and fresh topics; per slot, optionally, a network namespace with proxies to the brokers.
 *
 * @module
 */
import { randomBytes } from 'node:crypto'
import { startKafka, type KafkaCluster } from '../dev/kafka-launcher.js'
import { createNetns, netnsSupport, type Netns } from '../dev/netns.js'
import { startPostgres, type PostgresInstance } from '../dev/postgres-launcher.js'
import { startTcpProxy, type TcpProxy } from '../dev/tcp-proxy.js'
import { createAdmin } from '../kafka/index.js'
import type { KafkaAdmin } from '../kafka/types.js'
import type { Logger } from '../logger.js'
import { openPostgres } from '../store/open.js'
import type { SqlExecutor } from '../store/executor.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Environment {
  brokers: string[]
  cluster: KafkaCluster | undefined
  postgres: PostgresInstance
  admin: KafkaAdmin
  root: boolean
  /** Why consumers cannot run in network namespaces here (undefined: they can). */
  netnsUnavailable: string | undefined
  close(): Promise<void>
}

export async function openEnvironment(options: { brokers: 1 | 3; bootstrap?: string[]; logger: Logger; heapMb?: number }): Promise<Environment> {
  const stateDir = options.bootstrap ? undefined : mkdtempSync(join(tmpdir(), 'lifeline-rehearsal-kafka-'))
  const cluster = stateDir === undefined ? undefined : await startKafka({ brokers: options.brokers, stateDir, heapMb: options.heapMb ?? (options.brokers === 3 ? 384 : 512), logger: options.logger })
  const postgres = await startPostgres({ logger: options.logger })
  const brokers = options.bootstrap ?? cluster!.brokers
  const admin = createAdmin({ brokers })
  await admin.connect()
  const support = await netnsSupport()
  return {
    brokers,
    cluster,
    postgres,
    admin,
    root: process.getuid?.() === 0,
    netnsUnavailable: cluster === undefined ? 'the cluster is external (--bootstrap): its brokers are not local ports a proxy can front' : support.ok ? undefined : support.reason,
    async close() {
      await Promise.allSettled([admin.close()])
      await Promise.allSettled([cluster?.close(), postgres.close()])
      if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true })
    },
  }
}

/** A fresh database in the private instance; the harness's own pool on it. */
export async function freshDatabase(env: Environment, name: string): Promise<{ db: SqlExecutor & AsyncDisposable; url: string; socketUrl: string }> {
  const admin = await openPostgres({ url: env.postgres.url('postgres'), poolSize: 1 })
  try {
    await admin.query(`create database "${name}"`)
  } finally {
    await admin.close()
  }
  const db = await openPostgres({ url: env.postgres.url(name), poolSize: 6, connectTimeoutMs: 5000 })
  return { db, url: env.postgres.url(name), socketUrl: env.postgres.socketUrl(name) }
}

export interface SlotNetwork {
  netns: Map<number, Netns>
  proxies: TcpProxy[]
  close(): Promise<void>
}

/** One namespace per slot, and per slot and broker a host-side proxy on the namespace's host end. */
export async function slotNetworks(env: Environment, slots: number): Promise<SlotNetwork> {
  const netns = new Map<number, Netns>()
  const proxies: TcpProxy[] = []
  const tag = randomBytes(2).toString('hex')
  const octet = 100 + Math.floor(Math.random() * 100)
  const close = async () => {
    await Promise.allSettled(proxies.map((p) => p.close()))
    await Promise.allSettled([...netns.values()].map((n) => n.close()))
  }
  try {
    for (let slot = 0; slot < slots; slot++) {
      const ns = await createNetns({ name: `rh${tag}-${slot}`, subnet: [10, octet, slot] })
      netns.set(slot, ns)
      for (const b of env.brokers) {
        const port = Number(b.split(':').at(-1))
        proxies.push(await startTcpProxy({ listen: { host: ns.hostIp, port }, target: { host: '127.0.0.1', port } }))
      }
    }
  } catch (err) {
    await close()
    throw err
  }
  return { netns, proxies, close }
}
