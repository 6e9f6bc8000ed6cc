/**
 * The group under rehearsal: one child process per member slot (child.ts), each incarnation with its own
 * member log. Slots can be killed, stopped (SIGSTOP), continued, closed (SIGTERM) and started again, inside
 * a network namespace when the slot has one.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LifelineError } from '../errors.js'
import { CRASH_ENV } from '../util/crash-points.js'
import { CHILD_ENV, type ChildConfig } from './child-config.js'
import { loaderArgs } from '../util/node-args.js'

export type SlotSettings = Omit<ChildConfig, 'member' | 'logFile'>

interface Slot {
  index: number
  incarnation: number
  member: string
  child: ChildProcess | undefined
  stopped: boolean
  ready: boolean
  crashAt: string | undefined
  exited: Promise<void>
}

export interface MemberExit {
  member: string
  at: number
  code: number | null
  signal: string | null
  /** The named crash point this incarnation died at, if it did. */
  crashPoint: string | undefined
}

const CHILD = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './child.ts' : './child.js', import.meta.url))

export class Members {
  readonly #slots = new Map<number, Slot>()
  readonly exits: MemberExit[] = []
  readonly logFiles: string[] = []

  constructor(
    readonly dir: string,
    /** Settings per slot (a slot in a namespace forwards to its host end). */
    readonly settings: (slot: number) => SlotSettings,
    /** The command prefix that puts a slot in its namespace (empty: none). */
    readonly prefix: (slot: number) => readonly string[],
  ) {}

  /** Starts a new incarnation of `slot`; resolves when it spawned (not when it is ready). */
  start(index: number, options: { crashAt?: string } = {}): void {
    const previous = this.#slots.get(index)
    if (previous?.child !== undefined && previous.child.exitCode === null && previous.child.signalCode === null) {
      throw new LifelineError('LL_REHEARSAL', `member slot ${index} is still running (${previous.member})`)
    }
    const incarnation = (previous?.incarnation ?? 0) + 1
    const member = `c${index}.${incarnation}`
    const logFile = join(this.dir, `${member}.jsonl`)
    const errFile = join(this.dir, `${member}.stderr`)
    this.logFiles.push(logFile)
    const config: ChildConfig = { ...this.settings(index), member, logFile }
    const env: NodeJS.ProcessEnv = { ...process.env, [CHILD_ENV]: JSON.stringify(config) }
    delete env[CRASH_ENV]
    if (options.crashAt !== undefined) env[CRASH_ENV] = options.crashAt
    const err = openSync(errFile, 'a')
    const prefix = this.prefix(index)
    const argv = [process.execPath, ...loaderArgs(CHILD, config.module), CHILD]
    const cmd = [...prefix, ...argv]
    const child = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', err] })
    closeSync(err)
    const slot: Slot = { index, incarnation, member, child, stopped: false, ready: false, crashAt: options.crashAt, exited: Promise.resolve() }
    slot.exited = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        const text = existsSync(errFile) ? readFileSync(errFile, 'utf8') : ''
        const m = /lifeline: crash point (\S+) \(pass (\d+)\) reached/.exec(text)
        this.exits.push({ member, at: Date.now(), code, signal, crashPoint: m ? `${m[1]}:${m[2]}` : undefined })
        resolve()
      })
    })
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) slot.ready = true
    })
    this.#slots.set(index, slot)
  }

  running(index: number): boolean {
    const s = this.#slots.get(index)
    return s?.child !== undefined && s.child.exitCode === null && s.child.signalCode === null
  }

  member(index: number): string | undefined {
    return this.#slots.get(index)?.member
  }

  slots(): number[] {
    return [...this.#slots.keys()].sort((a, b) => a - b)
  }

  /** Waits until every running slot printed READY (or exited); LL_REHEARSAL after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const waiting = [...this.#slots.values()].filter((s) => this.running(s.index) && !s.ready)
      if (waiting.length === 0) return
      if (Date.now() > deadline) throw new LifelineError('LL_REHEARSAL', `consumers not ready after ${timeoutMs} ms: ${waiting.map((s) => s.member).join(', ')} (see ${this.dir}/*.stderr)`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** SIGKILL; resolves when the process is gone. */
  async kill(index: number): Promise<void> {
    const s = this.#slots.get(index)
    if (!s?.child || !this.running(index)) return
    if (s.stopped) this.cont(index)
    s.child.kill('SIGKILL')
    await s.exited
  }

  stop(index: number): void {
    const s = this.#slots.get(index)
    if (!s?.child || !this.running(index) || s.stopped) return
    s.child.kill('SIGSTOP')
    s.stopped = true
  }

  cont(index: number): void {
    const s = this.#slots.get(index)
    if (!s?.child || !s.stopped) return
    s.child.kill('SIGCONT')
    s.stopped = false
  }

  /** SIGTERM (the consumer drains and closes), SIGKILL after `timeoutMs`. */
  async terminate(index: number, timeoutMs = 45_000): Promise<void> {
    const s = this.#slots.get(index)
    if (!s?.child || !this.running(index)) return
    this.cont(index)
    s.child.kill('SIGTERM')
    const timer = setTimeout(() => s.child?.kill('SIGKILL'), timeoutMs)
    await s.exited
    clearTimeout(timer)
  }

  /** The crash point armed in a slot's current incarnation, if any. */
  crashAt(index: number): string | undefined {
    return this.#slots.get(index)?.crashAt
  }

  /** Closes every running member (in parallel). */
  async closeAll(): Promise<void> {
    await Promise.all(this.slots().map((i) => this.terminate(i)))
  }
}
