/**
 * One member of the group under rehearsal, in its own process (the harness spawns it, kills it, stops
 * it and cuts it off). Reads its settings from `LIFELINE_REHEARSAL_CHILD` (JSON, {@link ChildConfig}),
 * builds the consumer from the module under rehearsal, logs every consumer event and handler invocation
 * to its member log, starts, and closes on SIGTERM.
 *
 * @module
 */
import { createLogger } from '../logger.js'
import { openPostgres } from '../store/open.js'
import { startTcpProxy } from '../dev/tcp-proxy.js'
import { assertConsumer, loadConsumerFactory, type RehearsalContext } from './contract.js'
import { createApply } from './effects.js'
import { openMemberLog } from './member-log.js'
import { EVENT_ID_HEADER, type RehearsalEvent } from './workload.js'
import { armedCrashPoint } from '../util/crash-points.js'
import { CHILD_ENV, type ChildConfig } from './child-config.js'


const raw = process.env[CHILD_ENV]
if (raw === undefined) throw new Error(`${CHILD_ENV} is not set: this module is started by lifeline rehearse`)
const config = JSON.parse(raw) as ChildConfig
// Die with the harness: a harness that crashed must not leave members consuming (a reparented child's
// parent pid changes).
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL')
}, 1000).unref()
const log = openMemberLog(config.logFile, config.member)
const logger = createLogger({ name: `rehearsal-${config.member}`, level: process.env.LIFELINE_LOG_LEVEL ?? 'warn' })

for (const port of config.forward?.ports ?? []) {
  await startTcpProxy({ listen: { host: '127.0.0.1', port }, target: { host: config.forward!.host, port } })
}
const db = await openPostgres({ url: config.dbUrl, poolSize: 8, connectTimeoutMs: 5000, logger })
const factory = await loadConsumerFactory(config.module)
const ctx: RehearsalContext = {
  brokers: config.brokers,
  groupId: config.groupId,
  service: config.service,
  topic: config.topic,
  db,
  apply: createApply(config.member, log),
  sequence: (m) => (m.value as RehearsalEvent | null)?.seq ?? null,
  eventIdHeader: EVENT_ID_HEADER,
  sessionTimeoutMs: config.sessionTimeoutMs,
  commitIntervalMs: config.commitIntervalMs,
  retryDelaysMs: config.retryDelaysMs,
  logger,
}
const consumer = assertConsumer(await factory(ctx), config.module)
const key = (k: Buffer | null | undefined) => (k === null || k === undefined ? undefined : k.toString())
consumer.on('processed', (i) => log.write({ type: 'processed', topic: i.topic, partition: i.partition, offset: i.offset }))
consumer.on('dead-letter', (i) => log.write({ type: 'dead-letter', topic: i.topic, partition: i.partition, offset: i.offset }))
consumer.on('retry-tier', (i) => log.write({ type: 'retry-tier', topic: i.topic, partition: i.partition, offset: i.offset }))
consumer.on('parked', (i) => log.write({ type: 'parked', topic: i.topic, partition: i.partition, offset: i.offset, key: key(i.key) }))
consumer.on('record-parked', (i) => log.write({ type: 'record-parked', topic: i.topic, partition: i.partition, offset: i.offset, key: key(i.key) }))
consumer.on('duplicate', (i) => log.write({ type: 'duplicate', topic: i.topic, partition: i.partition, offset: i.offset, key: key(i.key) }))
consumer.on('released', (i) => log.write({ type: 'released', topic: i.topic, partition: i.partition, key: key(i.key) ?? '', replayed: i.replayed }))
consumer.on('commit', (offsets) => log.write({ type: 'commit', offsets: offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset })) }))
consumer.on('partitions-assigned', (p) => log.write({ type: 'assigned', partitions: p.map((x) => ({ topic: x.topic, partition: x.partition })) }))
consumer.on('partitions-revoked', (p, lost) => log.write({ type: 'revoked', partitions: p.map((x) => ({ topic: x.topic, partition: x.partition })), lost }))
let errors = 0
consumer.on('error', (err) => {
  // A broker outage can raise thousands; the first hundred say enough.
  if (++errors <= 100) log.write({ type: 'error', message: (err as Error).message })
})

const crash = armedCrashPoint()
log.write({ type: 'started', pid: process.pid, ...(crash ? { crashAt: `${crash.point}:${crash.nth}` } : {}) })
let closing = false
process.on('SIGTERM', () => {
  if (closing) return
  closing = true
  void consumer
    .close()
    .catch((err: unknown) => log.write({ type: 'error', message: `close: ${(err as Error).message}` }))
    .then(() => db.close())
    .finally(() => {
      log.write({ type: 'closed', pid: process.pid })
      log.close()
      process.exit(0)
    })
})
await consumer.start()
process.stdout.write('READY\n')
