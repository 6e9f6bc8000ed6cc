/** Child processes for tests: their output captured, and stopped (SIGTERM, then SIGKILL) when the test ends. */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'

export interface Spawned {
  child: ChildProcess
  /** Everything written to stdout so far. */
  stdout(): string
  /** The last 20,000 characters written to stderr. */
  stderr(): string
  /** Resolves with the exit code (null after a signal) once the process has exited. */
  exited: Promise<number | null>
}

/** Spawns `command`; if it still runs when the test ends, SIGTERM, then SIGKILL after `graceMs`. */
export function spawnForTest(t: TestContext, command: string, args: string[], options: SpawnOptions = {}, graceMs = 10_000): Spawned {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-20_000)))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  defer(t, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(killer)
  })
  return { child, stdout: () => out, stderr: () => err, exited }
}
