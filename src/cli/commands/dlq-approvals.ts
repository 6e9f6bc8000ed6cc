/**
 * `lifeline dlq approvals|approve` (four-eyes: another person approves, and so executes, or rejects a gated
 * action) and `lifeline dlq audit` (the audit log through the API; `audit verify` is added by dlq-db.ts).
 *
 * @module
 */
import type { Command } from 'commander'
import { printJson, printTable, writeText as out } from '../output.js'
import { dlqClient, type ClientOptions } from './dlq-client.js'
import { idArgument, queryString, time, withClientOptions } from './dlq-options.js'

/** Adds `approvals` and `approve` to the `dlq` command. */
export function registerApprovalCommands(dlq: Command): void {
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
}

/** Adds `audit` to the `dlq` command; returns it (its `verify` subcommand works on the database). */
export function registerAuditCommand(dlq: Command): Command {
  return withClientOptions(dlq.command('audit').description('the audit log (needs the approver role); audit verify checks its hash chain'))
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
}
