/**
 * The console's operations pages: the overview (dead letters per hour, pending groups, parked keys, running
 * jobs, pending approvals, the audit chain's check, cached a minute), the bulk redrive wizard, jobs with
 * their live progress, the approvals inbox and the audit log — each through the API as the session's token
 * but for the overview's store reads.
 *
 * @module
 */
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { verifyAudit, type AuditVerification } from '../dlq/audit.js'
import { mayPerform } from '../dlq/auth.js'
import { hourlyCounts, pendingGroups } from '../dlq/records.js'
import { parkedSummary } from './data.js'
import { query } from './http.js'
import type { Env, RouteKit } from './kit.js'
import { ApprovalsPage, AuditPage } from './pages-approvals.js'
import { JobPage, JobsPage, RedrivePage } from './pages-jobs.js'
import { OverviewPage } from './pages-ops.js'

const FINAL_JOB = new Set(['completed', 'cancelled', 'failed'])
const AUDIT_CHAIN_TTL_MS = 60_000

export function registerOpsRoutes(kit: RouteKit, options: { progressMs: number }): void {
  const { app, db, render, ctxOf, as, message, failed, forbidden, filterOf, post, notice } = kit
  const { progressMs } = options
  let chain: { at: number; result: AuditVerification } | undefined


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
}
