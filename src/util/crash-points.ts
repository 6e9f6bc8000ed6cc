/**
 * Named crash points: a documented fault-injection facility (in the spirit of FoundationDB's buggify).
 *
 * Every protocol step that writes state (a parked key, a retry-tier or DLQ copy, a parked record, a
 * release, a commit, an inbox transaction, a Kafka transaction, a redrive) calls {@link crashPoint} with
 * its name right after the write. Unless `LIFELINE_CRASH_AT` names that point the call does nothing (one map lookup). With
 * `LIFELINE_CRASH_AT=<point>[:<nth>]` the process kills itself with SIGKILL the nth time (default the
 * first) it passes the point: no `finally`, no flush, no close — what a power cut or an OOM kill does.
 *
 * The variable is read once, when this module is first imported. An unknown point name is refused at
 * that moment (a typo must not make a crash test pass by never crashing).
 *
 * The points are listed in docs/crash-points.md (a test checks the list and the document agree) and
 * enumerated here, so a test can iterate over all of them.
 *
 * @module
 */
import { writeSync } from 'node:fs'
import { LifelineError } from '../errors.js'

/** Every named crash point: name → the moment it stands for (after the write it names, before the next step). */
export const CRASH_POINTS = {
  // ---- parking a key / moving its head (write-ahead: the outgoing copy is in the database first) -----
  'park.after-state': "the key is parked (or its head moved) with the outgoing copy stored in the database — with every head move of the partition's batch, written in the same statement; no copy of the batch is produced yet",
  'park.after-produce': 'the retry-tier or DLQ copy of the head is acknowledged by the broker; the database still says it is pending',
  'park.after-placed': "the database says the copy is placed (with the partition's other copies marked in the same statement); no record of the batch is marked finished yet",
  // ---- records of a parked key -----------------------------------------------------------------------
  'follow.after-store': 'a record of a parked key is stored behind its head; its offset is not marked finished yet',
  // ---- a head in a retry tier succeeding -------------------------------------------------------------
  'tier.after-handler': "a retry-tier head's handler succeeded; its key is not released yet",
  'tier.after-release': "a retry-tier head's key is released; the tier record is not marked finished yet",
  // ---- dead letters without parking ------------------------------------------------------------------
  'dlq.after-produce': 'a dead letter (of a record whose key does not park) is acknowledged; its offset is not marked finished yet',
  // ---- replaying a released key's parked records -----------------------------------------------------
  'replay.after-handler': "a parked record's handler succeeded on replay; its row is not deleted yet",
  'replay.after-delete': "a replayed parked record's row is deleted; the next one has not started",
  'recover.after-produce': "a pending copy left by a member that lost its partition is produced again by the partition's new owner; not marked placed yet",
  'release.after-finish': 'a drained key is forgotten (its row deleted); live records of it flow again',
  // ---- sequences -------------------------------------------------------------------------------------
  'gap.after-hold': 'a record that arrived ahead of a sequence gap is stored behind the gap; its offset is not marked finished yet',
  'gap.after-expire': 'a timed-out gap was recorded as skipped or dead-lettered; the records behind it have not run yet',
  // ---- commits and effects ---------------------------------------------------------------------------
  'commit.before': 'last sequences are saved; the offsets that cover them are not committed yet',
  'commit.after': 'offsets are committed',
  'inbox.after-commit': "an inbox transaction (event-id claim plus the handler's writes) committed; the handler has not returned yet",
  // ---- the transactional pipeline (Kafka transactions) -----------------------------------------------
  'tx.after-send': "a batch's outputs (and dead letters) are acknowledged in its open transaction; its offsets are not added and nothing is committed yet",
  'tx.after-commit': "a batch's transaction (outputs, dead letters and offsets) committed; the pipeline has not marked the batch done yet",
  // ---- the DLQ processor's redrive -------------------------------------------------------------------
  'redrive.after-produce': 'a redriven record is acknowledged by the broker; its status and job item are not written yet',
  'redrive.after-status': "a redriven record's status and job item are written; the key is not released yet",
} as const satisfies Record<string, string>

export type CrashPointName = keyof typeof CRASH_POINTS

/** The environment variable that arms a crash point. */
export const CRASH_ENV = 'LIFELINE_CRASH_AT'

interface Armed {
  readonly point: CrashPointName
  readonly nth: number
  passed: number
}

/** Parses `<point>[:<nth>]` (pure); LL_OPTIONS_INVALID for an unknown point or a bad count. */
export function parseCrashSpec(spec: string): { point: CrashPointName; nth: number } {
  const [name = '', count, ...rest] = spec.trim().split(':')
  if (!Object.hasOwn(CRASH_POINTS, name)) {
    throw new LifelineError('LL_OPTIONS_INVALID', `invalid ${CRASH_ENV}: unknown crash point ${JSON.stringify(name)}; known points: ${Object.keys(CRASH_POINTS).join(', ')}`)
  }
  const nth = count === undefined ? 1 : Number(count)
  if (rest.length > 0 || !Number.isSafeInteger(nth) || nth < 1) {
    throw new LifelineError('LL_OPTIONS_INVALID', `invalid ${CRASH_ENV}: ${JSON.stringify(spec)} must be <point> or <point>:<nth> with nth a positive integer`)
  }
  return { point: name as CrashPointName, nth }
}

const spec = process.env[CRASH_ENV]
const armed: Armed | undefined = spec === undefined || spec === '' ? undefined : { ...parseCrashSpec(spec), passed: 0 }

/** The armed point, if any (for logs and the rehearsal report). */
export function armedCrashPoint(): { point: CrashPointName; nth: number } | undefined {
  return armed && { point: armed.point, nth: armed.nth }
}

/**
 * Marks that the protocol passed `point`. Inert unless `LIFELINE_CRASH_AT` armed this point; then the nth
 * pass kills the process with SIGKILL (synchronously: nothing after this call runs).
 */
export function crashPoint(point: CrashPointName): void {
  if (armed === undefined || armed.point !== point) return
  armed.passed++
  if (armed.passed < armed.nth) return
  // A marker on stderr lets a test tell this crash from any other death (written synchronously).
  writeSync(2, `lifeline: crash point ${point} (pass ${armed.passed}) reached: SIGKILL\n`)
  process.kill(process.pid, 'SIGKILL')
}
