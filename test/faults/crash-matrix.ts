/**
 * The crash-point matrix (issue 10): for every named crash point of the consumer's protocols, on both
 * databases, a worker process runs the protocol workload (test/helpers/protocol-workload.ts: a head in a
 * retry tier, a head in the DLQ, a parked record failing again on replay, an operator release of a head
 * waiting in a tier, a skipped sequence gap with a late straggler, duplicates, plain keys) and is killed
 * with SIGKILL the first time it passes the point. It is restarted (no crash armed) and driven to the end;
 * then the invariants are checked: nothing lost, no effect twice, per-key order, no key stuck, no head
 * runnable twice (a given-up head never applies; one logical DLQ copy per dead letter).
 *
 * `npm run test:faults` runs it (CI too) through crash-matrix-pglite.test.ts and
 * crash-matrix-postgres.test.ts; `npm run test:faults -- --test-name-pattern=park.after-state` runs one point.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CRASH_POINTS, type CrashPointName } from '../../src/util/crash-points.js'
import type { DatabaseKind } from '../helpers/db.js'
import { randomName, topic } from '../helpers/kafka.js'
import { checkInvariants, databaseEnv, runWorkload } from '../helpers/protocol-workload.js'

/** Points this workload cannot pass (other protocols, tested where they live). */
const ELSEWHERE: Partial<Record<CrashPointName, string>> = {
  'redrive.after-produce': 'the DLQ processor (test/dlq/redrive.test.ts)',
  'redrive.after-status': 'the DLQ processor (test/dlq/redrive.test.ts)',
  'recover.after-produce': 'a second crash: its own test below',
  'tx.after-send': 'the transactional pipeline (test/effects/transactional-pipeline.test.ts)',
  'tx.after-commit': 'the transactional pipeline (test/effects/transactional-pipeline.test.ts)',
}

/** The matrix on one database kind (one file per kind: `npm run test:faults` runs them side by side). */
export function crashMatrix(kind: DatabaseKind): void {
  for (const point of Object.keys(CRASH_POINTS) as CrashPointName[]) {
    const elsewhere = ELSEWHERE[point]
    test(`${kind}: crash at ${point}`, { skip: elsewhere ? `passed by ${elsewhere}` : false, timeout: 240_000 }, async (t) => {
      const source = await topic(t, { partitions: 2 })
      const result = await runWorkload(t, { source, env: { TOPIC: source, GROUP: randomName('crash'), ...(await databaseEnv(t, kind)) }, crashes: [point] })
      assert.deepEqual(result.crashed, [point], `the workload passed ${point} and the worker died there`)
      await checkInvariants(t, source, result)
    })
  }
  test(`${kind}: crash at park.after-state, then at recover.after-produce while the next owner completes the pending copy`, { timeout: 240_000 }, async (t) => {
    const source = await topic(t, { partitions: 2 })
    const result = await runWorkload(t, { source, env: { TOPIC: source, GROUP: randomName('crash'), ...(await databaseEnv(t, kind)) }, crashes: ['park.after-state', 'recover.after-produce'] })
    assert.deepEqual(result.crashed, ['park.after-state', 'recover.after-produce'])
    await checkInvariants(t, source, result)
  })
}
