/**
 * `lifeline dlq serve`: runs the DLQ processor (indexer, redrive job runner, HTTP API with GET /metrics,
 * the console) until SIGINT/SIGTERM. The only CLI command that loads the HTTP stack (optional peers).
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { createLogger } from '../../logger.js'
import { openDatabase } from '../../store/index.js'
import { writeText as out } from '../output.js'
import { brokersOption } from './common.js'
import { DATABASE_HELP } from './dlq-db.js'
import { positiveInt } from './dlq-options.js'
import { databaseOption } from './keys.js'
import { notificationOptions, withNotificationFlags, type NotificationFlags } from './notifications.js'

interface ServeOptions extends NotificationFlags {
  brokers?: string
  database?: string
  topics?: string
  pattern?: string
  groupId?: string
  port?: string
  host?: string
  bulkThreshold?: string
  approveEdits?: boolean
  approveDiscards?: boolean
  masking?: string
  maxRedrives?: string
  replayTopics?: string
  schemas?: string
  rateDefault?: string
  rateMax?: string
  migrate?: boolean
  console?: boolean
  sessionIdle?: string
  sessionMax?: string
  jobHeartbeat?: string
}

/** A JSON file's content (a clear message naming the option when it cannot be read or parsed). */
function jsonFile(option: string, path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`${option}: cannot read ${path}: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`${option}: ${path} is not JSON: ${(err as Error).message}`)
  }
}

/** Adds `serve` to the `dlq` command. */
export function registerDlqServe(dlq: Command): void {
  withNotificationFlags(dlq
    .command('serve')
    .description('run the DLQ processor: the indexer, the redrive job runner and the HTTP API (with GET /metrics), until Ctrl-C'))
    .option('--brokers <list>', 'bootstrap brokers (default: KAFKA_BOOTSTRAP)')
    .option('--database <url>', DATABASE_HELP)
    .option('--topics <list>', 'DLQ topics to index, comma-separated')
    .option('--pattern <regex>', 'DLQ topics to index, a regular expression (default ^.*\\.dlq$ when no --topics)')
    .option('--group-id <id>', "the indexer's consumer group (default lifeline-dlq-indexer)")
    .option('--port <port>', 'API port (0: any free port)', '7480')
    .option('--host <host>', 'API host', '127.0.0.1')
    .option('--bulk-threshold <n>', 'bulk redrives of more than n records need an approval')
    .option('--approve-edits', 'edits need an approval')
    .option('--approve-discards', 'discards need an approval')
    .option('--masking <file>', 'JSON file: { "policies": [...], "keyring": {...} } (docs/masking.md)')
    .option('--max-redrives <n>', 'most redrives of one record (loop detection)')
    .option('--schemas <file>', 'JSON file: { "<topic>": <JSON Schema>, ... }: edits of records of a topic must match its schema')
    .option('--rate-default <n>', 'records per second of a bulk redrive that names no rate (default 500)')
    .option('--rate-max <n>', 'the most records per second a bulk redrive may ask for (default 5000)')
    .option('--no-migrate', "do not apply migrations at start (run lifeline dlq migrate as the owner; docs/operations.md#dlq-database-roles)")
    .option('--no-console', 'do not serve the operator console at /console (docs/console.md)')
    .option('--session-idle <minutes>', "a console session unused this long ends (default 30)")
    .option('--session-max <hours>', 'a console session ends this long after sign-in (default 12)')
    .option('--replay-topics <list>', 'topics an operator may replay to besides the origin and its retry tiers, comma-separated (others need the approver role)')
    .option('--job-heartbeat <ms>', "how often a running redrive job heartbeats (default 5000); another replica takes it over after 3 missed heartbeats")
    .action(async (opts: ServeOptions) => {
      const brokers = brokersOption(opts.brokers)
      if (opts.port === undefined || !/^\d{1,5}$/.test(opts.port) || Number(opts.port) > 65535) throw new Error(`--port must be 0 to 65535, got ${opts.port}`)
      const bulkThreshold = opts.bulkThreshold === undefined ? undefined : /^\d{1,9}$/.test(opts.bulkThreshold) ? Number(opts.bulkThreshold) : NaN
      if (Number.isNaN(bulkThreshold)) throw new Error(`--bulk-threshold must be an integer >= 0, got ${opts.bulkThreshold}`)
      const maxRedrives = positiveInt('--max-redrives', opts.maxRedrives, 1000)
      const topics = opts.topics?.split(',').map((t) => t.trim()).filter(Boolean)
      const masking = opts.masking === undefined ? undefined : (jsonFile('--masking', opts.masking) as { policies: never[]; keyring?: never })
      const schemas = opts.schemas === undefined ? undefined : jsonFile('--schemas', opts.schemas)
      if (schemas !== undefined && (schemas === null || typeof schemas !== 'object' || Array.isArray(schemas) || Object.values(schemas).some((v) => v === null || typeof v !== 'object'))) {
        throw new Error(`--schemas: ${opts.schemas} must hold an object of topic → JSON Schema (an object)`)
      }
      const rateDefault = positiveInt('--rate-default', opts.rateDefault)
      const rateMax = positiveInt('--rate-max', opts.rateMax)
      const sessionIdle = positiveInt('--session-idle', opts.sessionIdle, 7 * 24 * 60)
      const sessionMax = positiveInt('--session-max', opts.sessionMax, 30 * 24)
      const jobHeartbeatMs = positiveInt('--job-heartbeat', opts.jobHeartbeat, 3_600_000)
      const notifications = notificationOptions(opts)
      const registry = new Registry()
      collectDefaultMetrics({ register: registry })
      const db = await openDatabase(databaseOption(opts.database))
      const logger = createLogger({ name: 'lifeline-dlq' })
      // Loaded here: the HTTP API needs the optional peers hono and @hono/node-server, which no other command does.
      const { createDlqProcessor } = await import('../../dlq/processor.js')
      const { consoleMount } = await import('../../console/app.js')
      const processor = createDlqProcessor({
        brokers,
        db,
        ...(topics === undefined || topics.length === 0 ? { pattern: opts.pattern ?? '^.*\\.dlq$' } : { topics, ...(opts.pattern === undefined ? {} : { pattern: opts.pattern }) }),
        ...(opts.groupId === undefined ? {} : { groupId: opts.groupId }),
        ...(masking === undefined ? {} : { masking }),
        approvals: { ...(bulkThreshold === undefined ? {} : { bulkThreshold }), ...(opts.approveEdits ? { edits: true } : {}), ...(opts.approveDiscards ? { discards: true } : {}) },
        api: { port: Number(opts.port), host: opts.host ?? '127.0.0.1' },
        mounts: opts.console === false ? [] : [consoleMount({ sessions: { ...(sessionIdle === undefined ? {} : { idleMs: sessionIdle * 60_000 }), ...(sessionMax === undefined ? {} : { absoluteMs: sessionMax * 3_600_000 }) } })],
        ...(maxRedrives === undefined ? {} : { maxRedrivesPerRecord: maxRedrives }),
        metrics: { registry },
        ...(notifications === undefined ? {} : { notifications }),
        ...(schemas === undefined ? {} : { schemas: schemas as Record<string, object> }),
        ...(opts.migrate === false ? { migrate: false } : {}),
        ...(rateDefault === undefined && rateMax === undefined ? {} : { redriveRate: { ...(rateDefault === undefined ? {} : { defaultPerSec: rateDefault }), ...(rateMax === undefined ? {} : { maxPerSec: rateMax }) } }),
        ...(opts.replayTopics === undefined ? {} : { replayTopics: opts.replayTopics.split(',').map((t) => t.trim()).filter(Boolean) }),
        ...(jobHeartbeatMs === undefined ? {} : { jobHeartbeatMs }),
        logger,
      })
      try {
        await processor.start()
      } catch (err) {
        await processor.close().catch(() => undefined)
        await db.close()
        throw err
      }
      out(`DLQ processor running: API at ${processor.url ?? '(none)'}${opts.console === false ? '' : `, console at ${processor.url}/console`} (metrics at /metrics${notifications === undefined ? '' : `; notifying ${notifications.webhooks.length} webhook(s)`}); Ctrl-C to stop\n`)
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      out('stopping...\n')
      try {
        await processor.close()
      } finally {
        await db.close()
      }
    })
}
