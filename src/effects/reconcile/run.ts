/**
 * A run: claim it, then batch after batch detect, repair (with `repair: true`) and record, with a heartbeat
 * that tells other processes the run is alive; a failure or cancellation is recorded on the run.
 *
 * @module
 */
import { LifelineError, isLifelineError } from '../../errors.js'
import { silentLogger } from '../../logger.js'
import { validateOptions } from '../../util/options.js'
import { RunOptionsSchema, isReconciliation, reconcileDefaults, type AnyReconciliation, type ReconcileContext, type ReconcilePhase, type ReconcileStatus, type RunReconciliationOptions } from './define.js'
import { detect, repairOne } from './detect.js'
import { reconcileMetrics } from './metrics.js'
import { claimRun, describeError, ensureSchema, endRun, heartbeatRun, recordBatch, recordedBefore, type Outcome, type ReconcileRun, type ReconcileRunResult } from './store.js'

/**
 * Runs (or with `resume`, continues) a reconciliation and returns the completed run. Refuses with
 * LL_RECONCILE (retriable) while another live run of the name exists. A read, lookup or recording
 * failure records the run `failed` and throws LL_RECONCILE (details.runId); a cancelled run is recorded
 * `aborted` and throws LL_ABORTED. Both can be resumed.
 */
export function runReconciliation(def: AnyReconciliation, options: RunReconciliationOptions): Promise<ReconcileRunResult> {
  return execute(def, options, 'strict')
}

/** `resume: 'compatible'` (schedules): an unfinished run of the other repair mode is replaced, not refused. */
export async function execute(def: AnyReconciliation, options: RunReconciliationOptions, resumeMode: 'strict' | 'compatible'): Promise<ReconcileRunResult> {
  if (!isReconciliation(def)) throw new LifelineError('LL_ARGUMENT_INVALID', 'runReconciliation takes a definition made by defineReconciliation()')
  const o = validateOptions(RunOptionsSchema, options, 'options')
  const { db, signal = new AbortController().signal } = o
  const log = (o.logger ?? silentLogger()).child({ component: 'reconcile', reconciliation: def.name })
  const metrics = reconcileMetrics(o.registry)
  const staleAfterMs = o.staleAfterMs ?? reconcileDefaults.staleAfterMs
  const batchSize = o.batchSize ?? def.batchSize
  if (signal.aborted) throw new LifelineError('LL_ABORTED', `reconciliation ${def.name} was aborted before it started`)
  await ensureSchema(db)
  const claimed = await claimRun(db, def.name, { repair: o.repair, resume: o.resume === true ? resumeMode : false, batchSize, staleAfterMs })
  const { resumed } = claimed
  let run: ReconcileRun = claimed
  // `attempts` fences this process's writes: once another process resumes the run, they match nothing.
  const fence = run.attempts
  const ctx: ReconcileContext = Object.freeze({ name: def.name, runId: run.id, repair: run.repair, db, signal, logger: log.child({ runId: run.id }) })
  ctx.logger.info({ resumed, repair: run.repair, phase: run.phase, cursor: run.cursor }, resumed ? 'reconciliation resumed' : 'reconciliation started')
  // The heartbeat tells other processes this run is alive however long one batch takes; unref: it never holds the process open.
  // The last beat is awaited before the run returns: a beat still in flight must never land after it.
  let beat: Promise<void> = Promise.resolve()
  const heartbeat = setInterval(() => {
    beat = heartbeatRun(db, run.id, fence).catch((err: unknown) => ctx.logger.warn({ err }, 'reconciliation heartbeat failed'))
  }, Math.max(250, Math.floor(staleAfterMs / 4)))
  heartbeat.unref()
  try {
    for (;;) {
      if (signal.aborted) throw new LifelineError('LL_ABORTED', 'aborted')
      const { phase, cursor } = run
      const { findings, checked, next } = await detect(def, phase, cursor, batchSize, ctx)
      const before = await recordedBefore(db, run.id, findings)
      const outcomes: Outcome[] = []
      for (const [i, f] of findings.entries()) {
        if (run.repair && signal.aborted) throw new LifelineError('LL_ABORTED', 'aborted')
        outcomes.push(run.repair && before[i]?.repaired !== true ? await repairOne(def, f, ctx) : { repaired: before[i]?.repaired === true, repairError: null })
      }
      const nextPhase: ReconcilePhase = next === null && phase === 'source' && def.extraPass ? 'target' : phase
      const complete = next === null && nextPhase === phase
      const recorded = await recordBatch(db, run, { findings, outcomes, before, checked, phase: nextPhase, cursor: next, complete })
      run = recorded.run
      for (const [kind, n] of recorded.byKind.found) metrics?.found(def.name, kind, n)
      for (const [kind, n] of recorded.byKind.repaired) metrics?.repaired(def.name, kind, n)
      for (const [kind, n] of recorded.byKind.failed) metrics?.repairFailed(def.name, kind, n)
      if (complete) break
    }
  } catch (err) {
    const aborted = signal.aborted || (isLifelineError(err) && err.code === 'LL_ABORTED')
    const where = `the ${run.phase} pass${run.cursor === null ? '' : ` at cursor ${JSON.stringify(run.cursor)}`}`
    const failure = aborted
      ? new LifelineError('LL_ABORTED', `reconciliation ${def.name} run ${run.id} was aborted in ${where}; resume it with resume: true`, { cause: err, details: { name: def.name, runId: run.id } })
      : new LifelineError('LL_RECONCILE', `reconciliation ${def.name} run ${run.id} failed in ${where}: ${isLifelineError(err, 'LL_RECONCILE') ? err.message : describeError(err)}; resume it with resume: true`, {
          cause: err, details: { name: def.name, runId: run.id, phase: run.phase, cursor: run.cursor },
        })
    const status: ReconcileStatus = aborted ? 'aborted' : 'failed'
    const code = isLifelineError(err) && !aborted ? err.code : failure.code
    await endRun(db, run.id, fence, { status, code, error: err instanceof Error ? err.message : String(err) }).catch((recordErr: unknown) => ctx.logger.error({ err: recordErr }, 'could not record the run as failed'))
    metrics?.finished(def.name, status)
    ctx.logger[aborted ? 'info' : 'error']({ err }, `reconciliation ${status}`)
    throw failure
  } finally {
    clearInterval(heartbeat)
    await beat
  }
  metrics?.finished(def.name, 'completed')
  ctx.logger.info({ checked: run.checked, missing: run.missing, extra: run.extra, different: run.different, repaired: run.repaired }, 'reconciliation completed')
  return { ...run, resumed }
}
