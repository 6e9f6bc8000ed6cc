/**
 * What every endpoint handler of the DLQ API shares: the database, the redrive dependencies, the resolved
 * options, and the two ways an action is audited (its row written in the action's own transaction).
 * Built once per app by `../api.ts`; the handler modules take it instead of closing over one long factory.
 *
 * @module
 */
import type { Context } from 'hono'
import type { Logger } from '../../logger.js'
import type { SqlExecutor, SqlQueryable } from '../../store/executor.js'
import type { ApprovalPolicy } from '../approvals.js'
import { appendAudit, type AuditEntry } from '../audit.js'
import type { Principal } from '../auth.js'
import type { RedriveDeps } from '../redrive/types.js'

export type Env = { Variables: { principal: Principal } }

/** An endpoint's handler: the request, the caller (anonymous for `GET /health`) and the validated body. */
export type Handler = (c: Context<Env>, input: { principal: Principal; body: unknown }) => Promise<Response>

export interface ApiContext {
  db: SqlExecutor
  deps: RedriveDeps
  policy: Readonly<ApprovalPolicy>
  /** Topics an operator may replay to besides a record's origin and its retry tiers. */
  replayTopics: ReadonlySet<string>
  /** Bulk redrive rates, records per second. */
  rates: { defaultPerSec: number; maxPerSec: number }
  logger: Logger
  /** A job became ready: the processor's runner picks it up. */
  jobReady: (id: unknown) => void
  /** An operator resumed a paused job; unset, the API runs the job itself. */
  onJobResume: ((jobId: string) => void) | undefined
  /** The audit row of an action by `principal` (written by the action, in its transaction). */
  auditOf: (principal: { name: string; role: string | null }, action: string, target: string, detail?: Record<string, unknown>) => AuditEntry
  /** Runs `action` and appends its audit row in one transaction (the row last: it holds the chain's lock until the commit). */
  inTransaction: <T>(action: (tx: SqlQueryable) => Promise<T>, audit: AuditEntry) => Promise<T>
}

/** The context of an app over `db` (see {@link ApiContext}). */
export function apiContext(fields: Omit<ApiContext, 'auditOf' | 'inTransaction'>): ApiContext {
  const { db } = fields
  return {
    ...fields,
    auditOf: (principal, action, target, detail = {}) => ({ actor: principal.name, role: principal.role, action, target, detail }),
    inTransaction: (action, audit) =>
      db.transaction(async (tx) => {
        const result = await action(tx)
        await appendAudit(tx, audit)
        return result
      }),
  }
}

/** The fields of `o` among `keys` that are set. */
export const pick = <T extends object>(o: T, ...keys: Array<keyof T>): Partial<T> => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Partial<T>
