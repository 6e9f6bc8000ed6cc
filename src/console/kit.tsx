/**
 * What every console route module shares (the route kit): rendering, the signed-in page context, the
 * in-process API call as the session's token and its failure page, role-gated POST routes, and the notices
 * a redirect names. Built once per console app (app.tsx) and handed to the route modules.
 *
 * @module
 */
import type { Context, Hono } from 'hono'
import type { ParkedKeys } from '../ordering/state-store.js'
import type { SqlExecutor } from '../store/executor.js'
import { mayPerform, type Action, type Role } from '../dlq/auth.js'
import { callApi, type ApiAnswer, type ApiFetch } from './http.js'
import type { PageContext } from './layout.js'
import { ErrorPage } from './pages-ops.js'
import { FILTER_FIELDS, type FilterParams } from './pages-records.js'
import type { Session } from './sessions.js'

/** What a console request carries once signed in. */
export type Env = { Variables: { session: Session; ctx: PageContext; form: Record<string, string> } }

/** What the route modules need from the console app. */
export interface RouteKit {
  app: Hono<Env>
  db: SqlExecutor
  api: ApiFetch
  parkedKeys: ParkedKeys
  render(c: Context, page: unknown, status?: number): Response | Promise<Response>
  ctxOf(c: Context<Env>): PageContext
  /** A POST route refused (403) below `action`'s role. */
  post(path: string, action: Action, handler: (c: Context<Env>, form: Record<string, string>) => Promise<Response>): unknown
  notice(c: Context): { kind: 'ok' | 'info'; text: string } | undefined
  /** An in-process API request as the signed-in session's token. */
  as(c: Context<Env>, method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiAnswer>
  /** The API's error message of an answer (or its status). */
  message(a: ApiAnswer): string
  /** The error page of a failed API answer, with its status. */
  failed(c: Context<Env>, a: ApiAnswer): Response | Promise<Response>
  /** The 403 page of a role below `action`'s. */
  forbidden(c: Context<Env>, action: Action): Response | Promise<Response>
  /** The record filter fields of a query or form (blank ones dropped). */
  filterOf(source: Record<string, string | undefined>): FilterParams
}

/** Messages of the `notice` query parameter after a redirect (a code, never text from the request). */
const NOTICES: Record<string, { kind: 'ok' | 'info'; text: string }> = {
  replayed: { kind: 'ok', text: 'Replayed to its origin.' },
  'edited-replayed': { kind: 'ok', text: 'Edited and replayed.' },
  discarded: { kind: 'ok', text: 'Discarded.' },
  resolved: { kind: 'ok', text: 'Resolved.' },
  'approval-requested': { kind: 'info', text: 'This needs an approval: the request waits in the approvals inbox.' },
  started: { kind: 'ok', text: 'The redrive job is ready: the processor runs it.' },
  'awaiting-approval': { kind: 'info', text: 'This job waits for an approver (over the threshold, or a target or force that needs one): see the approvals inbox.' },
  paused: { kind: 'ok', text: 'Paused.' },
  resumed: { kind: 'ok', text: 'Resuming.' },
  cancelled: { kind: 'ok', text: 'Cancelled.' },
  approved: { kind: 'ok', text: 'Approved and executed.' },
  rejected: { kind: 'ok', text: 'Rejected.' },
  released: { kind: 'ok', text: 'Released: its records replay in order.' },
  'settled-resolved': { kind: 'ok', text: 'Marked RESOLVED.' },
  'settled-ignored': { kind: 'ok', text: 'Marked IGNORED.' },
}

/** The lowest role that may perform `action`. */
function roleFor(action: Action): Role {
  for (const role of ['viewer', 'operator', 'approver', 'admin'] as const) if (mayPerform(role, action)) return role
  return 'admin'
}

/** The route kit of a console `app` (see {@link RouteKit}). */
export function routeKit(app: Hono<Env>, services: { db: SqlExecutor; api: ApiFetch; parkedKeys: ParkedKeys }): RouteKit {
  const { api } = services
  const render = (c: Context, page: unknown, status = 200) => c.html(`<!doctype html>${String(page)}`, status as 200)
  const ctxOf = (c: Context<Env>) => c.get('ctx')
  const message = (a: ApiAnswer) => a.body.error?.message ?? `the API answered ${a.status}`
  const forbidden = (c: Context<Env>, action: Action) =>
    render(c, <ErrorPage ctx={ctxOf(c)} status={403} message={`This needs the ${roleFor(action)} role; ${ctxOf(c).principal.name} is ${ctxOf(c).principal.role}.`} />, 403)
  return {
    app,
    ...services,
    render,
    ctxOf,
    message,
    forbidden,
    as: (c, method, path, body) => callApi(api, c, c.get('session').token, method, path, body),
    failed: (c, a) => render(c, <ErrorPage ctx={ctxOf(c)} status={a.status} message={message(a)} />, a.status),
    filterOf: (source) => Object.fromEntries(FILTER_FIELDS.map((f) => [f, source[f]?.trim() || undefined]).filter(([, v]) => v !== undefined)),
    post: (path, action, handler) => app.post(path, (c) => (mayPerform(ctxOf(c).principal.role, action) ? handler(c, c.get('form')) : forbidden(c, action))),
    notice: (c) => NOTICES[c.req.query('notice') ?? ''],
  }
}
