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
 * The subcommands live in `dlq-serve.ts`, `dlq-db.ts`, `dlq-records.ts`, `dlq-replay.ts` and
 * `dlq-approvals.ts`; their shared options in `dlq-options.ts`.
 *
 * See docs/cli.md and docs/api.md.
 */
import type { Command } from 'commander'
import { registerApprovalCommands, registerAuditCommand } from './dlq-approvals.js'
import { registerDlqDatabaseCommands } from './dlq-db.js'
import { registerRecordActions, registerRecordReads } from './dlq-records.js'
import { registerReplayCommands } from './dlq-replay.js'
import { registerDlqServe } from './dlq-serve.js'

export { DEFAULT_DLQ_URL, DlqApiError, dlqClient, isLoopback, type DlqClient } from './dlq-client.js'
export { filterFrom, targetOption } from './dlq-options.js'
export { followJob, progressLine } from './dlq-replay.js'

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('the DLQ processor: index, search, replay, edit, discard, approve, audit')
  registerDlqServe(dlq)
  // The order of registration is the order of `lifeline dlq --help`.
  const dbCommands = registerDlqDatabaseCommands(dlq)
  registerRecordReads(dlq)
  registerReplayCommands(dlq)
  registerRecordActions(dlq)
  registerApprovalCommands(dlq)
  dbCommands.auditVerify(registerAuditCommand(dlq))
}
