/**
 * The one close() contract's step runner: every step runs even when an earlier one failed; failures are
 * logged and, at the end, thrown together as LL_CONSUMER_CLOSE (its `cause` an AggregateError of them all).
 *
 * @module
 * @example
 * const steps = closeSteps(log, 'the consumer')
 * await steps.run('stopping the poll loop', () => loopDone)
 * await steps.run('leaving the group', () => kafka.close())
 * steps.finish() // throws LL_CONSUMER_CLOSE when a step failed
 */
import { LifelineError } from '../errors.js'
import type { Logger } from '../logger.js'

export interface CloseSteps {
  /** Runs one step; a failure is kept (and logged), never thrown here. */
  run(what: string, step: () => unknown): Promise<void>
  /** Throws LL_CONSUMER_CLOSE when a step failed. */
  finish(): void
}

export function closeSteps(log: Logger | undefined, component: string): CloseSteps {
  const failed: Array<{ what: string; error: unknown }> = []
  return {
    async run(what, step) {
      try {
        await step()
      } catch (error) {
        failed.push({ what, error })
        log?.warn({ err: error }, `close: ${what} failed`)
      }
    },
    finish() {
      if (failed.length === 0) return
      const errors = failed.map((f) => f.error)
      throw new LifelineError('LL_CONSUMER_CLOSE', `closing ${component} finished with ${failed.length} failed step(s): ${failed.map((f) => `${f.what}: ${(f.error as Error)?.message ?? String(f.error)}`).join('; ')}`, {
        cause: new AggregateError(errors, `${failed.length} close step(s) failed`),
        details: { errors, steps: failed.map((f) => f.what) },
      })
    },
  }
}
