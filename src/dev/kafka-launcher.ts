/**
 * The local Kafka launcher: one broker or a cluster of three, real Apache Kafka from Maven Central,
 * started with `java -cp` on free loopback ports, KRaft storage formatted on first start.
 *
 * Orphans: with `tieToParent` (the default) a tiny watchdog shell kills the brokers when the starting
 * process dies, even by SIGKILL; and every start first reaps brokers a previous run left behind in
 * the same state directory (recorded in `cluster.json`).
 *
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises'
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { LauncherError } from './errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { log4jProperties, serverProperties, type NodeSpec } from './broker-config.js'
import { checkJava, javaCommand, KAFKA_VERSION, resolveKafkaJars } from './kafka-jars.js'
import { canConnect, freePorts, portIsFree } from './ports.js'
import { alive, readTail, reapRecorded, waitForExit } from './processes.js'

const run = promisify(execFile)

export interface StartKafkaOptions {
  /** 1 (default) or 3 brokers (combined broker+controller nodes). */
  brokers?: 1 | 3
  /** Folder for data, configs, logs and `cluster.json` (default `.lifeline/kafka`). */
  stateDir?: string
  /** Fixed broker ports (one per broker); default: free ports chosen at start. */
  ports?: number[]
  /** Wipe data from an earlier start (default true). */
  fresh?: boolean
  /** Kill the brokers when this process dies (default true; `lifeline dev kafka start` sets false). */
  tieToParent?: boolean
  /** Readiness timeout per broker, ms (default 90000). */
  startTimeoutMs?: number
  /** JVM heap per broker, MiB (default 512). */
  heapMb?: number
  jarCacheDir?: string
  logger?: Logger
}

export interface BrokerNode extends NodeSpec {
  pid: number
  logFile: string
  configFile: string
}

export interface ClusterState {
  version: string
  clusterId: string
  bootstrap: string
  startedAt: string
  stateDir: string
  watchdogPid?: number
  nodes: BrokerNode[]
}

export interface KafkaCluster {
  readonly bootstrap: string
  readonly brokers: string[]
  readonly version: string
  readonly state: ClusterState
  /** Wall time from spawn to the last broker's readiness, ms. */
  readonly startupMs: number
  /** Stops one broker: SIGTERM (clean) or SIGKILL (`hard`). */
  stopBroker(id: number, options?: { hard?: boolean }): Promise<void>
  /** Starts a stopped broker again with its old ports and data. */
  startBroker(id: number): Promise<void>
  /** Stops every broker (SIGTERM, then SIGKILL after 20 s). Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const READY_LINE = 'Kafka Server started'

export function defaultStateDir(): string {
  return resolve(process.env.LIFELINE_KAFKA_DIR ?? '.lifeline/kafka')
}

function clusterFile(stateDir: string): string {
  return join(stateDir, 'cluster.json')
}

export function readClusterState(stateDir = defaultStateDir()): ClusterState | undefined {
  const file = clusterFile(stateDir)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ClusterState
  } catch (err) {
    throw new LauncherError('LL_LAUNCHER_START', `cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
}

function spawnBroker(node: BrokerNode, classpath: string, log4j: string, heapMb: number): number {
  const out = openSync(node.logFile, 'a')
  const child = spawn(
    javaCommand(),
    [
      `-Xms${Math.min(256, heapMb)}m`,
      `-Xmx${heapMb}m`,
      '-XX:+UseG1GC',
      '-XX:+ExitOnOutOfMemoryError',
      `-Dlog4j2.configurationFile=${log4j}`,
      // Marks the process as ours, so reaping never touches another JVM.
      `-Dlifeline.kafka.node=${node.configFile}`,
      '-cp',
      classpath,
      'kafka.Kafka',
      node.configFile,
    ],
    { detached: true, stdio: ['ignore', out, out] },
  )
  closeSync(out)
  child.unref()
  if (child.pid === undefined) throw new LauncherError('LL_LAUNCHER_START', `could not spawn ${javaCommand()}`)
  return child.pid
}

async function waitReady(node: BrokerNode, timeoutMs: number, from: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!alive(node.pid)) {
      throw new LauncherError('LL_LAUNCHER_START', `Kafka broker ${node.id} exited during start-up. Last lines of ${node.logFile}:\n${readTail(node.logFile, 40)}`)
    }
    const log = readFileSync(node.logFile, 'utf8').slice(from)
    if (log.includes(READY_LINE) && (await canConnect(node.port))) return
    if (Date.now() > deadline) {
      throw new LauncherError('LL_LAUNCHER_TIMEOUT', `Kafka broker ${node.id} was not ready after ${timeoutMs} ms. Last lines of ${node.logFile}:\n${readTail(node.logFile, 40)}`)
    }
    await delay(100)
  }
}

function spawnWatchdog(parentPid: number, pids: number[]): number | undefined {
  // Polls the parent; when it is gone, stops the brokers (TERM, then KILL). Survives a SIGKILL of the parent.
  const list = pids.join(' ')
  const script = `while kill -0 ${parentPid} 2>/dev/null; do sleep 1; done; kill -TERM ${list} 2>/dev/null; sleep 15; kill -KILL ${list} 2>/dev/null; exit 0`
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' })
  child.unref()
  return child.pid
}

/** Starts a local Kafka cluster and resolves once every broker serves requests. */
export async function startKafka(options: StartKafkaOptions = {}): Promise<KafkaCluster> {
  const logger = options.logger ?? silentLogger()
  const count = options.brokers ?? 1
  const stateDir = resolve(options.stateDir ?? defaultStateDir())
  const heapMb = options.heapMb ?? 512
  const timeoutMs = options.startTimeoutMs ?? 90_000

  await checkJava()
  const jars = await resolveKafkaJars({ cacheDir: options.jarCacheDir, logger })

  // A previous run in this folder may have left brokers behind (killed test process, crashed CLI).
  const reaped = await reapRecorded(readClusterState(stateDir))
  if (reaped.length > 0) logger.warn({ pids: reaped }, 'stopped brokers left running by an earlier start')

  if (options.ports && options.ports.length !== count) {
    throw new LauncherError('LL_LAUNCHER_START', `ports: ${count} broker port(s) needed, got ${options.ports.length}`)
  }
  for (const port of options.ports ?? []) {
    if (!(await portIsFree(port))) {
      throw new LauncherError('LL_LAUNCHER_PORT_BUSY', `port ${port} on 127.0.0.1 is already in use; stop what listens there or pick another port`, { details: { port } })
    }
  }
  const brokerPorts = options.ports ?? (await freePorts(count))
  const controllerPorts = await freePorts(count, new Set(brokerPorts))

  if (options.fresh ?? true) rmSync(stateDir, { recursive: true, force: true })
  mkdirSync(stateDir, { recursive: true })
  const log4j = join(stateDir, 'log4j2.properties')
  writeFileSync(log4j, log4jProperties())

  const specs: NodeSpec[] = brokerPorts.map((port, i) => ({
    id: i + 1,
    port,
    controllerPort: controllerPorts[i]!,
    logDir: join(stateDir, `node-${i + 1}`, 'data'),
  }))
  const nodes: BrokerNode[] = specs.map((spec) => {
    const dir = join(stateDir, `node-${spec.id}`)
    mkdirSync(dir, { recursive: true })
    const configFile = join(dir, 'server.properties')
    writeFileSync(configFile, serverProperties(spec, specs))
    return { ...spec, pid: 0, logFile: join(dir, 'server.log'), configFile }
  })

  const previous = readClusterIdIfFormatted(nodes)
  const clusterId = previous ?? newClusterId()
  if (previous === undefined) {
    await Promise.all(
      nodes.map(async (node) => {
        const args = ['-cp', jars.classpath, `-Dlog4j2.configurationFile=${log4j}`, 'kafka.tools.StorageTool', 'format', '--cluster-id', clusterId, '--config', node.configFile]
        if (count === 1) args.splice(5, 0, '--standalone')
        try {
          await run(javaCommand(), args, { maxBuffer: 8 * 1024 * 1024 })
        } catch (err) {
          const e = err as { stdout?: string; stderr?: string; message: string }
          throw new LauncherError('LL_LAUNCHER_START', `formatting storage of broker ${node.id} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`, { cause: err })
        }
      }),
    )
  }

  const started = Date.now()
  const logOffsets = nodes.map((n) => (existsSync(n.logFile) ? readFileSync(n.logFile).length : 0))
  for (const node of nodes) node.pid = spawnBroker(node, jars.classpath, log4j, heapMb)
  const state: ClusterState = {
    version: KAFKA_VERSION,
    clusterId,
    bootstrap: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
    startedAt: new Date(started).toISOString(),
    stateDir,
    nodes,
  }
  if (options.tieToParent ?? true) state.watchdogPid = spawnWatchdog(process.pid, nodes.map((n) => n.pid))
  const save = () => writeFileSync(clusterFile(stateDir), JSON.stringify(state, null, 2))
  save()

  try {
    await Promise.all(nodes.map((n, i) => waitReady(n, timeoutMs, logOffsets[i]!)))
  } catch (err) {
    await stopPids(nodes.map((n) => n.pid), false)
    throw err
  }
  const startupMs = Date.now() - started
  logger.info({ bootstrap: state.bootstrap, brokers: count, startupMs, version: KAFKA_VERSION }, 'local Kafka ready')

  let closing: Promise<void> | undefined
  const cluster: KafkaCluster = {
    bootstrap: state.bootstrap,
    brokers: nodes.map((n) => `127.0.0.1:${n.port}`),
    version: KAFKA_VERSION,
    state,
    startupMs,
    async stopBroker(id, opts = {}) {
      const node = nodeById(nodes, id)
      await stopPids([node.pid], opts.hard ?? false)
    },
    async startBroker(id) {
      const node = nodeById(nodes, id)
      if (alive(node.pid)) return
      const from = existsSync(node.logFile) ? readFileSync(node.logFile).length : 0
      node.pid = spawnBroker(node, jars.classpath, log4j, heapMb)
      if (state.watchdogPid !== undefined) {
        // One watchdog for the current pids: the old one would signal the restarted node's old pid, which
        // the system may have given to an unrelated process by then.
        killWatchdog(state)
        state.watchdogPid = spawnWatchdog(process.pid, nodes.map((n) => n.pid))
      }
      save()
      await waitReady(node, timeoutMs, from)
    },
    close() {
      closing ??= stopCluster(state)
      return closing
    },
    [Symbol.asyncDispose]() {
      return cluster.close()
    },
  }
  return cluster
}

/**
 * A KRaft cluster id: 16 random bytes, base64url (22 chars) like Kafka's own `random-uuid`, never starting
 * with '-' (StorageTool's argument parser would take it for an option).
 */
export function newClusterId(random: (n: number) => Buffer = randomBytes): string {
  for (;;) {
    const id = random(16).toString('base64url').slice(0, 22)
    if (!id.startsWith('-')) return id
  }
}

function nodeById(nodes: BrokerNode[], id: number): BrokerNode {
  const node = nodes.find((n) => n.id === id)
  if (!node) throw new LauncherError('LL_LAUNCHER_NOT_RUNNING', `no broker with id ${id} (ids: ${nodes.map((n) => n.id).join(', ')})`)
  return node
}

function readClusterIdIfFormatted(nodes: BrokerNode[]): string | undefined {
  const ids = nodes.map((n) => {
    const meta = join(n.logDir, 'meta.properties')
    if (!existsSync(meta)) return undefined
    return /cluster\.id=(\S+)/.exec(readFileSync(meta, 'utf8'))?.[1]
  })
  return ids.every((id) => id !== undefined && id === ids[0]) ? ids[0] : undefined
}

/** Sends SIGTERM (or SIGKILL when `hard`) and waits; escalates to SIGKILL after 20 s. */
export async function stopPids(pids: number[], hard: boolean): Promise<void> {
  for (const pid of pids) {
    if (alive(pid)) process.kill(pid, hard ? 'SIGKILL' : 'SIGTERM')
  }
  await Promise.all(
    pids.map(async (pid) => {
      if (await waitForExit(pid, 20_000)) return
      if (alive(pid)) process.kill(pid, 'SIGKILL')
      await waitForExit(pid, 5_000)
    }),
  )
}

/** Stops the cluster recorded in `stateDir` (for `lifeline dev kafka stop`). */
export async function stopKafka(stateDir = defaultStateDir()): Promise<ClusterState> {
  const state = readClusterState(stateDir)
  if (!state) throw new LauncherError('LL_LAUNCHER_NOT_RUNNING', `no local Kafka recorded in ${stateDir}`)
  await stopCluster(state)
  return state
}

function killWatchdog(state: ClusterState): void {
  if (state.watchdogPid !== undefined && alive(state.watchdogPid)) process.kill(state.watchdogPid, 'SIGKILL')
}

/** Stops every broker of `state`, then its watchdog, and forgets the cluster (close() and stopKafka()). */
async function stopCluster(state: ClusterState): Promise<void> {
  await stopPids(state.nodes.map((n) => n.pid).filter((pid) => alive(pid)), false)
  killWatchdog(state)
  rmSync(clusterFile(state.stateDir), { force: true })
}

export interface NodeStatus {
  id: number
  pid: number
  port: number
  running: boolean
  reachable: boolean
}

/** What `cluster.json` in `stateDir` records, with each node's liveness checked now. */
export async function kafkaStatus(stateDir = defaultStateDir()): Promise<{ state: ClusterState; nodes: NodeStatus[] } | undefined> {
  const state = readClusterState(stateDir)
  if (!state) return undefined
  const nodes = await Promise.all(
    state.nodes.map(async (n) => ({ id: n.id, pid: n.pid, port: n.port, running: alive(n.pid), reachable: await canConnect(n.port) })),
  )
  return { state, nodes }
}
