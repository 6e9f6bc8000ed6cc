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
 * @module
 */
import { readFileSync } from 'node:fs'
import { Hono, type Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { streamSSE } from 'hono/streaming'
import { randomBytes } from 'node:crypto'
import { isLifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { ParkedKeys } from '../ordering/state-store.js'
import type { ProcessorMount } from '../dlq/processor.js'
import type { SqlExecutor } from '../store/executor.js'
import { verifyAudit, type AuditVerification } from '../dlq/audit.js'
import { mayPerform, type Action, type Principal, type Role } from '../dlq/auth.js'
import { hourlyCounts, pendingGroups } from '../dlq/records.js'
import { jsonDiff, prepareEdit, type RedriveDeps } from '../dlq/redrive.js'
import { callApi, isHttps, query, securityHeaders, SESSION_COOKIE, SIGNIN_COOKIE, type ApiAnswer, type ApiFetch } from './http.js'
import { ApprovalsPage, AuditPage } from './pages-approvals.js'
import { JobPage, JobsPage, RedrivePage } from './pages-jobs.js'
import { ErrorPage, OverviewPage, SignInPage } from './pages-ops.js'
import { EditPage, FILTER_FIELDS, GroupsPage, RecordPage, RecordsPage, type FilterParams } from './pages-records.js'
import { SessionStore, sameSecret, type SessionOptions } from './sessions.js'
import { registerStoreRoutes, type Env } from './routes-store.js'
import { countNewer, latestId, parkedSummary } from './data.js'

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
const notice = (c: Context) => NOTICES[c.req.query('notice') ?? '']

const FINAL_JOB = new Set(['completed', 'cancelled', 'failed'])
const AUDIT_CHAIN_TTL_MS = 60_000

/** The console as a processor mount at `/console` (`createDlqProcessor({ mounts: [consoleMount()] })`; `lifeline dlq serve` does). */
export function consoleMount(options: Pick<ConsoleOptions, 'sessions' | 'onCspReport' | 'progressMs'> = {}): ProcessorMount {
  return { path: '/console', create: (services) => createConsole({ ...services, ...options }) }
}

/** The console's hono app, its routes under `/console`. */
export function createConsole(options: ConsoleOptions): Hono<Env> {
  const { db, api } = options
  const sessions = new SessionStore(options.sessions)
  const logger = (options.logger ?? silentLogger()).child({ component: 'dlq-console' })
  const progressMs = options.progressMs ?? 500
  const newRecordsMs = options.progressMs === undefined ? 5000 : options.progressMs * 5
  const app = new Hono<Env>().basePath('/console')
  let chain: { at: number; result: AuditVerification } | undefined

  const render = (c: Context, page: unknown, status = 200) => c.html(`<!doctype html>${String(page)}`, status as 200)
  const ctxOf = (c: Context<Env>) => c.get('ctx')
  const as = (c: Context<Env>, method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiAnswer> => callApi(api, c, c.get('session').token, method, path, body)
  const message = (a: ApiAnswer) => a.body.error?.message ?? `the API answered ${a.status}`
  const failed = (c: Context<Env>, a: ApiAnswer) => render(c, <ErrorPage ctx={ctxOf(c)} status={a.status} message={message(a)} />, a.status)
  const forbidden = (c: Context<Env>, action: Action) =>
    render(c, <ErrorPage ctx={ctxOf(c)} status={403} message={`This needs the ${roleFor(action)} role; ${ctxOf(c).principal.name} is ${ctxOf(c).principal.role}.`} />, 403)
  const filterOf = (source: Record<string, string | undefined>): FilterParams => Object.fromEntries(FILTER_FIELDS.map((f) => [f, source[f]?.trim() || undefined]).filter(([, v]) => v !== undefined))

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

  // --- sign-in and sign-out ---

  const safeNext = (next: string | undefined) => (next !== undefined && /^\/console(?:[/?#]|$)/.test(next) && !next.startsWith('//') ? next : '/console')
  const cookieOptions = (c: Context) => ({ httpOnly: true, sameSite: 'Strict' as const, secure: isHttps(c), path: '/console' })

  app.get('/sign-in', (c) => {
    let pre = getCookie(c, SIGNIN_COOKIE)
    if (pre === undefined || !/^[A-Za-z0-9_-]{43}$/.test(pre)) {
      pre = randomBytes(32).toString('base64url')
      setCookie(c, SIGNIN_COOKIE, pre, { ...cookieOptions(c), maxAge: 3600 })
    }
    const expired = c.req.query('expired') === '1' ? 'Your session has ended: sign in again.' : undefined
    return render(c, <SignInPage csrf={pre} next={safeNext(c.req.query('next'))} error={expired} />)
  })

  app.post('/sign-in', async (c) => {
    const form = (await c.req.parseBody()) as Record<string, string>
    const pre = getCookie(c, SIGNIN_COOKIE)
    if (pre === undefined || typeof form._csrf !== 'string' || !sameSecret(pre, form._csrf)) return render(c, <ErrorPage status={403} message="The sign-in form expired or did not come from this console: load it again." />, 403)
    const token = typeof form.token === 'string' ? form.token.trim() : ''
    // The API checks the token (and audits a refusal, sampled, as it does for any bad token).
    const who = await callApi(api, c, token, 'GET', '/v1/whoami')
    if (who.status !== 200) return render(c, <SignInPage csrf={pre} next={safeNext(form.next)} error={who.status === 401 ? message(who) : `The API answered ${who.status}: ${message(who)}`} />, 401)
    const session = sessions.open(token, String(who.body.name))
    setCookie(c, SESSION_COOKIE, session.id, { ...cookieOptions(c), maxAge: Math.floor(sessions.absoluteMs / 1000) })
    deleteCookie(c, SIGNIN_COOKIE, { path: '/console' })
    return c.redirect(safeNext(form.next), 303)
  })

  app.post('/sign-out', async (c) => {
    const id = getCookie(c, SESSION_COOKIE)
    const session = sessions.touch(id)
    const form = (await c.req.parseBody()) as Record<string, string>
    if (session !== undefined && typeof form._csrf === 'string' && sameSecret(session.csrf, form._csrf)) sessions.end(session.id)
    else if (session !== undefined) return render(c, <ErrorPage status={403} message="The form did not come from this console." />, 403)
    deleteCookie(c, SESSION_COOKIE, { path: '/console' })
    return c.redirect('/console/sign-in', 303)
  })

  // --- every other page: a live session, the token still valid, CSRF on every POST ---

  app.use('*', async (c, next) => {
    const session = sessions.touch(getCookie(c, SESSION_COOKIE))
    const toSignIn = (expired: boolean) => {
      deleteCookie(c, SESSION_COOKIE, { path: '/console' })
      return c.redirect(`/console/sign-in${query({ next: c.req.method === 'GET' ? c.req.path + new URL(c.req.url).search : undefined, expired: expired ? '1' : undefined })}`, 303)
    }
    if (session === undefined) return toSignIn(getCookie(c, SESSION_COOKIE) !== undefined)
    const who = await callApi(api, c, session.token, 'GET', '/v1/whoami')
    if (who.status === 401) {
      sessions.end(session.id)
      return toSignIn(true)
    }
    if (who.status !== 200) return render(c, <ErrorPage status={who.status} message={message(who)} />, who.status)
    const principal: Principal = { name: String(who.body.name), role: who.body.role as Role, owner: String(who.body.owner), tokenId: '' }
    c.set('session', session)
    c.set('ctx', { principal, csrf: session.csrf })
    if (c.req.method === 'POST') {
      const form = (await c.req.parseBody()) as Record<string, string>
      if (typeof form._csrf !== 'string' || !sameSecret(session.csrf, form._csrf)) return render(c, <ErrorPage ctx={c.get('ctx')} status={403} message="The form did not come from this console (missing or wrong CSRF token): load the page again." />, 403)
      c.set('form', form)
    }
    await next()
  })

  /** A POST route that needs `action`'s role: refused (403) before anything else when the role is below it. */
  const post = (path: string, action: Action, handler: (c: Context<Env>, form: Record<string, string>) => Promise<Response>) =>
    app.post(path, (c) => (mayPerform(ctxOf(c).principal.role, action) ? handler(c, c.get('form')) : forbidden(c, action)))

  // --- overview ---

  app.get('/', async (c) => {
    const ctx = ctxOf(c)
    // One after another: the processor's database may be a single connection (PGlite, or a pg client).
    const hours = await hourlyCounts(db, 24)
    const groups = await pendingGroups(db, 10)
    const parked = await parkedSummary(db)
    const running = await as(c, 'GET', '/v1/jobs?status=running&limit=20')
    const approvals = await as(c, 'GET', '/v1/approvals?status=pending&limit=100')
    for (const a of [running, approvals]) if (a.status !== 200) return failed(c, a)
    if (mayPerform(ctx.principal.role, 'audit.read') && (chain === undefined || Date.now() - chain.at > AUDIT_CHAIN_TTL_MS)) chain = { at: Date.now(), result: await verifyAudit(db) }
    const data = {
      hours,
      groups: groups as unknown as Array<Record<string, unknown>>,
      parked,
      running: running.body.jobs as Array<Record<string, unknown>>,
      approvals: approvals.body.approvals as Array<Record<string, unknown>>,
      chain: mayPerform(ctx.principal.role, 'audit.read') ? chain?.result : undefined,
    }
    return render(c, <OverviewPage ctx={ctx} data={data} now={Date.now()} />)
  })

  // --- groups and records ---

  app.get('/groups', async (c) => {
    const filter = filterOf(c.req.query())
    const a = await as(c, 'GET', `/v1/groups${query({ ...filter, limit: 50 })}`)
    if (a.status === 400) return render(c, <GroupsPage ctx={ctxOf(c)} groups={[]} filter={filter} error={message(a)} />, 400)
    if (a.status !== 200) return failed(c, a)
    return render(c, <GroupsPage ctx={ctxOf(c)} groups={a.body.groups as Array<Record<string, unknown>>} filter={filter} />)
  })

  app.get('/records', async (c) => {
    const filter = filterOf(c.req.query())
    const a = await as(c, 'GET', `/v1/records${query({ ...filter, order: 'desc', limit: 50, afterId: c.req.query('afterId') })}`)
    if (a.status === 400) return render(c, <RecordsPage ctx={ctxOf(c)} records={[]} filter={filter} nextAfterId={null} error={message(a)} />, 400)
    if (a.status !== 200) return failed(c, a)
    const since = c.req.query('afterId') === undefined ? await latestId(db) : undefined
    return render(c, <RecordsPage ctx={ctxOf(c)} records={a.body.records as Array<Record<string, unknown>>} filter={filter} nextAfterId={a.body.nextAfterId} since={since} />)
  })

  // New dead letters since a page was loaded (all of them, whatever its filter): a count every few seconds.
  app.get('/records/events', (c) => {
    const after = c.req.query('after') ?? ''
    if (!/^\d{1,16}$/.test(after)) return c.text('after must be a record id', 400)
    return streamSSE(c, async (stream) => {
      let last = -1
      const deadline = Date.now() + 3_600_000
      while (!stream.aborted && Date.now() < deadline) {
        const n = await countNewer(db, Number(after))
        if (n !== last) await stream.writeSSE({ event: 'new', data: JSON.stringify({ count: n }) })
        last = n
        await stream.sleep(newRecordsMs)
      }
    })
  })

  app.get('/records/:id', async (c) => {
    const a = await as(c, 'GET', `/v1/records/${encodeURIComponent(c.req.param('id'))}`)
    if (a.status !== 200) return failed(c, a)
    return render(c, <RecordPage ctx={ctxOf(c)} record={a.body} view={c.req.query('view') === 'hex' ? 'hex' : 'json'} notice={notice(c)} />)
  })

  const recordPath = (c: Context) => `/v1/records/${encodeURIComponent(c.req.param('id') ?? '')}`
  const back = (c: Context, code: string) => c.redirect(`/console/records/${encodeURIComponent(c.req.param('id') ?? '')}?notice=${code}`, 303)

  post('/records/:id/replay', 'record.replay', async (c) => {
    const a = await as(c, 'POST', `${recordPath(c)}/replay`, {})
    return a.status === 200 ? back(c, 'replayed') : failed(c, a)
  })
  for (const verb of ['discard', 'resolve'] as const) {
    post(`/records/:id/${verb}`, `record.${verb}`, async (c, form) => {
      const a = await as(c, 'POST', `${recordPath(c)}/${verb}`, { reason: form.reason ?? '' })
      if (a.status === 202) return back(c, 'approval-requested')
      return a.status === 200 ? back(c, verb === 'discard' ? 'discarded' : 'resolved') : failed(c, a)
    })
  }

  app.get('/records/:id/edit', async (c) => {
    if (!mayPerform(ctxOf(c).principal.role, 'record.edit')) return forbidden(c, 'record.edit')
    const a = await as(c, 'GET', recordPath(c))
    if (a.status !== 200) return failed(c, a)
    return render(c, <EditPage ctx={ctxOf(c)} id={String(a.body.id)} text={editableText(a.body.value)} reason="" errors={[]} />)
  })

  post('/records/:id/edit', 'record.edit', async (c, form) => {
    const id = c.req.param('id') ?? ''
    const text = form.value ?? ''
    const reason = (form.reason ?? '').trim()
    const page = (errors: string[], diff?: ReturnType<typeof jsonDiff>, status = 200) => render(c, <EditPage ctx={ctxOf(c)} id={id} text={text} reason={reason} errors={errors} diff={diff} />, status)
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (err) {
      return page([`not valid JSON: ${(err as Error).message}`], undefined, 400)
    }
    if (form.step === 'send') {
      const a = await as(c, 'POST', `${recordPath(c)}/edit`, { value, replay: true, ...(reason === '' ? {} : { reason }) })
      if (a.status === 202) return back(c, 'approval-requested')
      if (a.status === 200) return back(c, 'edited-replayed')
      if (a.status === 400 || a.status === 409) return page([message(a)], undefined, a.status)
      return failed(c, a)
    }
    const current = await as(c, 'GET', recordPath(c))
    if (current.status !== 200) return failed(c, current)
    try {
      await prepareEdit(options.deps, id, value) // the schema and masking checks of the edit itself; writes nothing
    } catch (err) {
      if (isLifelineError(err) && (err.code === 'LL_SCHEMA_INVALID' || err.code === 'LL_ARGUMENT_INVALID' || err.code === 'LL_DLQ_CONFLICT')) return page([err.message], undefined, 400)
      throw err
    }
    let before: unknown
    try {
      before = typeof current.body.value === 'string' ? JSON.parse(current.body.value) : undefined
    } catch {
      before = current.body.value
    }
    return page([], jsonDiff(before as never, value as never))
  })

  // --- bulk redrive ---

  app.get('/redrive', (c) => {
    if (!mayPerform(ctxOf(c).principal.role, 'redrive.create')) return forbidden(c, 'redrive.create')
    return render(c, <RedrivePage ctx={ctxOf(c)} filter={filterOf(c.req.query())} />)
  })

  post('/redrive', 'redrive.create', async (c, form) => {
    const filter = filterOf(form)
    const apiFilter = { ...filter, ...(filter.status === undefined ? {} : { status: filter.status }) }
    const dry = await as(c, 'POST', '/v1/redrives', { filter: apiFilter, dryRun: true })
    if (dry.status !== 200) return dry.status === 400 ? render(c, <RedrivePage ctx={ctxOf(c)} filter={filter} error={message(dry)} />, 400) : failed(c, dry)
    const fields = { targetTopic: form.targetTopic ?? '', ratePerSec: form.ratePerSec ?? '', canary: form.canary ?? '' }
    if (form.step !== 'create') return render(c, <RedrivePage ctx={ctxOf(c)} filter={filter} preview={dry.body} form={fields} />)
    const int = (v: string) => (v.trim() === '' ? undefined : /^\d{1,7}$/.test(v.trim()) ? Number(v.trim()) : NaN)
    const rate = int(fields.ratePerSec)
    const canary = int(fields.canary)
    if (Number.isNaN(rate) || Number.isNaN(canary)) return render(c, <RedrivePage ctx={ctxOf(c)} filter={filter} preview={dry.body} form={fields} error="Rate and canary are whole numbers." />, 400)
    const body = { filter: apiFilter, ...(fields.targetTopic.trim() === '' ? {} : { target: { kind: 'topic', topic: fields.targetTopic.trim() } }), ...(rate === undefined ? {} : { ratePerSec: rate }), ...(canary === undefined ? {} : { canary }) }
    const a = await as(c, 'POST', '/v1/redrives', body)
    if (a.status === 400) return render(c, <RedrivePage ctx={ctxOf(c)} filter={filter} preview={dry.body} form={fields} error={message(a)} />, 400)
    if (a.status !== 201 && a.status !== 202) return failed(c, a)
    const job = a.body.job as { id: string }
    return c.redirect(`/console/jobs/${job.id}?notice=${a.status === 201 ? 'started' : 'awaiting-approval'}`, 303)
  })

  // --- jobs ---

  app.get('/jobs', async (c) => {
    const a = await as(c, 'GET', '/v1/jobs?limit=100')
    return a.status === 200 ? render(c, <JobsPage ctx={ctxOf(c)} jobs={a.body.jobs as Array<Record<string, unknown>>} />) : failed(c, a)
  })
  const jobPath = (c: Context) => `/v1/jobs/${encodeURIComponent(c.req.param('id') ?? '')}`
  app.get('/jobs/:id', async (c) => {
    const a = await as(c, 'GET', jobPath(c))
    return a.status === 200 ? render(c, <JobPage ctx={ctxOf(c)} job={a.body} notice={notice(c)?.text} />) : failed(c, a)
  })
  for (const [verb, done] of [['pause', 'paused'], ['resume', 'resumed'], ['cancel', 'cancelled']] as const) {
    post(`/jobs/:id/${verb}`, `job.${verb}`, async (c) => {
      const a = await as(c, 'POST', `${jobPath(c)}/${verb}`)
      return a.status === 200 || a.status === 202 ? c.redirect(`/console/jobs/${encodeURIComponent(c.req.param('id') ?? '')}?notice=${done}`, 303) : failed(c, a)
    })
  }
  // Live progress: the job as an event every progressMs until it is final (or the page goes away).
  app.get('/jobs/:id/events', async (c) => {
    const first = await as(c, 'GET', jobPath(c))
    if (first.status !== 200) return failed(c, first)
    return streamSSE(c, async (stream) => {
      let job = first.body
      let last = ''
      const deadline = Date.now() + 3_600_000
      while (!stream.aborted && Date.now() < deadline) {
        const data = JSON.stringify({ status: job.status, statusReason: job.statusReason ?? null, total: job.total, done: job.done, succeeded: job.succeeded, failed: job.failed, skipped: job.skipped })
        if (data !== last) await stream.writeSSE({ event: 'progress', data })
        last = data
        if (FINAL_JOB.has(String(job.status))) break
        await stream.sleep(progressMs)
        const next = await as(c, 'GET', jobPath(c))
        if (next.status !== 200) break
        job = next.body
      }
      await stream.writeSSE({ event: 'end', data: '{}' })
    })
  })

  // --- approvals ---

  const approvalsPage = async (c: Context<Env>, status: string, n?: { kind: 'ok' | 'error'; text: string }, code = 200) => {
    const a = await as(c, 'GET', `/v1/approvals${query({ status, limit: 100 })}`)
    if (a.status !== 200) return failed(c, a)
    return render(c, <ApprovalsPage ctx={ctxOf(c)} approvals={a.body.approvals as Array<Record<string, unknown>>} status={status} notice={n} />, code)
  }
  app.get('/approvals', (c) => {
    const status = ['pending', 'executed', 'rejected', 'expired', 'void', 'approved'].includes(c.req.query('status') ?? '') ? c.req.query('status')! : 'pending'
    const n = notice(c)
    return approvalsPage(c, status, n === undefined ? undefined : { kind: 'ok', text: n.text })
  })
  post('/approvals/:id/approve', 'approval.decide', async (c) => {
    const a = await as(c, 'POST', `/v1/approvals/${encodeURIComponent(c.req.param('id') ?? '')}/approve`)
    return a.status === 200 ? c.redirect('/console/approvals?notice=approved', 303) : approvalsPage(c, 'pending', { kind: 'error', text: message(a) }, a.status)
  })
  post('/approvals/:id/reject', 'approval.decide', async (c, form) => {
    const a = await as(c, 'POST', `/v1/approvals/${encodeURIComponent(c.req.param('id') ?? '')}/reject`, { reason: form.reason ?? '' })
    return a.status === 200 ? c.redirect('/console/approvals?notice=rejected', 303) : approvalsPage(c, 'pending', { kind: 'error', text: message(a) }, a.status)
  })

  // --- audit ---

  app.get('/audit', async (c) => {
    if (!mayPerform(ctxOf(c).principal.role, 'audit.read')) return forbidden(c, 'audit.read')
    const q = c.req.query()
    const filter = Object.fromEntries(['actor', 'action', 'target', 'from', 'to'].map((k) => [k, q[k]?.trim() || undefined]))
    const a = await as(c, 'GET', `/v1/audit${query({ ...filter, order: 'desc', limit: 100, afterId: q.afterId })}`)
    if (a.status === 400) return render(c, <AuditPage ctx={ctxOf(c)} entries={[]} filter={filter} nextAfterId={null} error={message(a)} />, 400)
    if (a.status !== 200) return failed(c, a)
    return render(c, <AuditPage ctx={ctxOf(c)} entries={a.body.entries as Array<Record<string, unknown>>} filter={filter} nextAfterId={a.body.nextAfterId} />)
  })

  registerStoreRoutes({ app, db, parkedKeys: options.parkedKeys, render, ctxOf, post, notice })

  return app
}

function roleFor(action: Action): Role {
  for (const role of ['viewer', 'operator', 'approver', 'admin'] as const) if (mayPerform(role, action)) return role
  return 'admin'
}

/** A record's value as the editor shows it: pretty JSON when it is JSON, else as it is. */
function editableText(value: unknown): string {
  if (typeof value !== 'string') return ''
  try {
    return JSON.stringify(JSON.parse(value), null, 2)
  } catch {
    return value
  }
}
