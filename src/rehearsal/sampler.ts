/**
 * Runs the offsets sampler (sampler-child.ts) as a child process and keeps it running: a sampler that
 * dies (see why in sampler-child.ts) is started again; samples arrive as they are printed.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { OffsetSample } from './history.js'
import { loaderArgs } from '../util/node-args.js'

const CHILD = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './sampler-child.ts' : './sampler-child.js', import.meta.url))

export interface OffsetSampler {
  readonly samples: OffsetSample[]
  /** The latest sample, if any. */
  latest(): OffsetSample | undefined
  /** Times the sampler process had to be restarted. */
  readonly restarts: number
  stop(): Promise<void>
}

export function startOffsetSampler(options: { brokers: string[]; group: string; topic: string }): OffsetSampler {
  const samples: OffsetSample[] = []
  let child: ChildProcess | undefined
  let stopping = false
  let restarts = 0
  const launch = () => {
    const c = spawn(process.execPath, [...loaderArgs(CHILD), CHILD], { env: { ...process.env, LIFELINE_REHEARSAL_SAMPLER: JSON.stringify(options) }, stdio: ['ignore', 'pipe', 'ignore'] })
    child = c
    let buffer = ''
    c.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString()
      const lines = buffer.split('\n')
      buffer = lines.pop()!
      for (const line of lines) if (line !== '') samples.push(JSON.parse(line) as OffsetSample)
    })
    c.on('exit', () => {
      if (stopping) return
      restarts++
      setTimeout(() => {
        if (!stopping) launch()
      }, 1000)
    })
  }
  launch()
  return {
    samples,
    latest: () => samples.at(-1),
    get restarts() {
      return restarts
    },
    async stop() {
      stopping = true
      const c = child
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise<void>((r) => c.once('exit', () => r()))
      c.kill('SIGTERM')
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}
