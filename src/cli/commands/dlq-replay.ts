/**
 * `lifeline dlq replay` (one record, or a bulk redrive job by filter: the dry-run count first, `--yes` to
 * start, then its progress) and `lifeline dlq jobs` (the jobs, or one job followed until it ends).
 *
 * @module
 */
import type { Command } from 'commander'
import { printJson, printTable, writeText as out } from '../output.js'
import { dlqClient, type ClientOptions, type DlqClient } from './dlq-client.js'
import { filterFrom, idArgument, positiveInt, targetOption, time, withClientOptions, withFilterOptions, type FilterOptions } from './dlq-options.js'

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

/** Adds `replay` and `jobs` to the `dlq` command. */
export function registerReplayCommands(dlq: Command): void {
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
}
