/**
 * Completing copies a former owner of a partition wrote ahead and never confirmed (it died, lost the
 * partition, or was closed mid-write): the partition's new owner, right after its claim, looks for each
 * DLQ copy in its topic (from the high watermark stored with it) and produces it only when it is absent —
 * a retry-tier copy is produced again either way (a second copy with the same token is harmless: whichever
 * runs first moves the head, the other is stale) — runs the dead-letter hook for a DLQ copy, and marks it
 * placed.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import type { PendingCopy } from '../../ordering/protocol-store.js'
import { wrapDecode } from '../decode.js'
import { decodeFailureHeaders } from '../../failure/headers.js'
import { Message } from '../message.js'
import { reportError } from './events.js'
import { writeCopy } from './leave-main-path.js'
import { CANCELLED, type ConsumerContext, type PartitionState } from './context.js'

export async function recoverPending(ctx: ConsumerContext, state: PartitionState, pending: readonly PendingCopy[]): Promise<void> {
  for (const p of pending) {
    if (state.revoking) return
    const hook = p.location === 'dlq' && ctx.options.source.onDeadLetter ? () => recoveredHook(ctx, state, p) : undefined
    const done = await writeCopy(ctx, state, p, true, hook, true)
    if (done === CANCELLED) return
    ctx.log.info({ topic: p.topic, copy: `${p.copy.topic}[${p.copy.partition}]`, offset: done?.offset, token: p.token }, 'copy written ahead by a former owner of the partition completed')
  }
}

/**
 * The dead-letter hook for a copy a former owner did not confirm (it may have run the hook already: the
 * hook is at least once). The message is the dead letter's: the record at its origin, with the DLQ value
 * (masked where a masking policy says so); the error is rebuilt from its failure headers.
 */
async function recoveredHook(ctx: ConsumerContext, state: PartitionState, p: PendingCopy): Promise<void> {
  const c = p.copy
  const failure = decodeFailureHeaders(c.headers)
  const record = { topic: failure?.originTopic ?? p.topic, partition: failure?.originPartition ?? c.partition, offset: failure?.originOffset ?? -1, key: c.key, value: c.value, headers: c.headers, timestamp: failure?.originTimestamp ?? 0, size: 0 }
  let value: unknown = c.value
  try {
    value = wrapDecode(ctx.options.decoder, c.value)
  } catch {
    // A value that does not decode (that may be why it was dead-lettered) reaches the hook as its bytes.
  }
  const error = new LifelineError('LL_DEAD_LETTER', failure?.errorMessage ?? 'dead-lettered (recovered after a crash)', { details: { errorCode: failure?.errorCode, errorClass: failure?.errorClass, recovered: true } })
  try {
    await ctx.options.source.onDeadLetter!(new Message(record, value, failure?.attempts ?? 1, state.handlers.signal), error)
  } catch (err) {
    reportError(ctx, new LifelineError('LL_DEAD_LETTER', `onDeadLetter failed for a recovered dead letter of ${record.topic}[${record.partition}]@${record.offset}; the record is in the DLQ`, { cause: err }), 'onDeadLetter hook failed')
  }
}
