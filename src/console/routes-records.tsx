/**
 * The console's record pages: error groups, the records list (with a live count of new dead letters), one
 * record, and its actions — replay, discard, resolve, and the edit (a preview with its diff and the edit's
 * own schema and masking checks, then the edit and replay through the API).
 *
 * @module
 */
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { isLifelineError } from '../errors.js'
import { mayPerform } from '../dlq/auth.js'
import { prepareEdit } from '../dlq/redrive/edit.js'
import type { RedriveDeps } from '../dlq/redrive/types.js'
import { jsonDiff } from '../util/json-diff.js'
import { countNewer, latestId } from './data.js'
import { query } from './http.js'
import type { RouteKit } from './kit.js'
import { EditPage, GroupsPage, RecordPage, RecordsPage } from './pages-records.js'

/** A record's value as the editor shows it: pretty JSON when it is JSON, else as it is. */
function editableText(value: unknown): string {
  if (typeof value !== 'string') return ''
  try {
    return JSON.stringify(JSON.parse(value), null, 2)
  } catch {
    return value
  }
}

export function registerRecordRoutes(kit: RouteKit, options: { deps: Pick<RedriveDeps, 'db' | 'masker' | 'schemas'>; newRecordsMs: number }): void {
  const { app, db, render, ctxOf, as, message, failed, forbidden, filterOf, post, notice } = kit
  const { newRecordsMs } = options


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
}
