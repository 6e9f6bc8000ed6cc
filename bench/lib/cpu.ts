/**
 * Where a profile's CPU time went, machine-wide, from /proc: every process's user + system time by kind
 * (PostgreSQL's server processes, the broker's JVM, this process and its main thread, the rest) and the
 * machine's busy time over all cores. Processes that end within a window (a parallel query's workers, a
 * pool's closed connections) drop out of the per-process sums, so the parts can add up to less than the
 * machine's busy time.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's times (USER_HZ; 100 on Linux x86-64). */
const HZ = 100

/** The machine's busy and total CPU seconds so far (/proc/stat: all cores; idle and iowait are not busy). */
export function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = f.reduce((a, b) => a + b, 0) / HZ
  return { busy: total - (f[3]! + f[4]!) / HZ, total }
}

export interface ProcessCpu {
  postgres: number
  java: number
  /** This process, all its threads (for Node: the main thread, libuv's pool, a native client's threads). */
  self: number
  /** This process's main thread (JavaScript). */
  main: number
  rest: number
}

/** User + system seconds of a /proc `stat` line. */
function seconds(stat: string): { comm: string; cpu: number } {
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { comm, cpu: (Number(fields[11]) + Number(fields[12])) / HZ }
}

/** CPU seconds so far by kind of process. */
export function processCpu(): ProcessCpu {
  const by: ProcessCpu = { postgres: 0, java: 0, self: 0, main: 0, rest: 0 }
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // ended meanwhile
    }
    const { comm, cpu } = seconds(stat)
    by[Number(pid) === process.pid ? 'self' : comm === 'postgres' || comm === 'java' ? comm : 'rest'] += cpu
  }
  by.main = seconds(readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, 'utf8')).cpu
  return by
}

/** The machine's and every process's CPU time so far: a window is two of these. */
export interface CpuSnapshot {
  machine: { busy: number; total: number }
  processes: ProcessCpu
}

export function cpuSnapshot(): CpuSnapshot {
  return { machine: machineCpu(), processes: processCpu() }
}

/** One line: the window's CPU seconds by kind of process, this process's main thread, and the machine's busy time. */
export function describeCpu(before: CpuSnapshot, after: CpuSnapshot): string {
  const d = (k: keyof ProcessCpu) => (after.processes[k] - before.processes[k]).toFixed(2)
  const busy = (after.machine.busy - before.machine.busy).toFixed(2)
  const total = (after.machine.total - before.machine.total).toFixed(2)
  return (
    `PostgreSQL ${d('postgres')} s, this process ${d('self')} s (its main thread ${d('main')} s), java (the broker) ${d('java')} s, ` +
    `the rest ${d('rest')} s; the machine busy ${busy} of ${total} CPU-seconds`
  )
}
