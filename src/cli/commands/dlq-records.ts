/**
 * `lifeline dlq list|show|groups` (reading records through the API) and `lifeline dlq edit|discard|resolve`
 * (acting on one record; an action the approval policy gates prints the approval it awaits).
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { printJson, printTable, writeText as out } from '../output.js'
import { dlqClient, type ClientOptions } from './dlq-client.js'
import { filterFrom, idArgument, queryString, targetOption, time, withClientOptions, withFilterOptions, type FilterOptions } from './dlq-options.js'
import { preview } from './keys.js'

/** Adds `list`, `show` and `groups` to the `dlq` command. */
export function registerRecordReads(dlq: Command): void {
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
}

/** Adds `edit`, `discard` and `resolve` to the `dlq` command. */
export function registerRecordActions(dlq: Command): void {
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
}
