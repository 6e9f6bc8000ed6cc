/**
 * The offsets sampler in its own process: every second it asks the brokers for the group's committed
 * offsets and the log end, and prints each sample as a JSON line. It runs apart from the harness because
 * librdkafka's admin client can abort the whole process on an assertion while brokers are killed (seen:
 * `rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0`); the harness restarts it.
 * Settings in `LIFELINE_REHEARSAL_SAMPLER` (JSON: brokers, group, topic).
 *
 * @module
 */
import { createAdmin } from '../kafka/index.js'
import { sampleOffsets } from './collect.js'

const raw = process.env.LIFELINE_REHEARSAL_SAMPLER
if (raw === undefined) throw new Error('LIFELINE_REHEARSAL_SAMPLER is not set: this module is started by lifeline rehearse')
const { brokers, group, topic } = JSON.parse(raw) as { brokers: string[]; group: string; topic: string }
// Die with the harness: a harness that crashed must not leave members consuming (a reparented child's
// parent pid changes).
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL')
}, 1000).unref()
const admin = createAdmin({ brokers })
await admin.connect()
process.on('SIGTERM', () => void admin.close().finally(() => process.exit(0)))
for (;;) {
  const started = Date.now()
  const sample = await sampleOffsets(admin, group, topic)
  if (sample) process.stdout.write(`${JSON.stringify(sample)}\n`)
  await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))))
}
