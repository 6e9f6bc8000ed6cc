/**
 * Runs a reconciliation on an interval, taking turns with other instances sharing the database.
 *
 * @module
 */
import { LifelineError, isLifelineError } from '../../errors.js'
import { silentLogger } from '../../logger.js'
import { validateOptions } from '../../util/options.js'
import { RunOptionsSchema, isReconciliation, type AnyReconciliation, type RunReconciliationOptions } from './define.js'
import { execute } from './run.js'
import { ensureSchema, msUntilDue, type ReconcileRunResult } from './store.js'

export interface ScheduleReconciliationOptions extends Omit<RunReconciliationOptions, 'signal' | 'resume'> {
  /** Interval between runs of the name, milliseconds (at least 1000), counted from the end of its last completed run in the database: instances sharing the database take turns. */
  everyMs: number
  /** Continue an unfinished run instead of starting over. Default true. */
  resume?: boolean
  /** Called with each completed run. */
  onRun?: (run: ReconcileRunResult) => unknown
  /** Called when a run fails (default: logged at warn). Not called for a run skipped because another is live. */
  onError?: (err: unknown) => unknown
}

export interface ReconciliationSchedule extends AsyncDisposable {
  /** Stops the timer, aborts a run in progress (recorded `aborted`, resumable) and waits for it. Idempotent. */
  stop(): Promise<void>
}

/**
 * Runs `def` every `everyMs`, never two runs at once (in this process: runs are chained; across processes:
 * the per-name claim). Due when the name's last completed run finished `everyMs` ago or more, so
 * the first check happens at once and a restart does not cause an extra run.
 */
export function scheduleReconciliation(def: AnyReconciliation, options: ScheduleReconciliationOptions): ReconciliationSchedule {
  const { everyMs, onRun, onError, resume = true, ...run } = options
  if (!Number.isSafeInteger(everyMs) || everyMs < 1000) throw new LifelineError('LL_OPTIONS_INVALID', `options.everyMs must be an integer of at least 1000, got ${String(everyMs)}`, { details: { path: 'options.everyMs' } })
  if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'scheduleReconciliation takes a definition made by defineReconciliation()')
  validateOptions(RunOptionsSchema, { ...run }, 'options')
  const log = (run.logger ?? silentLogger()).child({ component: 'reconcile', reconciliation: def.name })
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let current: Promise<void> | undefined
  let stopping: Promise<void> | undefined

  /** Milliseconds until the name is due (0: now), from the database's clock. */
  const dueIn = async (): Promise<number> => {
    await ensureSchema(run.db)
    return msUntilDue(run.db, def.name, everyMs)
  }
  const tick = async (): Promise<number> => {
    try {
      const wait = await dueIn()
      if (wait > 0) return wait
      const result = await execute(def, { ...run, repair: run.repair ?? false, resume, signal: controller.signal }, 'compatible')
      await onRun?.(result)
      return everyMs
    } catch (err) {
      if (controller.signal.aborted) return everyMs
      if (isLifelineError(err, 'LL_RECONCILE') && err.details.reason === 'already-running') log.info({ err }, 'skipped: another run of this reconciliation is live')
      else if (onError) await Promise.resolve().then(() => onError(err)).catch((hookErr: unknown) => log.warn({ err: hookErr }, 'onError threw'))
      else log.warn({ err }, 'scheduled reconciliation failed')
      return everyMs
    }
  }
  const loop = (delay: number) => {
    timer = setTimeout(() => {
      timer = undefined
      current = tick().then((next) => {
        current = undefined
        if (!controller.signal.aborted) loop(next)
      })
    }, delay)
  }
  loop(0)
  const stop = () => {
    stopping ??= (async () => {
      controller.abort()
      if (timer !== undefined) clearTimeout(timer)
      await current
    })()
    return stopping
  }
  return { stop, [Symbol.asyncDispose]: stop }
}
