/** Drives a test/fixtures/protocol-worker.ts child process: its JSON-line events, stdin commands, kills. */
import { spawn, type ChildProcess } from 'node:child_process'
import type { TestContext } from 'node:test'
import { defer } from './cleanup.js'

export interface WorkerEvent {
  ev: string
  [field: string]: unknown
}

export interface Dump {
  effects: Array<{ id: string; key: string; seq: number }>
  parked: Array<{ key: string; status: string; location: string; state: string; records: number }>
}

export class Worker {
  readonly events: WorkerEvent[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr = ''
  #waiters = new Set<() => void>()

  constructor(readonly child: ChildProcess, readonly name: string) {
    let buffer = ''
    child.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString()
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        try {
          this.events.push(JSON.parse(line) as WorkerEvent)
        } catch {
          this.events.push({ ev: 'stdout', line })
        }
      }
      for (const wake of this.#waiters) wake()
    })
    child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-20_000)))
    // A command written while the process dies fails with EPIPE: its death is what `exited` reports.
    child.stdin!.on('error', (err) => this.events.push({ ev: 'stdin-error', message: err.message }))
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
    void this.exited.then(() => {
      for (const wake of this.#waiters) wake()
    })
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Whether the process died at its armed crash point. */
  get crashed(): boolean {
    return this.stderr.includes('lifeline: crash point')
  }

  send(command: string): void {
    if (this.alive) this.child.stdin!.write(`${command}\n`)
  }

  /** Waits for an event matching `match` (from `from` on); undefined when the process exits first or on timeout. */
  async next(match: (e: WorkerEvent) => boolean, timeoutMs: number, from = 0): Promise<WorkerEvent | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.events.slice(from).find(match)
      if (found) return found
      if (!this.alive || Date.now() > deadline) return undefined
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(200, Math.max(1, deadline - Date.now())))
        function done() {
          clearTimeout(timer)
          resolve()
        }
        this.#waiters.add(done)
      })
      this.#waiters.clear()
    }
  }

  /** Asks for the worker's effects and parked keys; undefined when it died meanwhile. */
  async dump(timeoutMs = 15_000): Promise<Dump | undefined> {
    const from = this.events.length
    this.send('dump')
    const e = await this.next((x) => x.ev === 'dump', timeoutMs, from)
    return e as unknown as Dump | undefined
  }

  async close(): Promise<void> {
    if (!this.alive) return
    this.send('close')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000)
    await this.exited
    clearTimeout(timer)
  }
}

/** Starts a protocol worker with `env` (see the fixture's documentation), killed when the test ends. */
export async function startWorker(t: TestContext, env: Record<string, string>, name: string, options: { waitStarted?: boolean } = {}): Promise<Worker> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../fixtures/protocol-worker.ts', import.meta.url).pathname], {
    env: { ...process.env, LIFELINE_CRASH_AT: '', ...env, NAME: name },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const worker = new Worker(child, name)
  defer(t, async () => {
    if (worker.alive) child.kill('SIGKILL')
    await worker.exited
  })
  if (options.waitStarted !== false) {
    const started = await worker.next((e) => e.ev === 'started', 60_000)
    if (!started && !worker.crashed) throw new Error(`worker ${name} did not start: ${worker.stderr.slice(-3000)}`)
  }
  return worker
}
