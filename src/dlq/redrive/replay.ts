/**
 * Single-record actions: replay a record (its stored value or one of its edits) to a target, and close it
 * (discard, resolve). Tables: `migrations/0004_dlq.sql` and `0005_dlq_redrive.sql`; see docs/dlq.md.
 *
 * A replay sends the record's key, value (encrypted fields decrypted by the `Masker`) and user headers
 * to a target: the origin topic and partition (from the failure context), a retry tier of the service that
 * dead-lettered it, or another topic. Failure headers (Lifeline's and other systems') are stripped and
 * replay headers added: `lifeline.replay.id` (a new UUID v7, also `lifeline_dlq_replays.replay_id`),
 * `lifeline.replay.count` (replays of the record's lineage, this one included) and `lifeline.replay.actor`.
 * A replay that fails again comes back to a DLQ with these headers and the indexer links it to this life.
 * Its row is written before its send, its status moves `pending` → `replaying` → `replayed` (or back to
 * `pending` when the send fails), and the parked key of a replayed or closed record is released (unless
 * the replay carries the key's head token back to its origin).
 *
 * Limits: a record whose lineage has been replayed `maxRedrivesPerRecord` times (its own replays plus the
 * replays before it came back, from `lifeline.replay.count` or its earlier lives) is refused with
 * LL_REDRIVE_LIMIT (`details.loop` when the earlier lives alone reach it); `force` overrides, and also
 * allows replaying a record already `replayed` (or stuck in `replaying`).
 *
 * @module
 */
import { dlqConflict, isLifelineError, LifelineError, publicErrorText } from '../../errors.js'
import type { ProduceAck } from '../../kafka/types.js'
import { silentLogger } from '../../logger.js'
import { crashPoint } from '../../util/crash-points.js'
import { endFailed } from '../../trace/tracing.js'
import { uuidV7 } from '../../util/uuid-v7.js'
import { appendAudit, type AuditEntry } from '../audit.js'
import { setStatus } from '../records.js'
import { parkedHead, parkedOf, releaseKey } from './parked.js'
import { clearValue, limitError, lineage, plan, replayable, withClearKey } from './plan.js'
import { deleteReplay, earlierLives, findEdit, insertEvent, insertReplay, loadSource, recordReplayAck } from './record-store.js'
import { redriveSpan } from './span.js'
import { redriveDefaults, type RedriveDeps, type RedriveTarget, type ReplayResult } from './types.js'
import { parseTarget } from './target.js'
import { positiveId, text } from './validate.js'

async function replayOne(deps: RedriveDeps, id: string, opts: { actor: string; target?: RedriveTarget; force?: boolean; edit?: { id: string; value: Buffer }; audit?: AuditEntry }): Promise<ReplayResult> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const target = parseTarget(opts.target)
  const force = opts.force === true
  const db = deps.db
  const source = withClearKey(await loadSource(db, rid), deps.masker)
  const max = deps.maxRedrivesPerRecord ?? redriveDefaults.maxRedrivesPerRecord
  const lives = (await earlierLives(db, [source])).get(rid) ?? 0
  if (!force) {
    const refused = limitError(source, lives, max)
    if (refused) throw refused
  }
  if (!replayable(source.status, force)) {
    throw dlqConflict(`DLQ record ${rid} is ${source.status}: ${source.status === 'replayed' || source.status === 'replaying' ? 'force to replay it again' : 'it cannot be replayed'}`, { id: rid, status: source.status })
  }
  const value = clearValue(source, opts.edit?.value ?? source.value, deps.masker)
  const parked = await parkedOf(deps.parkedKeys, [source])
  const replayId = uuidV7()
  const count = lineage(source, lives).total + 1
  const planned = plan(source, target, { id: replayId, count, actor }, value, parkedHead(parked, source)?.headToken)
  const detail = { replayId, target: planned.topic, ...(opts.edit ? { editId: opts.edit.id } : {}) }
  // The replay row first: a replay failing at once may come back to the DLQ before the send resolves here.
  await insertReplay(db, { replayId, recordId: rid, topic: planned.topic, partition: planned.record.partition ?? null, edited: opts.edit !== undefined, actor, editId: opts.edit?.id ?? null, count })
  const moved = source.status === 'pending'
  // The audit row commits with the change that starts the replay: none, nothing sent.
  const audit = opts.audit && { ...opts.audit, detail: { ...opts.audit.detail, ...detail, outcome: 'started' } }
  try {
    if (moved) await setStatus(db, rid, 'replaying', { actor, from: 'pending', reason: 'replay', detail, ...(audit ? { audit } : {}) })
    else {
      await db.transaction(async (tx) => {
        await insertEvent(tx, rid, source.status, source.status, actor, 'forced replay', detail)
        if (audit) await appendAudit(tx, audit)
      })
    }
  } catch (err) {
    await deleteReplay(db, replayId)
    throw err
  }
  planned.record.timestamp = Date.now()
  const span = redriveSpan(planned.record, source.headers)
  let ack: ProduceAck
  try {
    ;[ack] = (await deps.producer.send([planned.record])) as [ProduceAck]
    span?.end()
  } catch (err) {
    if (span) endFailed(span, err)
    await deleteReplay(db, replayId)
    const failed = opts.audit && { ...opts.audit, detail: { ...opts.audit.detail, ...detail, outcome: 'send-failed', code: isLifelineError(err) ? err.code : 'ERROR' } }
    // The reason is readable by every viewer: the code only; Kafka's text goes to the log (and the caller).
    ;(deps.logger ?? silentLogger()).warn({ err, recordId: rid, replayId }, 'a replay send failed')
    if (moved) await setStatus(db, rid, 'pending', { actor, reason: `send failed: ${publicErrorText(err)}`.slice(0, 2000), detail, ...(failed ? { audit: failed } : {}) })
    else if (failed) await appendAudit(db, failed)
    throw err
  }
  crashPoint('redrive.after-produce')
  await recordReplayAck(db, replayId, rid, ack)
  if (moved) {
    try {
      await setStatus(db, rid, 'replayed', { actor, from: 'replaying', reason: 'replayed', detail: { ...detail, partition: ack.partition, offset: ack.offset } })
    } catch (err) {
      // It came back to the DLQ already (the indexer made it failed-again): that is its status now.
      if (!isLifelineError(err, 'LL_DLQ_CONFLICT')) throw err
    }
  }
  crashPoint('redrive.after-status')
  if (planned.release) await releaseKey(deps, source, actor, 'redriven')
  return { replayId, topic: ack.topic, partition: ack.partition, offset: ack.offset }
}

/** Replays one record (see the module doc): LL_NOT_FOUND, LL_DLQ_CONFLICT (status), LL_REDRIVE_LIMIT, LL_ARGUMENT_INVALID. */
export function replayRecord(deps: RedriveDeps, id: string, opts: { actor: string; target?: RedriveTarget; force?: boolean; audit?: AuditEntry }): Promise<ReplayResult> {
  return replayOne(deps, id, opts)
}

/** Replays the record's edit `editId` (default: its latest edit) instead of its stored value. */
export async function replayEdited(deps: RedriveDeps, id: string, opts: { actor: string; editId?: string; target?: RedriveTarget; force?: boolean; audit?: AuditEntry }): Promise<ReplayResult> {
  const rid = positiveId('record', id)
  const edit = await findEdit(deps.db, rid, opts.editId === undefined ? undefined : positiveId('edit', opts.editId))
  if (edit === undefined) throw new LifelineError('LL_NOT_FOUND', opts.editId === undefined ? `DLQ record ${rid} has no edit` : `edit ${opts.editId} of DLQ record ${rid} does not exist`, { details: { id: rid, editId: opts.editId } })
  return replayOne(deps, rid, { ...opts, edit })
}

async function closeRecord(deps: RedriveDeps, id: string, to: 'discarded' | 'resolved', opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const reason = text('reason', opts.reason, 2000)!
  // The clear key first: closing releases the record's parked key, which the masked key would not name.
  const source = withClearKey(await loadSource(deps.db, rid), deps.masker)
  await setStatus(deps.db, rid, to, { actor, reason, ...(opts.audit ? { audit: { ...opts.audit, detail: { ...opts.audit.detail, outcome: 'ok' } } } : {}) })
  // Never a replay in flight (a failed-again record's next life is the one parked, if any).
  if (source.status === 'pending' || source.status === 'failed-again') await releaseKey(deps, source, actor, to === 'discarded' ? 'discarded' : 'resolved')
}

/** Closes a record for good with a reason (never a delete) and releases its parked key. */
export function discardRecord(deps: RedriveDeps, id: string, opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  return closeRecord(deps, id, 'discarded', opts)
}

/** Marks a record handled by other means (with a reason) and releases its parked key. */
export function resolveRecord(deps: RedriveDeps, id: string, opts: { actor: string; reason: string; audit?: AuditEntry }): Promise<void> {
  return closeRecord(deps, id, 'resolved', opts)
}
