/**
 * Runs a bulk redrive job (created by ./jobs.ts with its item list frozen: each key's records replay in their
 * original order). A run claims the job (its lease), recovers an interrupted run's sends (./recovery.ts),
 * then reads, prepares, sends and settles it batch by batch (./batch.ts), pipelined, never more than
 * `ratePerSec` sends in any 1-second window; it skips what is not `pending` (or belongs to another open job)
 * unless forced, runs a canary first, pauses itself when replays fail again, heartbeats, and stops when its
 * caller's signal aborts (the DLQ processor's `close()` aborts it), when it is paused or cancelled, or when
 * another runner took it over. `resumeInterruptedJobs` resumes the jobs a killed processor left running.
 *
 * @module
 */
import { randomUUID } from 'node:crypto'
import { dlqConflict, isLifelineError, publicErrorText } from '../../errors.js'
import { silentLogger } from '../../logger.js'
import { RateLimiter } from '../../util/rate-limiter.js'
import { sleep } from '../../util/sleep.js'
import { jobActor } from '../actors.js'
import { prepareBatch, sendPrepared, settle } from './batch.js'
import { loadItems } from './batch-store.js'
import {
  abandonRunning, beat, canaryEnd, canaryOutcome, claimJob, completeRunning, failRunning, jobFailures, passCanary, pauseRunning, releaseRunner, saveBaseline, saveCanaryEnd, staleJobIds,
} from './job-store.js'
import { getJob } from './jobs.js'
import { markTargets, recover } from './recovery.js'
import { jobLeaseMs, type Run, type Sent } from './run.js'
import { redriveDefaults, type RedriveDeps, type RedriveJob, type RedriveJobStatus } from './types.js'
import { positiveId } from './validate.js'

/** Takes the job for this runner: ready, paused (when resuming), or running with a stale heartbeat. */
async function claim(deps: RedriveDeps, jobId: string, runner: string, resume: boolean): Promise<RedriveJob> {
  const claimed = await claimJob(deps.db, jobId, runner, jobLeaseMs(deps), { resume })
  if (claimed) return claimed
  const job = await getJob(deps.db, jobId)
  if (job.status === 'completed') return job
  throw dlqConflict(
    job.status === 'running' ? `redrive job ${jobId} is running elsewhere (heartbeat ${job.heartbeatAt?.toISOString() ?? 'none'})` : `redrive job ${jobId} is ${job.status}: it cannot run`,
    { id: jobId, status: job.status },
  )
}

/**
 * This job's sends so far and its replays that came back to a DLQ (records carrying one of its replay ids,
 * counted by the indexer as it stores them): the job's counters.
 */
function failureRate(run: Run): Promise<{ sent: number; failed: number; again: number }> {
  return jobFailures(run.deps.db, run.job.id)
}

async function pauseSelf(run: Run, reason: string): Promise<void> {
  run.log.warn({ jobId: run.job.id, reason }, 'redrive job paused itself')
  await pauseRunning(run.deps.db, run.job.id, run.runner, reason)
  run.stop.abort()
}

/**
 * Runs (or resumes) a job until it completes, pauses (canary, failure rate, pauseJob), is cancelled, or
 * `signal` aborts (then it is left `running` without a heartbeat: {@link resumeInterruptedJobs} takes it).
 * LL_DLQ_CONFLICT when it is running elsewhere, awaiting approval, or cancelled.
 */
export async function runRedriveJob(deps: RedriveDeps, jobId: string, opts: { signal?: AbortSignal; onProgress?(job: RedriveJob): void; resume?: boolean } = {}): Promise<RedriveJob> {
  const jid = positiveId('job', jobId)
  const runner = randomUUID()
  let job = await claim(deps, jid, runner, opts.resume ?? true)
  if (job.status === 'completed') return job
  const log = (deps.logger ?? silentLogger()).child({ component: 'dlq-redrive', jobId: jid })
  log.info({ runner, resumed: job.statusReason === 'resumed after an interruption' }, 'redrive job claimed')
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  if (opts.signal?.aborted) stop.abort()
  const run: Run = { deps, job, runner, actor: jobActor(jid), log, stop }
  const heartbeatMs = deps.heartbeatMs ?? redriveDefaults.heartbeatMs
  let beating = Promise.resolve()
  const heartbeat = setInterval(() => {
    beating = beat(deps.db, jid, runner)
      .then((status) => {
        if (status !== 'running') stop.abort()
      })
      .catch((err: unknown) => log.warn({ err }, 'a redrive job heartbeat failed'))
  }, heartbeatMs)
  const progress = async () => {
    job = await getJob(deps.db, jid)
    run.job = job
    try {
      opts.onProgress?.(job)
    } catch (err) {
      log.warn({ err }, 'onProgress threw')
    }
  }
  let stoppedBySignal = false
  let takenOver = false
  // Pipelined: while batch i is on the wire (inFlight), batch i-1 is recorded (settling) and batch i+1 read
  // and prepared; batch i+1's sends start once batch i's are acknowledged.
  let inFlight: Promise<Sent> | undefined
  let settling: Promise<RedriveJobStatus | undefined> | undefined
  try {
    await recover(run)
    await markTargets(run)
    // Judged on what follows this (re)start: failures an operator already saw and resumed past do not count again.
    const baseline = await failureRate(run)
    await saveBaseline(deps.db, jid, baseline)
    job.options.baseline = baseline
    const limiter = job.ratePerSec === null ? undefined : new RateLimiter(job.ratePerSec)
    const blockedKeys = new Set<string>()
    const batch = job.options.batchSize
    let lastCheck = 0
    let cursor = 0
    /** Waits for the batches in flight to be recorded; false when the job must stop (paused, cancelled, taken over). */
    const drain = async (): Promise<boolean> => {
      let running = true
      if (settling) {
        running = (await settling) === 'running'
        settling = undefined
      }
      if (inFlight) {
        const sent = await inFlight
        inFlight = undefined
        running = (await settle(run, sent)) === 'running' && running
      }
      return running
    }
    for (;;) {
      if (stop.signal.aborted) break
      let canaryLimit: number | undefined
      if (!job.options.canaryPassed && (job.canary ?? 0) > 0) {
        if (job.options.canaryLastSeq === undefined) {
          job.options.canaryLastSeq = (await canaryEnd(deps.db, jid, job.canary!)) ?? 2 ** 31 - 1
          await saveCanaryEnd(deps.db, jid, job.options.canaryLastSeq)
        }
        canaryLimit = job.options.canaryLastSeq
      }
      // The next window of `batch` items by the primary key (job_id, seq: numbered 1..total at creation), its
      // pending ones: each item is read once per run, and no read scans the items before it (a cost that
      // grew with the square of the job).
      const end = Math.min(canaryLimit ?? job.total, job.total)
      const upTo = Math.min(cursor + batch, end)
      const items = cursor < end ? await loadItems(deps.db, jid, `i.seq > $2 and i.seq <= $3 and i.status = 'pending'`, [cursor, upTo]) : []
      cursor = Math.max(cursor, upTo)
      if (items.length === 0 && cursor < end) continue // a window of items skipped at creation
      if (items.length === 0) {
        if (!(await drain())) break
        if (canaryLimit !== undefined) {
          // The canary is out: wait, then see whether any of it came back.
          try {
            await sleep(job.options.canaryWaitMs, stop.signal)
          } catch {
            break
          }
          const { sent, bad } = await canaryOutcome(deps.db, jid, canaryLimit)
          if (bad > 0) {
            await pauseSelf(run, `canary: ${bad} of ${sent} canary replays failed or came back to the DLQ (resume to go on)`)
            break
          }
          await passCanary(deps.db, jid)
          job.options.canaryPassed = true
          await progress()
          continue
        }
        await completeRunning(deps.db, jid, runner)
        break
      }
      // Prepared while the previous batch is on the wire (and the one before it is recorded): the broker
      // never waits for the database between batches. Keys whose send failed in the previous batch are
      // known only at its acknowledgements: sendPrepared holds their records back then.
      const prepared = await prepareBatch(run, items, blockedKeys)
      let running = true
      if (inFlight) {
        const sent = await inFlight
        inFlight = undefined
        running = settling === undefined || (await settling) === 'running'
        settling = settle(run, sent)
        settling.catch(() => undefined) // awaited by drain; never an unhandled rejection meanwhile
      }
      if (!running) stop.abort() // paused, cancelled or taken over: the prepared batch goes back unsent
      inFlight = sendPrepared(run, prepared, limiter, blockedKeys, stop.signal)
      if (!running) {
        await drain()
        break
      }
      // The failure-rate check (every 250 ms) and the progress read, side by side: both are on the loop's path.
      let now: Awaited<ReturnType<typeof failureRate>> | undefined
      if (job.maxFailureRate !== null && Date.now() - lastCheck >= 250) {
        lastCheck = Date.now()
        ;[now] = await Promise.all([failureRate(run), progress()])
      } else await progress()
      if (now !== undefined && job.maxFailureRate !== null) {
        const base = job.options.baseline ?? { sent: 0, failed: 0, again: 0 }
        const sends = now.sent - base.sent + (now.failed - base.failed)
        const bad = now.failed - base.failed + (now.again - base.again)
        if (sends >= job.options.failureSample && bad / sends > job.maxFailureRate) {
          await pauseSelf(run, `failure rate ${(bad / sends).toFixed(2)} above ${job.maxFailureRate}: ${bad} of ${sends} replays failed (resume to go on)`)
          await drain()
          break
        }
      }
    }
    // Whatever is in flight is recorded before the run ends (unsent items go back to pending).
    await drain()
    stoppedBySignal = opts.signal?.aborted === true
  } catch (err) {
    if (isLifelineError(err, 'LL_DLQ_CONFLICT') && err.details.takenOver === true) {
      // Another runner holds the job now: its recovery settles what this one sent and did not record.
      takenOver = true
      stop.abort()
      await Promise.allSettled([inFlight, settling])
      log.warn('redrive job taken over by another runner: this run stops without recording more')
      return getJob(deps.db, jid)
    }
    log.error({ err }, 'redrive job failed')
    await failRunning(deps.db, jid, runner, publicErrorText(err).slice(0, 2000)).catch(() => undefined)
    throw err
  } finally {
    clearInterval(heartbeat)
    opts.signal?.removeEventListener('abort', onAbort)
    await beating
    // Stopped by the caller: left running without a heartbeat, so resumeInterruptedJobs takes it at once.
    if (takenOver) {
      // Nothing of this run's: the job's runner column names the new runner.
    } else if (stoppedBySignal) await abandonRunning(deps.db, jid, runner).catch(() => undefined)
    else await releaseRunner(deps.db, jid, runner).catch(() => undefined)
  }
  await progress()
  return job
}

/**
 * Resumes the jobs left `running` whose heartbeat is stale (3 × heartbeatMs, or `staleMs`): a processor
 * killed mid-job. Each resumes in the background (or awaited with `wait`); returns their ids.
 */
export async function resumeInterruptedJobs(deps: RedriveDeps, opts: { staleMs?: number; wait?: boolean; signal?: AbortSignal; onProgress?(job: RedriveJob): void } = {}): Promise<string[]> {
  const staleMs = opts.staleMs ?? jobLeaseMs(deps)
  const ids = await staleJobIds(deps.db, staleMs)
  const log = (deps.logger ?? silentLogger()).child({ component: 'dlq-redrive' })
  const runs = ids.map((id) =>
    runRedriveJob({ ...deps, heartbeatMs: Math.min(deps.heartbeatMs ?? redriveDefaults.heartbeatMs, Math.max(1, Math.floor(staleMs / 3))) }, id, opts).catch((err: unknown) => {
      log.error({ err, jobId: id }, 'resuming an interrupted redrive job failed')
    }),
  )
  if (opts.wait) await Promise.all(runs)
  return ids
}
