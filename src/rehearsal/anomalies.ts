/**
 * The anomaly kinds the rehearsal checker reports (the bad properties of the rehearsal specification),
 * what each means, and the tally that keeps each anomaly once with a few examples.
 *
 * @module
 */

export const BAD_KINDS = [
  'lost',
  'duplicate-effect',
  'key-order',
  'aborted-effect',
  'dlq-missing',
  'dlq-spurious',
  'dlq-duplicated',
  'dlq-wrong-metadata',
  'dlq-bytes',
  'replay-mismatch',
  'offset-backwards',
  'offset-past-unfinished',
] as const
export type AnomalyKind = (typeof BAD_KINDS)[number]

/** What each property means, for the report's table. */
export const PROPERTY_TEXT: Record<AnomalyKind, string> = {
  lost: 'an acknowledged event has no effect and is not in the DLQ (a gap in its key is reported here, with gap: true)',
  'duplicate-effect': 'more than one effect for an event id, or a key state with a sequence applied twice',
  'key-order': "a key's effects were not applied in sequence order",
  'aborted-effect': 'an effect of an attempt that threw (rolled back), of no logged attempt, or started by a member after it lost the partition (zombie)',
  'dlq-missing': 'a poison event that failed before the fix has no DLQ record and no effect',
  'dlq-spurious': 'a DLQ record for an event that is not poison',
  'dlq-duplicated': 'two DLQ records for one source record (same origin partition and offset), redrive lives excluded, that the DLQ processor did not store as one dead letter and its copy',
  'dlq-wrong-metadata': 'DLQ origin topic/partition/offset/key/partition do not match the produce acknowledgement',
  'dlq-bytes': 'DLQ value bytes differ from the bytes produced',
  'replay-mismatch': 'after the fix, a redriven event is not applied exactly once, a discarded one is applied, a second redrive added effects, or a key state differs from the oracle',
  'offset-backwards': "the group's committed offset of a partition went backwards, or past the log end",
  'offset-past-unfinished': 'an offset was committed while a record below it had not finished (no processed, parked, tier, DLQ or duplicate event yet)',
}

export const MAX_EXAMPLES = 8

export interface AnomalyReport {
  count: number
  examples: Array<Record<string, unknown>>
}

/** Anomalies by kind, each subject counted once, with up to {@link MAX_EXAMPLES} examples and timeline marks. */
export class Anomalies {
  readonly byKind = Object.fromEntries(BAD_KINDS.map((k) => [k, { count: 0, examples: [] as Array<Record<string, unknown>> }])) as Record<AnomalyKind, AnomalyReport>
  readonly seen = new Set<string>()
  readonly marks: Array<{ at: number; kind: AnomalyKind }> = []
  add(kind: AnomalyKind, subject: string, example: Record<string, unknown>, at?: number): void {
    const id = `${kind}\0${subject}`
    if (this.seen.has(id)) return
    this.seen.add(id)
    const report = this.byKind[kind]
    report.count++
    if (report.examples.length < MAX_EXAMPLES) report.examples.push(example)
    if (at !== undefined && Number.isFinite(at)) this.marks.push({ at, kind })
  }
}
