/**
 * One batch of a running job: prepared (skips, the lineage limit, replay ids, the records planned and
 * marked `sending`), sent under the rate limit (a key whose send failed holds its later records back, to
 * keep the key in order), then settled (recorded, and the parked keys of records replayed elsewhere than
 * their origin released).
 *
 * @module
 */
import { LifelineError, publicErrorText } from '../../errors.js'
import { crashPoint } from '../../util/crash-points.js'
import { endFailed } from '../../trace/tracing.js'
import type { RateLimiter } from '../../util/rate-limiter.js'
import { uuidV7 } from '../../util/uuid-v7.js'
import { markSending, recordBatch } from './batch-store.js'
import { parkedHead, parkedOf, releaseKey } from './parked.js'
import { clearValue, keyId, limitError, lineage, plan, replayable, withClearKey, type Planned } from './plan.js'
import { earlierLives } from './record-store.js'
import type { Acked, Held, ItemRow, Prepared, Run, Sent, SendFailure } from './run.js'
import { redriveSpan } from './span.js'
import { redriveDefaults, type RedriveJobStatus, type Source } from './types.js'

/** Releases the parked keys of records replayed to their origin topic. */
export async function releaseAll(run: Run, acked: readonly Acked[]): Promise<void> {
  if (!run.deps.parkedKeys) return
  const candidates = acked.filter((a) => a.release && a.source.consumerGroup !== null && a.source.originTopic !== null && a.source.key !== null)
  if (candidates.length === 0) return
  const parked = await parkedOf(run.deps.parkedKeys, candidates.map((c) => c.source as Source))
  for (const a of candidates) {
    const head = parkedHead(parked, a.source as Source)
    if (head === undefined) continue
    try {
      await releaseKey(run.deps, a.source, run.actor, 'redriven')
    } catch (err) {
      run.log.warn({ err, recordId: a.source.id }, 'the parked key of a redriven record was not released; release it with `lifeline keys release`')
    }
  }
}

const KEPT_BACK = 'an earlier record of its key failed in this run (kept pending to keep the key in order)'

/** Plans a batch (skips, limits, replay ids) and marks it `sending` / `replaying` in one transaction. */
export async function prepareBatch(run: Run, items: readonly ItemRow[], blockedKeys: Set<string>): Promise<Prepared> {
  const { deps, job } = run
  const max = deps.maxRedrivesPerRecord ?? redriveDefaults.maxRedrivesPerRecord
  const sources = items.map((i) => i.source)
  const lives = await earlierLives(deps.db, sources)
  const parked = await parkedOf(deps.parkedKeys, sources)
  const skipped: Array<{ seq: number; recordId: string; detail: string }> = []
  const ready: Array<{ item: ItemRow; planned: Planned; replayId: string; count: number }> = []
  for (const item of items) {
    const s = item.source
    const key = s.key === null ? undefined : keyId(s.originTopic ?? s.topic, s.key)
    if (key !== undefined && blockedKeys.has(key)) {
      skipped.push({ seq: item.seq, recordId: s.id, detail: KEPT_BACK })
      continue
    }
    if (!replayable(s.status, job.force)) {
      skipped.push({ seq: item.seq, recordId: s.id, detail: `record is ${s.status}` })
      continue
    }
    const refused = job.force ? undefined : limitError(s, lives.get(s.id) ?? 0, max)
    try {
      if (refused) throw refused
      const replayId = item.replayId ?? uuidV7()
      const count = lineage(s, lives.get(s.id) ?? 0).total + 1
      const clear = withClearKey(s, deps.masker)
      const planned = plan(clear, job.target, { id: replayId, count, actor: run.actor }, clearValue(s, s.value, deps.masker), parkedHead(parked, clear)?.headToken)
      ready.push({ item: { ...item, source: clear }, planned, replayId, count })
    } catch (err) {
      if (key !== undefined) blockedKeys.add(key)
      skipped.push({ seq: item.seq, recordId: s.id, detail: err instanceof LifelineError ? `${err.code}: ${err.message}` : String(err) })
    }
  }
  if (ready.length === 0) return { ready, skipped }
  const gone = await markSending(run, ready)
  if (gone.size === 0) return { ready, skipped }
  for (const r of ready) if (gone.has(r.item.seq)) skipped.push({ seq: r.item.seq, recordId: r.item.source.id, detail: 'record is no longer pending (changed since its window was read)' })
  return { ready: ready.filter((r) => !gone.has(r.item.seq)), skipped }
}

/** Sends a prepared batch under the rate limit; resolves once every send is acknowledged or failed. */
export async function sendPrepared(run: Run, { ready, skipped }: Prepared, limiter: RateLimiter | undefined, blockedKeys: Set<string>, signal: AbortSignal): Promise<Sent> {
  const { deps } = run
  const acked: Acked[] = []
  const failed: SendFailure[] = []
  const unsent: Array<{ seq: number; replayId: string; recordId: string }> = []
  const sends: Array<Promise<void>> = []
  const held: Held[] = []
  for (const r of ready) {
    if (signal.aborted) {
      unsent.push({ seq: r.item.seq, replayId: r.replayId, recordId: r.item.source.id })
      continue
    }
    const source = r.item.source
    // Prepared before the previous batch was acknowledged: a send of its key failed there since.
    if (source.key !== null && blockedKeys.has(keyId(source.originTopic ?? source.topic, source.key))) {
      held.push({ seq: r.item.seq, replayId: r.replayId, recordId: source.id, detail: KEPT_BACK })
      continue
    }
    let at: number
    try {
      at = limiter ? await limiter.acquire(signal) : Date.now()
    } catch {
      unsent.push({ seq: r.item.seq, replayId: r.replayId, recordId: r.item.source.id })
      continue
    }
    r.planned.record.timestamp = at
    const s = r.item.source
    const span = redriveSpan(r.planned.record, s.headers)
    sends.push(
      deps.producer.send([r.planned.record]).then(
        ([ack]) => {
          span?.end()
          acked.push({ seq: r.item.seq, replayId: r.replayId, ack: ack!, source: s, release: r.planned.release })
        },
        (err: unknown) => {
          if (span) endFailed(span, err)
          if (s.key !== null) blockedKeys.add(keyId(s.originTopic ?? s.topic, s.key))
          run.log.warn({ err, recordId: s.id, replayId: r.replayId }, 'a replay send failed')
          failed.push({ seq: r.item.seq, replayId: r.replayId, recordId: s.id, error: publicErrorText(err) })
        },
      ),
    )
  }
  await Promise.all(sends)
  if (acked.length > 0) crashPoint('redrive.after-produce')
  return { acked, failed, unsent, skipped, held }
}

/** Records a sent batch, then releases the parked keys of its records. */
export async function settle(run: Run, sent: Sent): Promise<RedriveJobStatus | undefined> {
  const status = await recordBatch(run, sent.acked, sent.failed, sent.unsent, sent.skipped, sent.held)
  if (sent.acked.length > 0) crashPoint('redrive.after-status')
  await releaseAll(run, sent.acked)
  return status
}
