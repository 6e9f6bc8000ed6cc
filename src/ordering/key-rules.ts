/**
 * What happens to a record of a source partition before its handler runs (pure): run it, run it as its
 * key's head (a redriven head), skip it, store it behind its key, or open a sequence gap and store it.
 *
 * The inputs are what the partition's owner knows in memory: the key's ordering state (loaded when the
 * partition was assigned and kept by the owner, the only writer of a source key's transitions), the key's
 * last handled sequence, and the record. The rules, in order:
 *
 * 1. A record carrying the park token of its key's current head (a head redriven to its origin topic by
 *    the DLQ processor): run it as the head while the key is parked; once released, the head already
 *    succeeded: skip it.
 * 2. The head itself delivered again (a crash before its offset was committed): its copy in the retry tier
 *    or the DLQ (or, while pending, in the database) is the one runnable copy: skip it.
 * 3. Sequenced records: at or below the last handled sequence → `duplicate` (the caller tells a late
 *    straggler of a skipped range from a duplicate). A key with state: the missing sequence of a gap runs
 *    (`fills-gap`), anything else is stored behind the key. A key without state: the next expected
 *    sequence runs, a later one opens a gap (stored, the partition flows on), an earlier one is a duplicate.
 * 4. Unsequenced records of a key with state: below the head's offset it ran before the head failed (a
 *    redelivery); after it, stored behind the key.
 * 5. Anything else runs.
 *
 * @module
 */
import type { ParkStatus } from './rows.js'

/** The key's ordering state as its owner knows it. */
export interface KeyView {
  status: ParkStatus
  token: string
  /** Source offset of the head; -1 for a gap. */
  headOffset: number
  /** For a gap: the first missing sequence. */
  gapFrom?: number
}

export interface RecordView {
  offset: number
  /** `lifeline.park.token` of a record the DLQ processor redrove to its origin topic. */
  redriveToken?: string
  /** The record's sequence (undefined: not sequenced). */
  seq?: number
}

export type Verdict =
  | { kind: 'run' }
  | { kind: 'fills-gap' }
  | { kind: 'run-as-head' }
  | { kind: 'skip'; why: 'redelivered-head' | 'released-head' | 'ran-before-head' }
  | { kind: 'duplicate' }
  | { kind: 'store' }
  | { kind: 'open-gap'; from: number }

export interface Rules {
  /** The sequence of a key's first record; undefined: a key's first record starts it. */
  firstSequence?: number
}

export function decide(key: KeyView | undefined, record: RecordView, lastSeq: number | undefined, rules: Rules = {}): Verdict {
  if (key && record.redriveToken !== undefined && record.redriveToken === key.token) {
    if (key.status === 'parked') return { kind: 'run-as-head' }
    if (key.status === 'released') return { kind: 'skip', why: 'released-head' }
  }
  if (key && key.status !== 'gap' && record.offset === key.headOffset) return { kind: 'skip', why: 'redelivered-head' }
  if (record.seq !== undefined) {
    const seq = record.seq
    if (lastSeq !== undefined && seq <= lastSeq) return { kind: 'duplicate' }
    if (key) return key.status === 'gap' && seq === key.gapFrom ? { kind: 'fills-gap' } : { kind: 'store' }
    const expected = lastSeq !== undefined ? lastSeq + 1 : rules.firstSequence
    if (expected === undefined || seq === expected) return { kind: 'run' }
    return seq > expected ? { kind: 'open-gap', from: expected } : { kind: 'duplicate' }
  }
  if (key) return key.status !== 'gap' && record.offset < key.headOffset ? { kind: 'skip', why: 'ran-before-head' } : { kind: 'store' }
  return { kind: 'run' }
}

/** What a replay does with the next stored record of a released key (sequences only). */
export type ReplayStep = { kind: 'replay' } | { kind: 'duplicate' } | { kind: 'gap'; from: number }

export function replayStep(seq: number | null, lastSeq: number | undefined, rules: Rules = {}): ReplayStep {
  if (seq === null) return { kind: 'replay' }
  if (lastSeq !== undefined && seq <= lastSeq) return { kind: 'duplicate' }
  const expected = lastSeq !== undefined ? lastSeq + 1 : rules.firstSequence
  if (expected === undefined || seq === expected) return { kind: 'replay' }
  return seq > expected ? { kind: 'gap', from: expected } : { kind: 'duplicate' }
}
