/** Process helpers for the launcher: liveness, waiting, reaping what an earlier run left behind. */
import { setTimeout as delay } from 'node:timers/promises'
import { existsSync, readFileSync } from 'node:fs'

export function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  // A zombie (exited, not yet reaped by its parent) still answers kill 0.
  const stat = `/proc/${pid}/stat`
  if (existsSync(stat)) {
    const state = readFileSync(stat, 'utf8').split(') ')[1]?.[0]
    return state !== 'Z' && state !== 'X'
  }
  return true
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (alive(pid)) {
    if (Date.now() > deadline) return false
    await delay(50)
  }
  return true
}

/**
 * Waits until `pid` is gone from the process table (reaped, not only exited): a program that checks a lock
 * file by `kill(pid, 0)` — PostgreSQL's `postmaster.pid` — still sees a zombie as running.
 */
export async function waitForReaped(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) return false
    await delay(20)
  }
  return true
}

/** The last `lines` lines of a log file ('' when missing). */
export function readTail(file: string, lines: number): string {
  if (!existsSync(file)) return '(no log file)'
  return readFileSync(file, 'utf8').split('\n').slice(-lines - 1).join('\n')
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw err
  }
}

/**
 * Kills brokers recorded in an earlier `cluster.json` that still run. Only processes whose command line
 * carries that node's `-Dlifeline.kafka.node=` marker are touched, so a reused pid is never killed.
 */
export async function reapRecorded(state: { nodes: ReadonlyArray<{ pid: number; configFile: string }> } | undefined): Promise<number[]> {
  if (!state) return []
  const victims = state.nodes.filter((n) => alive(n.pid) && commandLine(n.pid).includes(`-Dlifeline.kafka.node=${n.configFile}`)).map((n) => n.pid)
  for (const pid of victims) process.kill(pid, 'SIGKILL')
  for (const pid of victims) await waitForExit(pid, 10_000)
  return victims
}
