/**
 * The DLQ processor: the indexer (every DLQ record into the database), the redrive job runner, the HTTP
 * API and any UI mounted beside it (the operator console at `/console`: src/console, docs/console.md), in
 * one process.
 *
 * At `start()`: Lifeline's migrations run, the redrive producer connects, the indexer starts, the API
 * listens, and the runner starts in the background. The runner runs jobs one at a time: paused jobs an
 * operator resumed through this process, then jobs left `running` whose heartbeat is stale (their processor
 * was killed: the lease is 3 × `jobHeartbeatMs`), then `ready` jobs oldest first. It wakes when the API
 * creates, approves or resumes a job, and polls every `jobPollMs` otherwise.
 *
 * Several processors (replicas) can share one database: their indexers share the consumer group (the DLQ
 * partitions are split between them; indexing is idempotent), and a job runs on the one replica that claimed
 * it (one conditional UPDATE); a replica that finds it claimed moves on. A killed replica's job is taken over
 * by another after its lease, and resumes without sending anything twice (docs/dlq.md#bulk-jobs). With `metrics` or `notifications`, a watcher (src/dlq/watch.ts) reads the database
 * every `watchMs` for the processor's gauges and raises notifications the notifier (src/dlq/notifier.ts)
 * posts to webhooks; the API's server also answers `GET /metrics` (no token). `close()` stops the runner
 * (the job in hand stops between records and is resumed by the next start), the API, the watcher, the
 * notifier, the indexer and the producer.
 *
 * @module
 * @example
 * const processor = createDlqProcessor({ brokers: ['127.0.0.1:9092'], db, pattern: '^.*\\.dlq$', api: { port: 7480 } })
 * await processor.start()
 * console.log(processor.url)
 */
import { closeSteps } from '../util/close.js'
import { Hono } from 'hono'
import type { Registry } from 'prom-client'
import { isLifelineError, LifelineError } from '../errors.js'
import { createProducer } from '../kafka/index.js'
import type { KafkaProducer } from '../kafka/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { createParkedKeys } from '../ordering/state-store.js'
import type { SqlExecutor } from '../store/executor.js'
import { migrateLifeline } from '../store/schema.js'
import { sleep } from '../util/sleep.js'
import { createDlqApi, serveDlqApi, type ServedApi } from './api.js'
import type { ParkedKeys } from '../ordering/state-store.js'
import { PROCESSOR_ACTOR } from './actors.js'
import { cancelGatedJob, parsePolicy, sweepApprovals, type ApprovalPolicy } from './approvals.js'
import { createDlqIndexer, type DlqIndexer, type DlqIndexerOptions } from './indexer.js'
import { Masker, type Keyring, type MaskingPolicy } from '../failure/masking.js'
import { createDlqMetrics } from './metrics.js'
import { createNotifier, type Notifier, type NotifierOptions } from './notifier.js'
import { jobLeaseMs } from './redrive/run.js'
import { runRedriveJob } from './redrive/runner.js'
import { redriveDefaults, type RedriveDeps } from './redrive/types.js'
import { createDlqWatch, watchDefaults, type DlqWatch } from './watch.js'

/** Webhook notifications (docs/dlq.md#notifications). */
export interface DlqNotificationOptions extends Omit<NotifierOptions, 'logger' | 'metrics'> {
  /** Notify when more than `threshold` dead letters were indexed within `windowMs` (default 300000 ms). */
  deadLetterRate?: { threshold: number; windowMs?: number }
  /** The URL operators reach the API (or a console in front of it) at: notifications link to it. */
  publicUrl?: string
}

export interface DlqProcessorOptions {
  brokers: string[]
  /** The processor's database (PostgreSQL or PGlite); migrated at start. */
  db: SqlExecutor
  /** DLQ topics to index (and/or `pattern`). */
  topics?: string[]
  /** A regular expression of DLQ topic names (librdkafka's dialect). */
  pattern?: string
  /** The indexer's consumer group (default `lifeline-dlq-indexer`). */
  groupId?: string
  /** PII masking: foreign records are masked when indexed; encrypted fields are decrypted for replay only. */
  masking?: { policies: MaskingPolicy[]; keyring?: Keyring }
  /** Which actions need a second person. */
  approvals?: ApprovalPolicy
  /** Apply Lifeline's migrations at start (default true; false when the processor runs as a writer role: docs/operations.md). */
  migrate?: boolean
  /** Topic → JSON Schema (or typebox schema) an edited value must match (origin topic, else DLQ topic). */
  schemas?: Record<string, object>
  /** Bulk redrive rates: the default of a job that names none and the cap (see createDlqApi). */
  redriveRate?: { defaultPerSec?: number; maxPerSec?: number }
  /** Topics an operator may replay to besides a record's origin and its retry tiers (other targets need the approver role). */
  replayTopics?: string[]
  /** Where the HTTP API listens (default 127.0.0.1:7480; port 0 for any free port); false: no API. */
  api?: { port?: number; host?: string } | false
  /**
   * Web UIs served on the API's server beside it, each under its own path: the operator console
   * (`consoleMount()` of `lifeline/dlq`, docs/console.md) is one; `lifeline dlq serve` mounts it.
   */
  mounts?: ProcessorMount[]
  /** Most replays of one record's lineage (loop detection; the redrive's default when not given). */
  maxRedrivesPerRecord?: number
  /** How often the runner looks for ready jobs when nothing woke it, ms (default 1000). */
  jobPollMs?: number
  /**
   * How often a running redrive job heartbeats, ms (default 5000). The heartbeat is the job's lease: another
   * replica (or this one, restarted) takes over a job whose heartbeat is older than 3 heartbeats.
   */
  jobHeartbeatMs?: number
  /** Extra librdkafka properties for the indexer and the producer. */
  kafkaConfig?: Record<string, string | number | boolean>
  /**
   * Prometheus registry for the processor's metrics and the indexer's (docs/metrics.md); the API's server
   * serves it at `GET /metrics`.
   */
  metrics?: { registry: Registry }
  /** Webhook notifications on a new error group, a dead-letter rate, a paused job, an approval request. */
  notifications?: DlqNotificationOptions
  /** How often the watcher reads the database for the gauges and the notifications, ms (default 5000). */
  watchMs?: number
  /** Error groups exported with their pending count in `lifeline_dlq_pending_records` (default 20). */
  metricsGroupsLimit?: number
  /** Anything else the indexer takes (batch size, poll timeout, metrics...). */
  indexer?: Partial<Omit<DlqIndexerOptions, 'brokers' | 'db' | 'topics' | 'pattern' | 'groupId' | 'masking' | 'kafkaConfig' | 'logger'>>
  logger?: Logger
}

/** What a mounted UI gets from the processor: the API (to call in process as a token), the database and the redrive's services. */
export interface ProcessorServices {
  db: SqlExecutor
  /** The API app's fetch: a UI calls it in process with a token, so the API's rules hold for it unchanged. */
  api: (req: Request, env?: unknown) => Response | Promise<Response>
  deps: RedriveDeps
  parkedKeys: ParkedKeys
  logger: Logger
}

/** A UI served under `path` (`/console`) on the API's server; the API answers everything else. */
export interface ProcessorMount {
  path: string
  create(services: ProcessorServices): { fetch: (req: Request, env?: unknown) => Response | Promise<Response> }
}

export const dlqProcessorDefaults = { apiPort: 7480, apiHost: '127.0.0.1', jobPollMs: 1000 } as const

export interface DlqProcessor {
  start(): Promise<void>
  /** Idempotent. */
  close(): Promise<void>
  /** The API's base URL once started (undefined with `api: false`). */
  readonly url: string | undefined
  /** The job the runner is running, if any. */
  readonly currentJob: string | undefined
  [Symbol.asyncDispose](): Promise<void>
}

/** Creates a processor; nothing connects until `start()`. */
export function createDlqProcessor(options: DlqProcessorOptions): DlqProcessor {
  if (!Array.isArray(options.brokers) || options.brokers.length === 0) throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: processor.brokers: give at least one broker')
  if (typeof options.db?.transaction !== 'function') throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: processor.db: must be a SqlExecutor')
  const policy = parsePolicy(options.approvals)
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-processor' })
  const jobPollMs = positiveInt('jobPollMs', options.jobPollMs, dlqProcessorDefaults.jobPollMs)
  const jobHeartbeatMs = positiveInt('jobHeartbeatMs', options.jobHeartbeatMs, redriveDefaults.heartbeatMs)
  const db = options.db
  const masker = options.masking ? new Masker(options.masking.policies, options.masking.keyring) : undefined
  const registry = options.metrics?.registry
  if (registry !== undefined && typeof registry.metrics !== 'function') throw new LifelineError('LL_OPTIONS_INVALID', 'invalid options: processor.metrics.registry: must be a prom-client Registry')
  const watchMs = positiveInt('watchMs', options.watchMs, watchDefaults.watchMs)
  const groupsLimit = positiveInt('metricsGroupsLimit', options.metricsGroupsLimit, watchDefaults.groupsLimit)
  const metrics = createDlqMetrics(registry)
  const { deadLetterRate, publicUrl, ...notifierOptions } = options.notifications ?? { webhooks: [] }
  const rate = deadLetterRate === undefined ? undefined : { threshold: nonNegativeInt('notifications.deadLetterRate.threshold', deadLetterRate.threshold), windowMs: positiveInt('notifications.deadLetterRate.windowMs', deadLetterRate.windowMs, watchDefaults.rateWindowMs) }
  if (publicUrl !== undefined && (typeof publicUrl !== 'string' || !/^https?:\/\/[^\s]+$/.test(publicUrl))) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: processor.notifications.publicUrl: must be an http(s) URL, got ${JSON.stringify(publicUrl)}`)
  const notifier: Notifier | undefined = options.notifications === undefined ? undefined : createNotifier({ ...notifierOptions, logger, metrics })
  const watch: DlqWatch | undefined =
    registry === undefined && notifier === undefined
      ? undefined
      : createDlqWatch({ db: options.db, metrics, watchMs, groupsLimit, logger: logger.child({ component: 'dlq-watch' }), ...(notifier === undefined ? {} : { notify: (n) => notifier.notify(n) }), ...(rate === undefined ? {} : { deadLetterRate: rate }), ...(masker === undefined ? {} : { masker }), ...(publicUrl === undefined ? {} : { publicUrl }) })
  // Validated now (LL_OPTIONS_INVALID), started by start().
  const indexer: DlqIndexer = createDlqIndexer({
    ...(registry === undefined ? {} : { metrics: { registry } }),
    ...(options.indexer ?? {}),
    brokers: options.brokers,
    db,
    ...(options.topics === undefined ? {} : { topics: options.topics }),
    ...(options.pattern === undefined ? {} : { pattern: options.pattern }),
    ...(options.groupId === undefined ? {} : { groupId: options.groupId }),
    ...(options.masking === undefined ? {} : { masking: options.masking }),
    ...(options.kafkaConfig === undefined ? {} : { kafkaConfig: options.kafkaConfig }),
    migrate: options.migrate !== false && options.indexer?.migrate !== false,
    logger,
  })

  const stop = new AbortController()
  let producer: KafkaProducer | undefined
  let served: ServedApi | undefined
  let runner: Promise<void> = Promise.resolve()
  let current: string | undefined
  let wake: (() => void) | undefined
  /** Paused jobs an operator resumed, run before the next ready job. */
  const resumes: string[] = []
  let starting: Promise<void> | undefined
  let closing: Promise<void> | undefined

  /** A job left running by a killed processor (its lease expired), else the oldest ready job. */
  async function nextJob(deps: RedriveDeps): Promise<string | undefined> {
    const { rows } = await db.query(
      `select id from lifeline_dlq_jobs where kind = 'redrive' and (status = 'ready' or (status = 'running' and (heartbeat_at is null or heartbeat_at < now() - ($1::int8 * interval '1 millisecond'))))
       order by status = 'running' desc, id limit 1`,
      [jobLeaseMs(deps)],
    )
    return rows[0] === undefined ? undefined : String(rows[0].id)
  }

  async function runLoop(deps: RedriveDeps): Promise<void> {
    while (!stop.signal.aborted) {
      let id: string | undefined
      try {
        // Approvals past their expiry (or whose requester's token was revoked) close, and their jobs with them.
        const swept = await sweepApprovals(db, PROCESSOR_ACTOR, cancelGatedJob)
        if (swept > 0) logger.info({ approvals: swept }, 'expired or void approvals closed')
        const resumed = resumes.shift()
        id = resumed ?? (await nextJob(deps))
        if (id !== undefined) {
          current = id
          logger.info({ job: id }, 'redrive job starting')
          // A job found ready is not taken if an operator paused it since: only a resume takes a paused job.
          await runRedriveJob(deps, id, { signal: stop.signal, resume: resumed !== undefined })
          logger.info({ job: id }, 'redrive job stopped')
          continue
        }
      } catch (err) {
        if (stop.signal.aborted) break
        if (isLifelineError(err, 'LL_DLQ_CONFLICT')) {
          // Claimed by another replica between the look-up and the claim (or no longer runnable): look again.
          logger.info({ job: id, reason: err.message }, 'redrive job not taken')
          continue
        }
        logger.error({ err, job: id }, 'redrive job failed')
      } finally {
        current = undefined
      }
      // Nothing ready (or an error): wait for a wake-up or the poll interval.
      const woken = new AbortController()
      wake = () => woken.abort()
      await sleep(jobPollMs, AbortSignal.any([stop.signal, woken.signal])).catch(() => undefined)
      wake = undefined
    }
  }

  async function doStart(): Promise<void> {
    if (options.migrate !== false) await migrateLifeline(db, { logger })
    producer = createProducer({ brokers: options.brokers, clientId: 'lifeline-dlq-redrive', ...(options.kafkaConfig === undefined ? {} : { config: options.kafkaConfig }) })
    await producer.connect()
    const deps: RedriveDeps = {
      db,
      producer,
      kafka: { brokers: options.brokers, ...(options.kafkaConfig === undefined ? {} : { config: options.kafkaConfig }) },
      ...(masker === undefined ? {} : { masker }),
      ...(options.schemas === undefined ? {} : { schemas: options.schemas }),
      parkedKeys: createParkedKeys(db),
      heartbeatMs: jobHeartbeatMs,
      logger,
      ...(options.maxRedrivesPerRecord === undefined ? {} : { maxRedrivesPerRecord: options.maxRedrivesPerRecord }),
    }
    // The watcher's starting point is taken before this process indexes anything: all it indexes is new.
    await watch?.start()
    await indexer.start()
    if (options.api !== false) {
      const app = createDlqApi({ db, deps, approvals: policy, logger, ...(options.replayTopics === undefined ? {} : { replayTopics: options.replayTopics }), ...(options.redriveRate === undefined ? {} : { redriveRate: options.redriveRate }), ...(options.metrics === undefined ? {} : { metrics: options.metrics }), onJobReady: () => wake?.(), onJobResume: (id) => {
          if (!resumes.includes(id)) resumes.push(id)
          wake?.()
        } })
      const services: ProcessorServices = { db, api: app.fetch, deps, parkedKeys: deps.parkedKeys!, logger }
      const withUi = withMounts(app, (options.mounts ?? []).map((m) => ({ path: m.path, ui: m.create(services) })))
      served = await serveDlqApi(registry === undefined ? withUi : withMetricsRoute(withUi, registry), { port: options.api?.port ?? dlqProcessorDefaults.apiPort, host: options.api?.host ?? dlqProcessorDefaults.apiHost })
      logger.info({ url: served.url }, 'DLQ API listening')
    }
    runner = runLoop(deps)
  }

  async function doClose(): Promise<void> {
    stop.abort()
    wake?.()
    const steps = closeSteps(logger, 'the DLQ processor')
    await steps.run('waiting for start()', () => (starting ?? Promise.resolve()).catch(() => undefined))
    await steps.run('stopping the job runner', () => runner)
    await steps.run('closing the HTTP server', () => served?.close())
    await steps.run('stopping the watcher', () => watch?.close())
    await steps.run('closing the notifier', () => notifier?.close())
    await steps.run('closing the indexer', () => indexer.close())
    await steps.run('closing the producer', () => producer?.close())
    steps.finish()
  }

  return {
    start() {
      if (closing) return Promise.reject(new LifelineError('LL_CONSUMER_STATE', 'the DLQ processor is closed'))
      starting ??= doStart()
      return starting
    },
    close() {
      closing ??= doClose()
      return closing
    },
    get url() {
      return served?.url
    },
    get currentJob() {
      return current
    },
    [Symbol.asyncDispose]() {
      return this.close()
    },
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: processor.${name}: must be a positive integer, got ${String(value)}`)
  return value
}

function nonNegativeInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: processor.${name}: must be an integer >= 0, got ${String(value)}`)
  return value
}

type Fetch = (req: Request, env?: unknown) => Response | Promise<Response>

/** The mounted UIs in front of the API, each under its path; every other request goes to the API unchanged. */
function withMounts(api: { fetch: Fetch }, mounts: Array<{ path: string; ui: { fetch: Fetch } }>): { fetch: Fetch } {
  if (mounts.length === 0) return api
  const root = new Hono()
  for (const { path, ui } of mounts) {
    if (!/^\/[a-z0-9-]+$/.test(path)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: processor.mounts: a path is one lowercase segment like /console, got ${JSON.stringify(path)}`)
    root.all(path, (c) => ui.fetch(c.req.raw, c.env))
    root.all(`${path}/*`, (c) => ui.fetch(c.req.raw, c.env))
  }
  root.all('*', (c) => api.fetch(c.req.raw, c.env))
  return root
}

/** The API with `GET /metrics` (no token, like `/health`) in front; every other request goes to the API unchanged. */
function withMetricsRoute(api: { fetch: (req: Request, env?: unknown) => Response | Promise<Response> }, registry: Registry): Hono {
  const root = new Hono()
  root.get('/metrics', async (c) => c.body(await registry.metrics(), 200, { 'content-type': registry.contentType }))
  root.all('*', (c) => api.fetch(c.req.raw, c.env))
  return root
}
