/**
 * A private PostgreSQL instance for fault tests and rehearsals: Debian's server binaries
 * (`pg_config --bindir`, e.g. PostgreSQL 15), a fresh cluster in a temporary directory, a free port on
 * 127.0.0.1 and a Unix socket, trust authentication for user `postgres`. It can be stopped (fast,
 * immediate or SIGKILL) and started again with its data — what a database outage does to a consumer —
 * without ever touching a shared server.
 *
 * As root, `initdb` and the server run as the `postgres` user (initdb refuses root). Orphans: with
 * `tieToParent` (default) a watchdog shell stops the server when the starting process dies, even by
 * SIGKILL.
 *
 * @module
 * @example
 * const pg = await startPostgres()
 * const db = await openPostgres({ url: pg.url('postgres') })
 * await pg.stop({ mode: 'immediate' })  // an outage
 * await pg.start()                      // same data, same port
 * await pg.close()                      // stops it and deletes the directory
 */
import { execFile, spawn } from 'node:child_process'
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import { LauncherError } from './errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { canConnect, freePorts } from './ports.js'
import { alive, readTail, waitForExit, waitForReaped } from './processes.js'

const run = promisify(execFile)

export interface StartPostgresOptions {
  /** Where the cluster lives (default: a new temporary directory, deleted by `close()`). */
  dir?: string
  /** TCP port on 127.0.0.1 (default: a free one). */
  port?: number
  /** Directory of `initdb` and `postgres` (default: `pg_config --bindir`). */
  binDir?: string
  /** Stop the server when this process dies (default true). */
  tieToParent?: boolean
  /** Readiness timeout, ms (default 60000). */
  startTimeoutMs?: number
  /** Extra `-c name=value` server settings (default: max_connections=300, shared_buffers=64MB). */
  settings?: Record<string, string | number>
  logger?: Logger
}

/** How often, and how far apart, a start refused by a stale `postmaster.pid` is tried again. */
const LOCK_RETRIES = 20
const LOCK_RETRY_MS = 250

/** How to stop: `fast` (SIGINT: clean shutdown), `immediate` (SIGQUIT: no checkpoint, crash recovery at start), `kill` (SIGKILL). */
export type PostgresStopMode = 'fast' | 'immediate' | 'kill'

export interface PostgresInstance {
  readonly port: number
  /** Directory of the Unix socket (`.s.PGSQL.<port>`). */
  readonly socketDir: string
  readonly dataDir: string
  /** The server's major version (e.g. `15`). */
  readonly version: string
  /** True while the server process runs. */
  readonly running: boolean
  /** A TCP URL for `database` (user postgres, trust auth). */
  url(database?: string): string
  /** A Unix-socket URL for `database`: it keeps working inside a network namespace. */
  socketUrl(database?: string): string
  /** Stops the server (default mode `fast`); resolves when it exited. A stopped server is left alone. */
  stop(options?: { mode?: PostgresStopMode }): Promise<void>
  /** Starts a stopped server with its data; resolves when it accepts connections. */
  start(): Promise<void>
  /** Stops the server and deletes its directory if the launcher created it. Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export const postgresLauncherDefaults = {
  startTimeoutMs: 60_000,
  settings: { max_connections: 300, shared_buffers: '64MB' },
} as const satisfies Partial<StartPostgresOptions>

const READY_LINE = 'database system is ready to accept connections'

/** `pg_config --bindir`, or LL_PG_LAUNCHER when the server binaries are not installed. */
export async function postgresBinDir(): Promise<string> {
  try {
    const { stdout } = await run('pg_config', ['--bindir'])
    const dir = stdout.trim()
    if (!existsSync(join(dir, 'initdb')) || !existsSync(join(dir, 'postgres'))) throw new Error(`no initdb/postgres in ${dir}`)
    return dir
  } catch (err) {
    throw new LauncherError('LL_PG_LAUNCHER', `PostgreSQL server binaries not found (${(err as Error).message}): install Debian's postgresql package (scripts/setup.sh does)`, { cause: err })
  }
}

/** The uid/gid to run the server as: `postgres` when we are root (initdb refuses root), else ourselves. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  } catch (err) {
    throw new LauncherError('LL_PG_LAUNCHER', 'running as root, but there is no `postgres` user to run initdb and the server as (install Debian\'s postgresql package)', { cause: err })
  }
}

function spawnWatchdog(parentPid: number, pid: number, removeDir: string | undefined): number | undefined {
  // The directory goes too when the launcher created it (a temporary cluster nobody else knows about).
  const cleanup = removeDir === undefined ? '' : ` rm -rf '${removeDir.replaceAll("'", "'\\''")}';`
  const script = `while kill -0 ${parentPid} 2>/dev/null; do sleep 1; done; kill -INT ${pid} 2>/dev/null; sleep 10; kill -KILL ${pid} 2>/dev/null;${cleanup} exit 0`
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' })
  child.unref()
  return child.pid
}

/** Creates a cluster and starts it; resolves once it accepts connections. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresInstance> {
  const logger = (options.logger ?? silentLogger()).child({ component: 'postgres-launcher' })
  const binDir = options.binDir ?? (await postgresBinDir())
  const user = await serverUser()
  const owned = options.dir === undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'lifeline-pg-'))
  const dataDir = join(dir, 'data')
  const socketDir = join(dir, 'socket')
  const logFile = join(dir, 'server.log')
  const port = options.port ?? (await freePorts(1))[0]!
  const timeoutMs = options.startTimeoutMs ?? postgresLauncherDefaults.startTimeoutMs
  const settings = { ...postgresLauncherDefaults.settings, ...(options.settings ?? {}) }
  mkdirSync(socketDir, { recursive: true })
  if (user) for (const d of [dir, socketDir]) chownSync(d, user.uid, user.gid)
  const ids = user ? { uid: user.uid, gid: user.gid } : {}

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    try {
      await run(join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], { ...ids, cwd: dir, maxBuffer: 8 * 1024 * 1024 })
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new LauncherError('LL_PG_LAUNCHER', `initdb failed in ${dataDir}: ${e.message}\n${e.stderr ?? ''}`, { cause: err })
    }
  }
  const version = readFileSync(join(dataDir, 'PG_VERSION'), 'utf8').trim()

  let pid = 0
  let watchdog: number | undefined
  const tie = options.tieToParent ?? true

  /** Starts the server; a start refused because `postmaster.pid` names a process still being reaped is tried again. */
  async function startServer(): Promise<void> {
    for (let tries = 1; ; tries++) {
      try {
        return await startOnce()
      } catch (err) {
        const refused = readTail(logFile, 5).includes('lock file "postmaster.pid" already exists')
        if (!refused || tries >= LOCK_RETRIES) throw err
        logger.warn({ tries }, 'PostgreSQL refused to start: its lock file names a process still being reaped; trying again')
        await delay(LOCK_RETRY_MS)
      }
    }
  }

  async function startOnce(): Promise<void> {
    if (alive(pid)) return
    const from = existsSync(logFile) ? readFileSync(logFile).length : 0
    const out = openSync(logFile, 'a')
    if (user) chownSync(logFile, user.uid, user.gid)
    const args = ['-D', dataDir, '-p', String(port), '-k', socketDir, '-c', 'listen_addresses=127.0.0.1', ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])]
    const child = spawn(join(binDir, 'postgres'), args, { ...ids, cwd: dir, detached: true, stdio: ['ignore', out, out] })
    closeSync(out)
    child.unref()
    if (child.pid === undefined) throw new LauncherError('LL_PG_LAUNCHER', `could not spawn ${join(binDir, 'postgres')}`)
    pid = child.pid
    if (tie) {
      if (watchdog !== undefined && alive(watchdog)) process.kill(watchdog, 'SIGKILL')
      watchdog = spawnWatchdog(process.pid, pid, owned ? dir : undefined)
    }
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (!alive(pid)) throw new LauncherError('LL_PG_LAUNCHER', `PostgreSQL exited during start-up. Last lines of ${logFile}:\n${readTail(logFile, 30)}`)
      if (readFileSync(logFile, 'utf8').slice(from).includes(READY_LINE) && (await canConnect(port))) break
      if (Date.now() > deadline) throw new LauncherError('LL_PG_LAUNCHER', `PostgreSQL was not ready after ${timeoutMs} ms. Last lines of ${logFile}:\n${readTail(logFile, 30)}`)
      await delay(50)
    }
    logger.info({ port, pid, version }, 'private PostgreSQL ready')
  }

  async function stopServer(mode: PostgresStopMode): Promise<void> {
    if (!alive(pid)) return
    process.kill(pid, mode === 'fast' ? 'SIGINT' : mode === 'immediate' ? 'SIGQUIT' : 'SIGKILL')
    if (!(await waitForExit(pid, 30_000)) && alive(pid)) {
      process.kill(pid, 'SIGKILL')
      await waitForExit(pid, 10_000)
    }
    // Reaped, not only exited: PostgreSQL's own lock-file check at the next start sees a zombie as running
    // (a campaign died of it under load, postgres fault after a SIGKILL).
    await waitForReaped(pid, 10_000)
    // After SIGKILL the backends notice their postmaster is gone and exit; wait for the socket to be free.
    const deadline = Date.now() + 15_000
    while ((await canConnect(port)) && Date.now() < deadline) await delay(50)
  }

  await startServer()
  let closing: Promise<void> | undefined
  const instance: PostgresInstance = {
    port,
    socketDir,
    dataDir,
    version,
    get running() {
      return alive(pid)
    },
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    socketUrl: (database = 'postgres') => `postgres://postgres@/${database}?host=${encodeURIComponent(socketDir)}&port=${port}`,
    stop: (opts = {}) => stopServer(opts.mode ?? 'fast'),
    start: startServer,
    close() {
      closing ??= (async () => {
        await stopServer('fast')
        if (watchdog !== undefined && alive(watchdog)) process.kill(watchdog, 'SIGKILL')
        if (owned) rmSync(dir, { recursive: true, force: true })
      })()
      return closing
    },
    [Symbol.asyncDispose]: () => instance.close(),
  }
  return instance
}
