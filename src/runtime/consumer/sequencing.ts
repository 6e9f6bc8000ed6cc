/**
 * Per-key sequences: reading a record's sequence (decoding its value at intake) and noting the last
 * handled one. What a sequence means for the record (run, duplicate, gap) is decided by the pure rules in
 * src/ordering/key-rules.ts; records that arrive ahead of a gap are stored in the database (parking.ts),
 * never held in memory, so a gap never pauses a partition and survives a restart.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import { wrapDecode } from '../decode.js'
import { Message } from '../message.js'
import type { LifelineMessage } from '../options.js'
import type { ConsumerContext, Item, PartitionState } from './context.js'

/** The record's sequence (decoding it at intake); undefined when it has none or is already marked to fail. */
export function sequenceOf(ctx: ConsumerContext, item: Item): number | undefined {
  const seqOptions = ctx.options.sequence
  if (!seqOptions || item.record.key === null) return undefined
  if (item.seq !== undefined) return item.seq
  if (item.forced !== undefined) return undefined
  let value: unknown
  try {
    value = wrapDecode(ctx.options.decoder, item.record.value)
    item.decoded = { value }
  } catch (error) {
    item.decoded = { error }
    return undefined
  }
  let raw: unknown
  const r = item.record
  try {
    raw = seqOptions.extract(new Message(r, value, 0, item.state.handlers.signal) as LifelineMessage<unknown>)
  } catch (err) {
    item.forced = new LifelineError('LL_SEQUENCE_INVALID', `sequence.extract threw for ${r.topic}[${r.partition}]@${r.offset}: ${(err as Error)?.message ?? String(err)}`, { cause: err, retriable: false })
    return undefined
  }
  if (raw === undefined || raw === null) return undefined
  const seq = typeof raw === 'bigint' && raw >= 0n && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : raw
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    item.forced = new LifelineError('LL_SEQUENCE_INVALID', `sequence.extract returned ${typeof raw === 'bigint' ? `${raw}n` : JSON.stringify(raw)} for ${r.topic}[${r.partition}]@${r.offset}; expected a non-negative safe integer`, { retriable: false })
    return undefined
  }
  item.seq = seq
  return seq
}

/** Notes `seq` as the key's last handled sequence (saved before the offsets that cover it are committed). */
export function noteSequence(state: PartitionState, sk: string, key: Buffer, seq: number): void {
  const known = state.lastSeq.get(sk)
  if (known !== undefined && known >= seq) return
  state.lastSeq.set(sk, seq)
  state.dirtySeq.set(sk, { key, seq })
}
