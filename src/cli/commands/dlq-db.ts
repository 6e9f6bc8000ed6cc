/**
 * `lifeline dlq` commands that work on the processor's database itself, not through the API: `migrate` (as
 * the tables' owner), `token create|list|revoke` (how the first admin token is made; each change audited,
 * actor `cli:$USER`, in the same transaction) and `audit verify` (the audit log's hash chain; read only).
 * See docs/cli.md.
 */
import type { Command } from 'commander'
import { cliActor } from '../../dlq/actors.js'
import { appendAudit, verifyAudit } from '../../dlq/audit.js'
import { createToken, isRole, listTokens, revokeToken, ROLES, type Role } from '../../dlq/auth.js'
import { openDatabase, type OpenDatabaseOptions } from '../../store/index.js'
import { migrateLifeline } from '../../store/schema.js'
import { printJson, printTable, writeText as out } from '../output.js'
import { databaseOption } from './keys.js'

export const DATABASE_HELP = 'postgres:// URL of a server, or a PGlite data directory (default: DATABASE_URL, else LIFELINE_DATA_DIR, else .lifeline/db)'

type Db = Awaited<ReturnType<typeof openDatabase>>

/** Opens the database for one command (migrated first unless `migrate: false`), and closes it. */
async function withDb<T>(database: Pick<OpenDatabaseOptions, 'url' | 'dataDir'>, fn: (db: Db) => Promise<T>, options: { migrate?: boolean } = {}): Promise<T> {
  const db = await openDatabase(database)
  try {
    if (options.migrate !== false) await migrateLifeline(db)
    return await fn(db)
  } finally {
    await db.close()
  }
}

/** Registers migrate and token under `dlq`; returns how to add `verify` under the `audit` command. */
export function registerDlqDatabaseCommands(dlq: Command): { auditVerify(audit: Command): void } {
  dlq
    .command('migrate')
    .description("apply Lifeline's migrations to the processor's database (as the tables' owner; the processor may then run as a writer role with serve --no-migrate)")
    .option('--database <url>', DATABASE_HELP)
    .action(async (opts: { database?: string }) => {
      const db = await openDatabase(databaseOption(opts.database))
      try {
        const applied = await migrateLifeline(db)
        out(applied.length === 0 ? 'up to date\n' : `applied ${applied.map((m) => m.file).join(', ')}\n`)
      } finally {
        await db.close()
      }
    })

  const token = dlq.command('token').description('API tokens, straight in the database (the first admin token is made here)')
  const actor = () => cliActor(process.env.USER)

  token
    .command('create')
    .description('create a token; it is printed once (only its hash is stored)')
    .argument('<name>', 'token name (not a system actor: indexer, processor, anonymous, redrive, cli)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .requiredOption('--owner <owner>', 'who holds it: a person or a service identity (four-eyes compares owners)')
    .option('--expires <when>', 'when it stops working: a duration (90d, 12h, 30m, 2w) or an ISO-8601 time (default: never)')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { role: string; owner: string; expires?: string; database?: string; json?: boolean }) => {
      if (!isRole(opts.role)) throw new Error(`--role must be one of ${ROLES.join(', ')}, got ${opts.role}`)
      const role: Role = opts.role
      const created = await withDb(databaseOption(opts.database), (db) =>
        db.transaction(async (tx) => {
          const t = await createToken(tx, { name, role, owner: opts.owner, ...(opts.expires === undefined ? {} : { expires: opts.expires }) })
          await appendAudit(tx, { actor: actor(), action: 'token.create', target: `token:${name}`, detail: { role, owner: t.owner, expiresAt: t.expiresAt?.toISOString() ?? null, via: 'cli' } })
          return t
        }),
      )
      if (opts.json) return printJson({ name: created.name, role: created.role, owner: created.owner, expiresAt: created.expiresAt, token: created.token })
      out(`token ${created.name} (${created.role}, owner ${created.owner}${created.expiresAt ? `, expires ${created.expiresAt.toISOString()}` : ''}):\n${created.token}\nkeep it now: it is not stored and cannot be shown again\n`)
    })

  token
    .command('list')
    .description('tokens: name, role, owner, created, expires, last used, revoked (never the tokens or their hashes)')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: { database?: string; json?: boolean }) => {
      const tokens = await withDb(databaseOption(opts.database), (db) => listTokens(db))
      if (opts.json) return printJson(tokens)
      const at = (d: Date | null) => d?.toISOString() ?? ''
      printTable(tokens.map((t) => ({ name: t.name, role: t.role, owner: t.owner, created: at(t.createdAt), expires: at(t.expiresAt), 'last used': at(t.lastUsedAt), revoked: at(t.revokedAt) })))
    })

  token
    .command('revoke')
    .description('revoke a token (pending approvals it requested become void)')
    .argument('<name>', 'token name')
    .option('--database <url>', DATABASE_HELP)
    .action(async (name: string, opts: { database?: string }) => {
      await withDb(databaseOption(opts.database), (db) =>
        db.transaction(async (tx) => {
          await revokeToken(tx, name)
          await appendAudit(tx, { actor: actor(), action: 'token.revoke', target: `token:${name}`, detail: { via: 'cli' } })
        }),
      )
      out(`revoked ${name}\n`)
    })

  return {
    auditVerify(audit: Command) {
      audit
        .command('verify')
        .description("check the audit log's hash chain on the database (not through the API): reports the first row changed, removed or inserted behind the chain")
        .option('--database <url>', DATABASE_HELP)
        .option('--anchor <id:hash>', 'a head printed by an earlier verify: the chain must still hold that row with that hash')
        .option('--json', 'print JSON')
        .action(async (opts: { database?: string; anchor?: string; json?: boolean }) => {
          let anchor: { id: string; hash: string } | undefined
          if (opts.anchor !== undefined) {
            const m = /^([1-9]\d{0,18}):([0-9a-f]{64})$/.exec(opts.anchor)
            if (!m) throw new Error(`--anchor must be <id>:<hash> as printed by lifeline dlq audit verify, got ${opts.anchor}`)
            anchor = { id: m[1]!, hash: m[2]! }
          }
          const result = await withDb(databaseOption(opts.database), (db) => verifyAudit(db, anchor === undefined ? {} : { anchor }), { migrate: false })
          if (opts.json) printJson(result)
          if (result.broken) throw new Error(`audit chain broken at row ${result.broken.id}: ${result.broken.reason} (${result.checked} rows before it intact)`)
          if (!opts.json) out(`audit chain intact: ${result.checked} rows chained, ${result.unchained} before the chain; head: ${result.head === null ? '(none)' : `row ${result.head.id} ${result.head.hash}`}\n`)
        })
    },
  }
}
