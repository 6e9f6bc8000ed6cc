/**
 * The operator's redrive in its own process, so a `redrive.*` crash point (`LIFELINE_CRASH_AT`) can kill
 * it mid-redrive, as it would kill a DLQ processor. Replays the given DLQ records in order and prints
 * `REPLAYED <id>` after each. Settings in `LIFELINE_REHEARSAL_OPERATOR` (JSON: brokers, dbUrl, service,
 * target, ids).
 *
 * @module
 */
import { replayRecord } from '../dlq/redrive/replay.js'
import { createProducer } from '../kafka/index.js'
import { createParkedKeys } from '../ordering/state-store.js'
import { openPostgres } from '../store/open.js'

const raw = process.env.LIFELINE_REHEARSAL_OPERATOR
if (raw === undefined) throw new Error('LIFELINE_REHEARSAL_OPERATOR is not set: this module is started by lifeline rehearse')
const cfg = JSON.parse(raw) as { brokers: string[]; dbUrl: string; service: string; target: 'origin' | 'retry-tier'; ids: string[] }
const db = await openPostgres({ url: cfg.dbUrl, poolSize: 2 })
const producer = createProducer({ brokers: cfg.brokers, clientId: 'rehearsal-operator-child' })
await producer.connect()
const deps = { db, producer, parkedKeys: createParkedKeys(db), kafka: { brokers: cfg.brokers } }
for (const id of cfg.ids) {
  await replayRecord(deps, id, { actor: 'rehearsal', target: cfg.target === 'origin' ? { kind: 'origin' } : { kind: 'retry-tier', tier: 1, service: cfg.service } })
  process.stdout.write(`REPLAYED ${id}\n`)
}
await producer.close()
await db.close()
