/**
 * Runs the `lifeline` command tree (buildProgram(), what main.ts runs) in this process, as starting the CLI
 * costs seconds a run. Only strings are captured: the test runner's own reports to its parent are Buffers
 * and pass through. Not for concurrent use (it swaps process.stdout.write and process.stderr.write).
 */
import assert from 'node:assert/strict'
import type { Command } from 'commander'
import { buildProgram } from '../../src/cli/program.js'
import { isLifelineError } from '../../src/errors.js'

export interface CliOutput {
  /** commander's own output and error text plus what the command wrote to stdout, in order. */
  out: string
  /** commander's output plus process.stdout. */
  stdout: string
  /** commander's error text plus process.stderr. */
  stderr: string
}

/** Runs `lifeline <args>` in this process; rejects with what the command threw. */
export async function runCli(args: string[]): Promise<CliOutput> {
  const program = buildProgram()
  const every = (c: Command): Command[] => [c, ...c.commands.flatMap(every)]
  const output: CliOutput = { out: '', stdout: '', stderr: '' }
  const toOut = (s: string) => void ((output.out += s), (output.stdout += s))
  const toErr = (s: string, commander: boolean) => void ((output.stderr += s), commander && (output.out += s))
  for (const c of every(program)) c.exitOverride().configureOutput({ writeOut: toOut, writeErr: (s) => toErr(s, true) })
  const out = process.stdout.write
  const err = process.stderr.write
  const capture = (orig: typeof process.stdout.write, stream: NodeJS.WriteStream, add: (s: string) => void) =>
    ((chunk: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== 'string') return (orig as (...a: unknown[]) => boolean).call(stream, chunk, ...rest)
      add(chunk)
      return true
    }) as typeof process.stdout.write
  process.stdout.write = capture(out, process.stdout, toOut)
  process.stderr.write = capture(err, process.stderr, (s) => toErr(s, false))
  try {
    await program.parseAsync(args, { from: 'user' })
  } finally {
    process.stdout.write = out
    process.stderr.write = err
  }
  return output
}

/** Expects `lifeline <args>` to fail with `code` (a LifelineError's) or, without one, a plain Error; returns its message. */
export async function runCliFails(args: string[], code?: string): Promise<string> {
  let message = ''
  await assert.rejects(runCli(args), (err: Error) => {
    if (code === undefined) assert.ok(!isLifelineError(err), `expected a plain Error, got ${String(err)}`)
    else assert.ok(isLifelineError(err) && err.code === code, `expected ${code}, got ${String(err)}`)
    message = err.message
    return true
  })
  return message
}
