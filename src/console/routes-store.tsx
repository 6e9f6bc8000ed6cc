/**
 * The console's pages over stores the API has no endpoint for — parked keys (the ordering store, as
 * `lifeline keys` uses it), compensation failures and reconciliation runs (the effects layer, as
 * `lifeline failures` and `lifeline reconcile` use it) — each change audited in its transaction.
 *
 * @module
 */
import type { Context } from 'hono'
import { isLifelineError } from '../errors.js'
import { listFailures, settleFailure } from '../effects/compensation.js'
import { getReconciliationRun, listReconciliationFindings, listReconciliationRuns } from '../effects/reconcile.js'
import { appendAudit } from '../dlq/audit.js'
import { FailuresPage, RunPage, RunsPage } from './pages-effects.js'
import { KeysPage } from './pages-keys.js'
import { ErrorPage } from './pages-ops.js'
import type { Env, RouteKit } from './kit.js'

export function registerStoreRoutes(kit: RouteKit): void {
  const { app, db, render, ctxOf, post, notice } = kit

  // --- parked keys (no API endpoint: the ordering store, as `lifeline keys` uses it) ---

  const keysPage = async (c: Context<Env>, n?: { kind: 'ok' | 'error'; text: string }, code = 200) => {
    const group = c.req.query('group')?.trim() || undefined
    const keys = await kit.parkedKeys.list({ ...(group === undefined ? {} : { group }), status: 'parked', limit: 200 })
    const [g, t, k] = [c.req.query('group'), c.req.query('topic'), c.req.query('key')]
    const shown = g !== undefined && t !== undefined && k !== undefined && /^[A-Za-z0-9_-]{0,20000}$/.test(k) ? await kit.parkedKeys.show(g, t, Buffer.from(k, 'base64url'), { limit: 100 }) : undefined
    const rows = keys as unknown as Array<Record<string, unknown>>
    return render(c, <KeysPage ctx={ctxOf(c)} keys={rows} group={group} shown={shown === undefined ? undefined : { key: shown.key as unknown as Record<string, unknown>, records: shown.records as unknown as Array<Record<string, unknown>> }} notice={n} />, code)
  }
  app.get('/keys', (c) => {
    const n = notice(c)
    return keysPage(c, n === undefined ? undefined : { kind: 'ok', text: n.text })
  })
  post('/keys/release', 'key.release', async (c, form) => {
    const principal = ctxOf(c).principal
    const reason = (form.reason ?? '').trim()
    if (reason === '' || reason.length > 2000) return keysPage(c, { kind: 'error', text: 'A release needs a reason (at most 2000 characters).' }, 400)
    if (typeof form.group !== 'string' || typeof form.topic !== 'string' || typeof form.key !== 'string' || !/^[A-Za-z0-9_-]{0,20000}$/.test(form.key)) return keysPage(c, { kind: 'error', text: 'Which key? The form lacks its group, topic or key.' }, 400)
    const key = Buffer.from(form.key, 'base64url')
    try {
      await kit.parkedKeys.release({ group: form.group, topic: form.topic, key, actor: principal.name, reason })
    } catch (err) {
      if (isLifelineError(err, 'LL_KEY_NOT_PARKED')) return keysPage(c, { kind: 'error', text: err.message }, 409)
      throw err
    }
    await appendAudit(db, { actor: principal.name, role: principal.role, action: 'key.release', target: `key:${form.group}/${form.topic}/${form.key}`.slice(0, 500), detail: { reason, via: 'console' } })
    return c.redirect('/console/keys?notice=released', 303)
  })

  // --- compensation failures and reconciliation (no API endpoint: the effects layer's functions, as the CLI uses them) ---

  const FAILURE_STATUSES = ['PENDING', 'RESOLVED', 'IGNORED'] as const
  const failuresPage = async (c: Context<Env>, n?: { kind: 'ok' | 'error'; text: string }, code = 200) => {
    const q = c.req.query('status')
    const status = FAILURE_STATUSES.find((s) => s === q) ?? 'PENDING'
    const consumer = c.req.query('consumer')?.trim() || undefined
    const failures = await listFailures(db, { status, limit: 200, ...(consumer === undefined ? {} : { consumer }) })
    return render(c, <FailuresPage ctx={ctxOf(c)} failures={failures} status={status} consumer={consumer} notice={n} />, code)
  }
  app.get('/failures', (c) => {
    const n = notice(c)
    return failuresPage(c, n === undefined ? undefined : { kind: 'ok', text: n.text })
  })
  post('/failures/:id/settle', 'failure.settle', async (c, form) => {
    const principal = ctxOf(c).principal
    const id = c.req.param('id') ?? ''
    const reason = (form.reason ?? '').trim()
    const status = form.status === 'RESOLVED' || form.status === 'IGNORED' ? form.status : undefined
    if (status === undefined || reason === '' || reason.length > 2000) return failuresPage(c, { kind: 'error', text: 'Settling a failure needs RESOLVED or IGNORED and a reason (at most 2000 characters).' }, 400)
    try {
      await db.transaction(async (tx) => {
        await settleFailure(tx, id, { status, actor: principal.name, reason })
        await appendAudit(tx, { actor: principal.name, role: principal.role, action: 'failure.settle', target: `failure:${id}`, detail: { status, reason, via: 'console' } })
      })
    } catch (err) {
      if (isLifelineError(err, 'LL_NOT_FOUND') || isLifelineError(err, 'LL_ARGUMENT_INVALID')) return failuresPage(c, { kind: 'error', text: err.message }, err.code === 'LL_NOT_FOUND' ? 404 : 400)
      throw err
    }
    return c.redirect(`/console/failures?notice=${status === 'RESOLVED' ? 'settled-resolved' : 'settled-ignored'}`, 303)
  })

  app.get('/reconcile', async (c) => render(c, <RunsPage ctx={ctxOf(c)} runs={await listReconciliationRuns(db, { limit: 100 })} />))
  app.get('/reconcile/:id', async (c) => {
    const id = c.req.param('id')
    if (!/^[1-9]\d{0,15}$/.test(id)) return render(c, <ErrorPage ctx={ctxOf(c)} status={404} message="No such run." />, 404)
    let run
    try {
      run = await getReconciliationRun(db, id)
    } catch (err) {
      if (isLifelineError(err, 'LL_NOT_FOUND')) return render(c, <ErrorPage ctx={ctxOf(c)} status={404} message={err.message} />, 404)
      throw err
    }
    // Findings hold the compared rows' values: reading them is audited like a record read.
    const principal = ctxOf(c).principal
    const findings = await listReconciliationFindings(db, id, { limit: 200 })
    await appendAudit(db, { actor: principal.name, role: principal.role, action: 'reconcile.findings.read', target: `reconcile-run:${id}`, detail: { via: 'console' } })
    return render(c, <RunPage ctx={ctxOf(c)} run={run} findings={findings} />)
  })

}
