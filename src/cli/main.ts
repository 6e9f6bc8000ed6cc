/**
 * The `lifeline` command line. Only the CLI installs signal handlers or calls process.exit.
 *
 * @module
 */
import { CommanderError } from 'commander'
import { isLauncherError } from '../dev/errors.js'
import { isLifelineError } from '../errors.js'
import { buildProgram } from './program.js'

async function main(): Promise<void> {
  const program = buildProgram().exitOverride()
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode
      return
    }
    const code = isLifelineError(err) || isLauncherError(err) ? ` [${err.code}]` : ''
    process.stderr.write(`lifeline: ${(err as Error).message}${code}\n`)
    process.exitCode = 1
  }
}

await main()
