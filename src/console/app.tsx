/**
 * Lifeline's operator console: server-rendered pages (hono JSX, escaped by default) over the DLQ API,
 * mounted at `/console` on the DLQ processor's server ({@link consoleMount}; docs/console.md).
 *
 * The console is a thin shell: every read and write of records, groups, jobs, approvals and the audit log
 * is an in-process request to the API app as the signed-in token (http.ts), so the API's roles, four-eyes
 * rules, masking and audit apply unchanged. What the API has no endpoint for — the overview's hourly counts,
 * the parked-keys summary, the audit chain check, parked keys and their release — calls the same store
 * functions the CLI does, after the console's own role check.
 *
 * Security: a session cookie (HttpOnly, SameSite=Strict, Secure over https, Path=/console) names an
 * in-memory session (sessions.ts) with idle and absolute expiry; every form carries the session's CSRF token
 * and every POST is refused (403) without it; every response has a strict Content-Security-Policy (no
 * inline script or style); the UI shows only what the role may do, and every POST checks the role again
 * before anything else (the API checks it a third time).
 *
 * This file builds the app; its routes live in routes-session.tsx (sign-in, the session gate),
 * routes-ops.tsx, routes-records.tsx and routes-store.tsx, sharing the route kit of kit.tsx.
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import { Hono } from 'hono'
import { silentLogger, type Logger } from '../logger.js'
import type { ParkedKeys } from '../ordering/state-store.js'
import type { ProcessorMount } from '../dlq/processor.js'
import type { SqlExecutor } from '../store/executor.js'
import type { RedriveDeps } from '../dlq/redrive/types.js'
import { securityHeaders, type ApiFetch } from './http.js'
import { routeKit, type Env } from './kit.js'
import { ErrorPage } from './pages-ops.js'
import { registerOpsRoutes } from './routes-ops.js'
import { registerRecordRoutes } from './routes-records.js'
import { registerSessionRoutes } from './routes-session.js'
import { registerStoreRoutes } from './routes-store.js'
import { SessionStore, type SessionOptions } from './sessions.js'

export interface ConsoleOptions {
  db: SqlExecutor
  /** The API app's fetch: every record, job, approval and audit read or write goes through it. */
  api: ApiFetch
  /** For the edit preview's checks (schema, masking): prepareEdit, which writes nothing. */
  deps: Pick<RedriveDeps, 'db' | 'masker' | 'schemas'>
  parkedKeys: ParkedKeys
  sessions?: SessionOptions
  /** How often a job page's event stream reads the job, ms (default 500). */
  progressMs?: number
  logger?: Logger
  /** Called with every Content-Security-Policy violation report a browser posts (they are logged too). */
  onCspReport?: (report: unknown) => void
}

const STATIC_DIR = new URL('./static/', import.meta.url)
const STATIC: Record<string, { type: string; body: string }> = {
  'console.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('console.js', STATIC_DIR), 'utf8') },
  'console.css': { type: 'text/css; charset=utf-8', body: readFileSync(new URL('console.css', STATIC_DIR), 'utf8') },
}

/** The console as a processor mount at `/console` (`createDlqProcessor({ mounts: [consoleMount()] })`; `lifeline dlq serve` does). */
export function consoleMount(options: Pick<ConsoleOptions, 'sessions' | 'onCspReport' | 'progressMs'> = {}): ProcessorMount {
  return { path: '/console', create: (services) => createConsole({ ...services, ...options }) }
}

/** The console's hono app, its routes under `/console`. */
export function createConsole(options: ConsoleOptions): Hono<Env> {
  const sessions = new SessionStore(options.sessions)
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-console' })
  const progressMs = options.progressMs ?? 500
  const newRecordsMs = options.progressMs === undefined ? 5000 : options.progressMs * 5
  const app = new Hono<Env>().basePath('/console')
  const kit = routeKit(app, { db: options.db, api: options.api, parkedKeys: options.parkedKeys })
  const { render } = kit

  app.use('*', async (c, next) => {
    await next()
    securityHeaders(c)
  })
  app.onError((err, c) => {
    logger.error({ err, path: c.req.path }, 'console request failed')
    securityHeaders(c)
    return render(c, <ErrorPage status={500} message="internal error (logged by the processor)" />, 500)
  })
  app.notFound((c) => render(c, <ErrorPage status={404} message="No such page." />, 404))

  app.get('/static/:file', (c) => {
    const file = STATIC[c.req.param('file')]
    if (file === undefined) return c.text('not found', 404)
    return c.body(file.body, 200, { 'content-type': file.type })
  })

  app.post('/csp-report', async (c) => {
    const text = (await c.req.text()).slice(0, 10_000)
    let report: unknown = text
    try {
      report = JSON.parse(text)
    } catch {
      // not JSON: kept as text
    }
    logger.warn({ report }, 'Content-Security-Policy violation reported by a browser')
    options.onCspReport?.(report)
    return c.body(null, 204)
  })

  // The order matters: the routes registered after the session gate pass it.
  registerSessionRoutes(kit, sessions)
  registerOpsRoutes(kit, { progressMs })
  registerRecordRoutes(kit, { deps: options.deps, newRecordsMs })
  registerStoreRoutes(kit)
  return app
}
