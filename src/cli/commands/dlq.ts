/**
 * `lifeline dlq`: the DLQ processor and its API client.
 *
 * - `dlq serve` runs the processor (indexer, job runner, HTTP API) until SIGINT/SIGTERM.
 * - `dlq migrate`, `dlq token create|list|revoke` and `dlq audit verify` work on the database itself
 *   (dlq-db.ts); the clear token is printed once.
 * - `dlq list|show|groups|replay|edit|discard|resolve|approvals|approve|jobs|audit` talk to the API:
 *   `--url` (default http://127.0.0.1:7480, else LIFELINE_DLQ_URL; plain http only to loopback unless
 *   `--insecure`), the token from LIFELINE_TOKEN, `--token-file` / LIFELINE_TOKEN_FILE, or `--token` (warned):
 *   dlq-client.ts.
 *
 * See docs/cli.md and docs/api.md.
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { createLogger } from '../../logger.js'
import { openDatabase } from '../../store/index.js'
import { printJson, printTable, writeText } from '../output.js'
import { brokersOption } from './common.js'
import { notificationOptions, withNotificationFlags, type NotificationFlags } from './notifications.js'
import { DEFAULT_DLQ_URL, dlqClient, type ClientOptions, type DlqClient } from './dlq-client.js'
import { DATABASE_HELP, registerDlqDatabaseCommands } from './dlq-db.js'
import { databaseOption, preview } from './keys.js'

export { DEFAULT_DLQ_URL, DlqApiError, dlqClient, isLoopback, type DlqClient } from './dlq-client.js'


// ---------------------------------------------------------------------------------------------------------
// Options

interface FilterOptions {
  filter?: string
  topic?: string
  dlqTopic?: string
  group?: string
  errorCode?: string
  errorClass?: string
  fingerprint?: string
  key?: string
  status?: string
  format?: string
  from?: string
  to?: string
  text?: string
}

const FILTER_OPTIONS: Array<[keyof FilterOptions, string, string]> = [
  ['topic', '--topic <topic>', 'origin topic'],
  ['dlqTopic', '--dlq-topic <topic>', 'DLQ topic'],
  ['group', '--group <group>', 'consumer group that failed'],
  ['errorCode', '--error-code <code>', 'error code'],
  ['errorClass', '--error-class <class>', 'error class'],
  ['fingerprint', '--fingerprint <fp>', 'error fingerprint (see groups)'],
  ['key', '--key <key>', 'record key (UTF-8)'],
  ['status', '--status <list>', 'statuses, comma-separated (pending, replaying, replayed, resolved, discarded, failed-again)'],
  ['format', '--format <format>', 'lifeline, spring, spring-retry, connect, streams, karafka, unknown'],
  ['from', '--from <time>', 'failed at or after (ISO-8601 or ms)'],
  ['to', '--to <time>', 'failed before (ISO-8601 or ms)'],
  ['text', '--text <text>', 'substring of the error message'],
]

function withFilterOptions(cmd: Command): Command {
  cmd.option('--filter <query>', 'a filter as a query string, e.g. "topic=orders&errorCode=E_TAX" (the options below add to it)')
  for (const [, flags, help] of FILTER_OPTIONS) cmd.option(flags, help)
  return cmd
}

function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `DLQ API base URL (default: LIFELINE_DLQ_URL, else ${DEFAULT_DLQ_URL}); plain http only to this machine unless --insecure`)
    .option('--token-file <path>', 'a file holding the API token (default: LIFELINE_TOKEN, else the file LIFELINE_TOKEN_FILE names)')
    .option('--token <token>', 'the API token itself (discouraged: it shows in the shell history and the process list)')
    .option('--insecure', 'allow plain http to another host (the token travels in clear)')
    .option('--json', 'print JSON')
}

/** The filter of `--filter` and the filter options, as an object (the API validates it). */
export function filterFrom(opts: FilterOptions): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  if (opts.filter !== undefined) {
    for (const [k, v] of new URLSearchParams(opts.filter)) {
      const prev = out[k]
      out[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v]
    }
  }
  for (const [name] of FILTER_OPTIONS) {
    const v = opts[name]
    if (v !== undefined) out[name] = v
  }
  if (typeof out.status === 'string' && out.status.includes(',')) out.status = out.status.split(',').map((s) => s.trim())
  return out
}

function queryString(params: Record<string, string | string[] | number | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one))
  }
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}

function positiveInt(name: string, value: string | undefined, max = 1_000_000): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1 || Number(value) > max) throw new Error(`${name} must be an integer from 1 to ${max}, got ${value}`)
  return Number(value)
}

function idArgument(value: string, what = 'record id'): string {
  if (!/^[1-9]\d{0,15}$/.test(value)) throw new Error(`the ${what} must be a positive integer, got ${value}`)
  return value
}

/** `--target origin | topic:<name>[:<partition>] | tier:<n>:<service>`. */
export function targetOption(value: string | undefined): Record<string, unknown> | undefined {
  if (value === undefined) return undefined
  if (value === 'origin') return { kind: 'origin' }
  const topic = /^topic:([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(value)
  if (topic) return { kind: 'topic', topic: topic[1], ...(topic[2] === undefined ? {} : { partition: Number(topic[2]) }) }
  const tier = /^tier:(\d+):(.+)$/.exec(value)
  if (tier) return { kind: 'retry-tier', tier: Number(tier[1]), service: tier[2] }
  throw new Error(`--target must be origin, topic:<name>[:<partition>] or tier:<n>:<service>, got ${value}`)
}

const out = writeText
const time = (v: unknown): string => (typeof v === 'string' ? v.replace(/\.\d{3}Z$/, 'Z') : '')

// ---------------------------------------------------------------------------------------------------------
// Jobs and their progress

interface JobView { id: string | number; status: string; total: number; done: number; succeeded: number; failed: number; skipped: number; statusReason?: string | null }

/** A one-line progress bar: `[#########...........]  45% 450/1000 ok 440 failed 2 skipped 8 running`. */
export function progressLine(job: JobView, width = 30): string {
  const total = Math.max(0, Number(job.total) || 0)
  const done = Math.min(total, Math.max(0, Number(job.done) || 0))
  const ratio = total === 0 ? 1 : done / total
  const filled = Math.round(ratio * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${done}/${total} ok ${job.succeeded ?? 0} failed ${job.failed ?? 0} skipped ${job.skipped ?? 0} ${job.status}`
}

const FINAL_JOB_STATUSES = new Set(['completed', 'cancelled', 'failed'])

/** Polls a job until it is final (or paused), drawing its progress on stderr; returns the last view. */
export async function followJob(client: DlqClient, id: string, options: { intervalMs?: number; stream?: NodeJS.WriteStream } = {}): Promise<JobView> {
  const stream = options.stream ?? process.stderr
  let last = ''
  for (;;) {
    const { body: job } = await client.request<JobView>('GET', `/v1/jobs/${id}`)
    const line = progressLine(job)
    if (stream.isTTY) stream.write(`\r${line}`)
    else if (line !== last) stream.write(`${line}\n`)
    last = line
    if (FINAL_JOB_STATUSES.has(job.status) || job.status === 'paused') {
      if (stream.isTTY) stream.write('\n')
      return job
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 500))
  }
}

// ---------------------------------------------------------------------------------------------------------
// Commands

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

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('the DLQ processor: index, search, replay, edit, discard, approve, audit')

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

  // --- the database itself: migrate, tokens, audit verify (dlq-db.ts) ---
  const dbCommands = registerDlqDatabaseCommands(dlq)

  // --- API client ---
  withFilterOptions(withClientOptions(dlq.command('list').description('records matching a filter, oldest first (no payloads)')))
    .option('-n, --limit <n>', 'most records, 1 to 1000', '100')
    .option('--after <id>', 'records after this id (paging)')
    .option('--desc', 'newest first')
    .action(async (opts: FilterOptions & ClientOptions & { limit?: string; after?: string; desc?: boolean }) => {
      const client = dlqClient(opts)
      const q = queryString({ ...filterFrom(opts), limit: opts.limit, afterId: opts.after, ...(opts.desc ? { order: 'desc' } : {}) })
      const { body } = await client.request<{ records: Array<Record<string, unknown>>; nextAfterId: string | null }>('GET', `/v1/records${q}`)
      if (opts.json) return printJson(body)
      printTable(
        body.records.map((r) => ({
          id: r.id,
          topic: r.originTopic ?? r.topic,
          key: r.keyText ?? '',
          status: r.status,
          format: r.format,
          error: [r.errorClass, r.errorCode].filter((x) => x !== null && x !== undefined).join(' '),
          message: preview(r.errorMessage === null || r.errorMessage === undefined ? null : Buffer.from(String(r.errorMessage)), 60),
          'failed at': time(r.failedAt),
        })),
      )
      if (body.nextAfterId !== null) out(`more: --after ${body.nextAfterId}\n`)
    })

  withClientOptions(dlq.command('show').description("one record: context, payload (masked fields stay masked), history and lives").argument('<id>', 'record id')).action(
    async (idArg: string, opts: ClientOptions) => {
      const id = idArgument(idArg)
      const { body: r } = await dlqClient(opts).request<Record<string, unknown>>('GET', `/v1/records/${id}`)
      if (opts.json) return printJson(r)
      const fields: Array<[string, unknown]> = [
        ['id', r.id],
        ['status', `${String(r.status)}${r.statusReason ? ` (${String(r.statusReason)})` : ''}${r.statusActor ? ` by ${String(r.statusActor)}` : ''}`],
        ['dlq', `${String(r.topic)}[${String(r.partition)}]@${String(r.offset)}`],
        ['origin', r.originTopic === null ? '' : `${String(r.originTopic)}[${String(r.originPartition ?? '?')}]@${String(r.originOffset ?? '?')}`],
        ['format', r.format],
        ['group', r.consumerGroup ?? ''],
        ['key', r.key ?? (r.keyBase64 === undefined ? '(null)' : `base64:${String(r.keyBase64)}`)],
        ['error', [r.errorClass, r.errorCode].filter(Boolean).join(' ')],
        ['message', r.errorMessage ?? ''],
        ['fingerprint', r.fingerprint ?? ''],
        ['attempts', r.attempts ?? ''],
        ['failed at', time(r.failedAt)],
        ['replays', r.replayCount],
        ['masked', r.masked ? 'yes' : 'no'],
      ]
      const width = Math.max(...fields.map(([n]) => n.length))
      out(fields.map(([n, v]) => `${`${n}:`.padEnd(width + 2)}${String(v)}`.trimEnd()).join('\n') + '\n')
      out(`\nvalue:\n${r.value ?? (r.valueBase64 === undefined ? '(null)' : `base64:${String(r.valueBase64)}`)}\n`)
      const events = (r.events as Array<Record<string, unknown>> | undefined) ?? []
      out('\nhistory:\n')
      printTable(events.map((e) => ({ at: time(e.at), from: e.from ?? '', to: e.to, actor: e.actor, reason: e.reason ?? '' })))
      const earlier = (r.earlierLives as Array<Record<string, unknown>> | undefined) ?? []
      const later = (r.laterLives as Array<Record<string, unknown>> | undefined) ?? []
      if (earlier.length + later.length > 0) out(`\nearlier lives: ${earlier.map((l) => String(l.id)).join(', ') || '-'}; later lives: ${later.map((l) => String(l.id)).join(', ') || '-'}\n`)
    },
  )

  withFilterOptions(withClientOptions(dlq.command('groups').description('the top N errors: records grouped by fingerprint, largest first')))
    .option('-n, --limit <n>', 'most groups, 1 to 1000', '20')
    .action(async (opts: FilterOptions & ClientOptions & { limit?: string }) => {
      const { body } = await dlqClient(opts).request<{ groups: Array<Record<string, unknown>> }>('GET', `/v1/groups${queryString({ ...filterFrom(opts), limit: opts.limit })}`)
      if (opts.json) return printJson(body.groups)
      printTable(
        body.groups.map((g) => ({
          fingerprint: g.fingerprint,
          count: g.count,
          pending: g.pending,
          error: [g.errorClass, g.errorCode].filter(Boolean).join(' '),
          topics: (g.topics as string[]).join(','),
          keys: g.distinctKeys,
          'last seen': time(g.lastSeen),
          message: preview(g.sampleMessage === null ? null : Buffer.from(String(g.sampleMessage)), 50),
        })),
      )
    })

  withFilterOptions(
    withClientOptions(
      dlq
        .command('replay')
        .description('replay one record (by id), or every record matching a filter as a bulk job: dry-run count first, --yes to start, then its progress')
        .argument('[id]', 'record id (omit for a bulk replay by filter)'),
    ),
  )
    .option('--target <target>', 'origin (default), topic:<name>[:<partition>] or tier:<n>:<service>')
    .option('--force', 'replay even if already replayed (bulk) or past the redrive limit')
    .option('--rate <n>', 'bulk: records per second')
    .option('--canary <n>', 'bulk: send n records first and check them before the rest')
    .option('--max-failure-rate <ratio>', 'bulk: pause when this share of replays fails again (0..1)')
    .option('--yes', 'bulk: start the job (without it, only the dry-run count is shown)')
    .option('--no-follow', 'bulk: do not wait for the job')
    .action(async (idArg: string | undefined, opts: FilterOptions & ClientOptions & { target?: string; force?: boolean; rate?: string; canary?: string; maxFailureRate?: string; yes?: boolean; follow?: boolean }) => {
      const client = dlqClient(opts)
      const target = targetOption(opts.target)
      if (idArg !== undefined) {
        const id = idArgument(idArg)
        const { body } = await client.request('POST', `/v1/records/${id}/replay`, { ...(target === undefined ? {} : { target }), ...(opts.force ? { force: true } : {}) })
        if (opts.json) return printJson(body)
        const b = body as Record<string, unknown>
        out(`replayed record ${id} as ${String(b.replayId)} to ${String(b.topic)}[${String(b.partition)}]@${String(b.offset)}\n`)
        return
      }
      const filter = filterFrom(opts)
      if (Object.keys(filter).length === 0) throw new Error('give a record id, or a filter (--filter or --topic, --error-code, ...) for a bulk replay')
      const maxFailureRate = opts.maxFailureRate === undefined ? undefined : Number(opts.maxFailureRate)
      if (maxFailureRate !== undefined && !(maxFailureRate >= 0 && maxFailureRate <= 1)) throw new Error(`--max-failure-rate must be from 0 to 1, got ${opts.maxFailureRate}`)
      const spec = {
        filter,
        ...(target === undefined ? {} : { target }),
        ...(opts.force ? { force: true } : {}),
        ...(opts.rate === undefined ? {} : { ratePerSec: positiveInt('--rate', opts.rate) }),
        ...(opts.canary === undefined ? {} : { canary: positiveInt('--canary', opts.canary) }),
        ...(maxFailureRate === undefined ? {} : { maxFailureRate }),
      }
      const { body: dry } = await client.request<{ count: number; byTopic?: Record<string, number>; needsApproval?: boolean }>('POST', '/v1/redrives', { ...spec, dryRun: true })
      if (!opts.yes) {
        if (opts.json) return printJson(dry)
        out(`dry run: ${dry.count} record(s) would be replayed${dry.byTopic ? ` (${Object.entries(dry.byTopic).map(([t, n]) => `${t}: ${n}`).join(', ')})` : ''}${dry.needsApproval ? '; the job will need an approval' : ''}\nrun again with --yes to start the job\n`)
        return
      }
      if (!opts.json) out(`${dry.count} record(s) to replay\n`)
      const { status, body } = await client.request<{ job: JobView; approval?: { id: string } }>('POST', '/v1/redrives', spec)
      if (status === 202) {
        if (opts.json) return printJson(body)
        out(`job ${body.job.id} created, awaiting approval ${body.approval?.id ?? ''}: another person runs lifeline dlq approve ${body.approval?.id ?? '<id>'}\n`)
        return
      }
      if (opts.follow === false) {
        if (opts.json) return printJson(body)
        out(`job ${body.job.id} started; lifeline dlq jobs ${body.job.id} shows its progress\n`)
        return
      }
      const job = await followJob(client, String(body.job.id))
      if (opts.json) return printJson(job)
      out(`job ${job.id} ${job.status}: ${job.succeeded} replayed, ${job.failed} failed, ${job.skipped} skipped of ${job.total}${job.statusReason ? ` (${job.statusReason})` : ''}\n`)
    })

  withClientOptions(dlq.command('jobs').description('redrive jobs, or one job (with --follow, its progress until it ends)').argument('[id]', 'job id'))
    .option('--follow', 'follow the job until it ends')
    .action(async (idArg: string | undefined, opts: ClientOptions & { follow?: boolean }) => {
      const client = dlqClient(opts)
      if (idArg !== undefined) {
        const id = idArgument(idArg, 'job id')
        const job = opts.follow ? await followJob(client, id) : (await client.request<JobView>('GET', `/v1/jobs/${id}`)).body
        if (opts.json) return printJson(job)
        out(`${progressLine(job)}\n`)
        return
      }
      const { body } = await client.request<{ jobs: Array<JobView & Record<string, unknown>> }>('GET', '/v1/jobs')
      if (opts.json) return printJson(body.jobs)
      printTable(body.jobs.map((j) => ({ id: j.id, status: j.status, total: j.total, done: j.done, ok: j.succeeded, failed: j.failed, skipped: j.skipped, by: j.requestedBy ?? '', created: time(j.createdAt) })))
    })

  withClientOptions(dlq.command('edit').description('edit a record\'s payload (JSON); --replay replays the edit').argument('<id>', 'record id'))
    .option('--value <json>', 'the new payload, JSON')
    .option('--file <path>', 'the new payload, a JSON file')
    .option('--reason <text>', 'why')
    .option('--replay', 'replay the edited version right away')
    .option('--target <target>', 'origin (default), topic:<name>[:<partition>] or tier:<n>:<service>')
    .action(async (idArg: string, opts: ClientOptions & { value?: string; file?: string; reason?: string; replay?: boolean; target?: string }) => {
      const id = idArgument(idArg)
      if ((opts.value === undefined) === (opts.file === undefined)) throw new Error('give the new payload with --value <json> or --file <path> (one of them)')
      const text = opts.value ?? readFileSync(opts.file!, 'utf8')
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (err) {
        throw new Error(`the new payload is not JSON: ${(err as Error).message}`)
      }
      const target = targetOption(opts.target)
      const { status, body } = await dlqClient(opts).request<Record<string, unknown>>('POST', `/v1/records/${id}/edit`, {
        value,
        ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        ...(opts.replay ? { replay: true } : {}),
        ...(target === undefined ? {} : { target }),
      })
      if (opts.json) return printJson(body)
      if (status === 202) return out(`edit of record ${id} awaits approval ${String((body.approval as { id: string }).id)}\n`)
      out(`edited record ${id} (edit ${String(body.editId)})${body.replay ? ', replayed' : ''}\ndiff: ${JSON.stringify(body.diff)}\n`)
    })

  for (const verb of ['discard', 'resolve'] as const) {
    withClientOptions(dlq.command(verb).description(verb === 'discard' ? 'discard a record with a reason (kept, never deleted)' : 'mark a record resolved (handled elsewhere) with a reason').argument('<id>', 'record id'))
      .requiredOption('-r, --reason <text>', 'why (kept in the record history and the audit log)')
      .action(async (idArg: string, opts: ClientOptions & { reason: string }) => {
        const id = idArgument(idArg)
        const { status, body } = await dlqClient(opts).request<Record<string, unknown>>('POST', `/v1/records/${id}/${verb}`, { reason: opts.reason })
        if (opts.json) return printJson(body)
        if (status === 202) return out(`${verb} of record ${id} awaits approval ${String((body.approval as { id: string }).id)}\n`)
        out(`record ${id} ${verb === 'discard' ? 'discarded' : 'resolved'}\n`)
      })
  }

  withClientOptions(dlq.command('approvals').description('approvals, newest first'))
    .option('--status <status>', 'pending, approved, rejected or executed')
    .action(async (opts: ClientOptions & { status?: string }) => {
      const { body } = await dlqClient(opts).request<{ approvals: Array<Record<string, unknown>> }>('GET', `/v1/approvals${queryString({ status: opts.status })}`)
      if (opts.json) return printJson(body.approvals)
      printTable(body.approvals.map((a) => ({ id: a.id, action: a.action, status: a.status, 'requested by': a.requestedBy, owner: a.owner, 'decided by': a.decidedBy ?? '', created: time(a.createdAt), expires: time(a.expiresAt), summary: JSON.stringify(a.summary).slice(0, 60) })))
    })

  withClientOptions(dlq.command('approve').description('approve (and so execute) a pending action; with --reject, reject it').argument('<approval-id>', 'approval id'))
    .option('--reject', 'reject instead of approving')
    .option('-r, --reason <text>', 'why (required with --reject)')
    .action(async (idArg: string, opts: ClientOptions & { reject?: boolean; reason?: string }) => {
      const id = idArgument(idArg, 'approval id')
      if (opts.reject && (opts.reason === undefined || opts.reason.trim() === '')) throw new Error('--reject needs --reason')
      const path = `/v1/approvals/${id}/${opts.reject ? 'reject' : 'approve'}`
      const { body } = await dlqClient(opts).request<{ approval: Record<string, unknown> }>('POST', path, opts.reject ? { reason: opts.reason } : undefined)
      if (opts.json) return printJson(body)
      out(`approval ${id} (${String(body.approval.action)} requested by ${String(body.approval.requestedBy)}): ${String(body.approval.status)}\n`)
    })

  const audit = withClientOptions(dlq.command('audit').description('the audit log (needs the approver role); audit verify checks its hash chain'))
    .option('--actor <name>', 'only this actor')
    .option('--action <action>', 'only this action (record.replay, approval.approve, auth.failed, ...)')
    .option('--target <target>', 'only this target (record:42, job:7, ...)')
    .option('--from <time>', 'at or after')
    .option('--to <time>', 'before')
    .option('-n, --limit <n>', 'most rows, 1 to 1000', '100')
    .option('--desc', 'newest first')
    .action(async (opts: ClientOptions & { actor?: string; action?: string; target?: string; from?: string; to?: string; limit?: string; desc?: boolean }) => {
      const q = queryString({ actor: opts.actor, action: opts.action, target: opts.target, from: opts.from, to: opts.to, limit: opts.limit, ...(opts.desc ? { order: 'desc' } : {}) })
      const { body } = await dlqClient(opts).request<{ entries: Array<Record<string, unknown>> }>('GET', `/v1/audit${q}`)
      if (opts.json) return printJson(body.entries)
      printTable(body.entries.map((e) => ({ id: e.id, at: time(e.at), actor: e.actor, role: e.role ?? '', action: e.action, target: e.target ?? '', detail: JSON.stringify(e.detail).slice(0, 80) })))
    })

  dbCommands.auditVerify(audit)
}
