/**
 * `lifeline ignored list` (events a guard did not apply, with the reason) and
 * `lifeline failures list|resolve|ignore` (final failures and their compensations).
 */
import type { Command } from 'commander'
import { listFailures, settleFailure, type FailureStatus } from '../../effects/compensation.js'
import { listIgnoredEvents } from '../../effects/guards.js'
import { createInbox } from '../../effects/inbox.js'
import { openDatabase, type SqlExecutor } from '../../store/index.js'
import { migrateLifeline } from '../../store/schema.js'
import { printJson, printTable } from '../output.js'
import { databaseOption, limitOption } from './keys.js'

const DATABASE_HELP = 'postgres:// URL of a server, or a PGlite data directory (default: DATABASE_URL, else LIFELINE_DATA_DIR, else .lifeline/db)'

async function withDatabase<T>(value: string | undefined, fn: (db: SqlExecutor) => Promise<T>): Promise<T> {
  const db = await openDatabase(databaseOption(value))
  try {
    await migrateLifeline(db)
    return await fn(db)
  } finally {
    await db.close()
  }
}

function failureStatus(value: string | undefined): FailureStatus | undefined {
  if (value === undefined) return undefined
  const upper = value.toUpperCase()
  if (upper === 'PENDING' || upper === 'RESOLVED' || upper === 'IGNORED') return upper
  throw new Error(`--status must be PENDING, RESOLVED or IGNORED, got ${value}`)
}

const actorDefault = () => process.env.USER || 'operator'

/** `14d`, `36h`, `90m`, `3600s` or plain milliseconds. */
export function durationOption(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim())
  if (!m) throw new Error(`--older-than must be a duration like 14d, 36h, 90m, 3600s or milliseconds, got ${value}`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd']
  return Number(m[1]) * unit
}

export function registerEffects(program: Command): void {
  program
    .command('inbox')
    .description('the inbox of claimed event ids')
    .command('cleanup')
    .description('delete claims older than a duration (keep them longer than any redelivery, retry tier or DLQ redrive can bring an event back)')
    .requiredOption('--consumer <name>', 'the inbox consumer')
    .requiredOption('--older-than <duration>', 'e.g. 14d, 36h')
    .option('--database <url|dir>', DATABASE_HELP)
    .action(async (opts: { consumer: string; olderThan: string; database?: string }) => {
      const ms = durationOption(opts.olderThan)
      const deleted = await withDatabase(opts.database, (db) => createInbox({ db, consumer: opts.consumer, handler: () => undefined }).cleanup(ms))
      process.stdout.write(`deleted ${deleted} claim(s) of ${opts.consumer} older than ${opts.olderThan}\n`)
    })

  const ignored = program.command('ignored').description('events a state-machine or version guard did not apply, with the reason')
  ignored
    .command('list')
    .description('list ignored events, newest first')
    .option('--consumer <name>', 'only this consumer (inbox name)')
    .option('--entity <name>', 'only this entity type (e.g. order)')
    .option('--id <entityId>', 'only this entity')
    .option('--limit <n>', 'at most n rows (1..10000)', '100')
    .option('--database <url|dir>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: { consumer?: string; entity?: string; id?: string; limit: string; database?: string; json?: boolean }) => {
      const limit = limitOption(opts.limit)
      const rows = await withDatabase(opts.database, (db) => listIgnoredEvents(db, { consumer: opts.consumer, entity: opts.entity, entityId: opts.id, limit }))
      if (opts.json) printJson(rows)
      else printTable(rows.map((r) => ({ at: r.at.toISOString(), consumer: r.consumer, entity: r.entity ?? '', id: r.entityId ?? '', event: r.eventId ?? '', source: `${r.topic}[${r.partition}]@${r.offset}`, reason: r.reason })))
    })

  const failures = program.command('failures').description('final failures (dead-lettered records) and their compensations')
  failures
    .command('list')
    .description('list failure records, newest first')
    .option('--consumer <name>', 'only this consumer')
    .option('--status <status>', 'PENDING, RESOLVED or IGNORED')
    .option('--limit <n>', 'at most n rows (1..10000)', '100')
    .option('--database <url|dir>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: { consumer?: string; status?: string; limit: string; database?: string; json?: boolean }) => {
      const limit = limitOption(opts.limit)
      const status = failureStatus(opts.status)
      const rows = await withDatabase(opts.database, (db) => listFailures(db, { consumer: opts.consumer, status, limit }))
      if (opts.json) printJson(rows.map((r) => ({ ...r, key: r.key?.toString('utf8') ?? null })))
      else
        printTable(
          rows.map((r) => ({
            id: r.id,
            status: r.status,
            consumer: r.consumer,
            source: `${r.topic}[${r.partition}]@${r.offset}`,
            key: r.key?.toString('utf8') ?? '',
            error: `${r.errorCode}: ${r.errorMessage}`.slice(0, 60),
            compensations: r.compensations.map((c) => `${c.name}=${c.status}(${c.attempts.length})`).join(' '),
            created: r.createdAt.toISOString(),
          })),
        )
    })
  for (const [name, status] of [['resolve', 'RESOLVED'], ['ignore', 'IGNORED']] as const) {
    failures
      .command(`${name} <id>`)
      .description(`mark a PENDING failure ${status} (who and why are recorded)`)
      .requiredOption('--reason <text>', 'why')
      .option('--actor <name>', 'who (default: $USER)')
      .option('--database <url|dir>', DATABASE_HELP)
      .option('--json', 'print JSON')
      .action(async (id: string, opts: { reason: string; actor?: string; database?: string; json?: boolean }) => {
        if (opts.reason.trim() === '') throw new Error('--reason must not be empty')
        const row = await withDatabase(opts.database, (db) => settleFailure(db, id, { status, actor: opts.actor ?? actorDefault(), reason: opts.reason }))
        if (opts.json) printJson({ ...row, key: row.key?.toString('utf8') ?? null })
        else process.stdout.write(`failure ${row.id} is ${row.status} (by ${row.resolvedBy}: ${row.reason})\n`)
      })
  }
}
