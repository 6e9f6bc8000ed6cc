/**
 * The DLQ API's record endpoints: list, count, read (audited: it shows the payload), error groups, and the
 * actions on one record (replay, edit, replay an edit, discard, resolve), each gated by the approval policy
 * and the replay rules (permissions.ts) before it runs.
 *
 * @module
 */
import type { Context } from 'hono'
import { needsApproval, requestApproval } from '../approvals.js'
import { appendAudit } from '../audit.js'
import type { Principal } from '../auth.js'
import { elevatedReasons, requireApproverFor } from '../permissions.js'
import { countRecords, getRecord, getRecordSummary, groupRecords, listRecords, parseFilter } from '../records.js'
import { editRecord, prepareEdit } from '../redrive/edit.js'
import { discardRecord, replayEdited, replayRecord, resolveRecord } from '../redrive/replay.js'
import type { RedriveTarget } from '../redrive/types.js'
import { parseTarget } from '../redrive/target.js'
import type { ApiContext, Env, Handler } from './context.js'
import { approvalJson, checkFilter, pathId, queryObject, recordJson } from './io.js'
import { FILTER_QUERY, PAGE_QUERY } from './routes.js'

/** LL_FORBIDDEN unless `principal` may replay record `id` to `target` (with `force`): see permissions.ts. */
export async function authorizeReplay(ctx: ApiContext, principal: Principal, id: string, request: { target: RedriveTarget | undefined; force: boolean }, what: string): Promise<void> {
  const target = parseTarget(request.target)
  const record = await getRecordSummary(ctx.db, id) // 404 first
  const reasons = elevatedReasons({ target, force: request.force }, { originTopics: [record.originTopic], services: [record.service] }, ctx.replayTopics)
  requireApproverFor(principal, reasons, { target, what }, ctx.replayTopics)
}

/** Discard or resolve: both close a record for good, so one rule (CLOSING_ACTIONS in approvals.ts) gates them. */
async function closeRecord(ctx: ApiContext, c: Context<Env>, { principal, body }: { principal: Principal; body: unknown }, verb: 'discard' | 'resolve'): Promise<Response> {
  const { db, deps, policy, auditOf } = ctx
  const id = pathId(c)
  const { reason } = body as { reason: string }
  await getRecordSummary(db, id) // 404 before an approval is asked for
  if (needsApproval(policy, verb)) {
    const approval = await requestApproval(db, { action: verb, payload: { id, reason }, requester: principal, policy, target: `record:${id}` })
    return c.json({ approval: approvalJson(approval, { payload: false }) }, 202)
  }
  const close = verb === 'discard' ? discardRecord : resolveRecord
  await close(deps, id, { actor: principal.name, reason, audit: auditOf(principal, `record.${verb}`, `record:${id}`, { reason }) })
  return c.json({ id, status: verb === 'discard' ? 'discarded' : 'resolved' })
}

/** The handlers of the record endpoints, by `method path` (routes.ts). */
export function recordEndpoints(ctx: ApiContext): Record<string, Handler> {
  const { db, deps, policy, auditOf } = ctx
  return {
    'get /v1/records': async (c) => {
      const filter = queryObject(c, [...FILTER_QUERY, ...PAGE_QUERY])
      checkFilter(filter)
      const parsed = parseFilter(filter)
      const records = await listRecords(db, filter)
      return c.json({ records, nextAfterId: records.length === parsed.limit ? records[records.length - 1]!.id : null })
    },
    'get /v1/records/count': async (c) => {
      const filter = queryObject(c, FILTER_QUERY)
      checkFilter(filter)
      return c.json({ count: await countRecords(db, filter) })
    },
    'get /v1/records/:id': async (c, { principal }) => {
      const id = pathId(c)
      const record = await db.transaction(async (tx) => {
        const read = await getRecord(tx, id)
        await appendAudit(tx, auditOf(principal, 'record.read', `record:${id}`))
        return read
      })
      return c.json(recordJson(record))
    },
    'get /v1/groups': async (c) => {
      const { limit, ...filter } = queryObject(c, [...FILTER_QUERY, 'limit'])
      checkFilter(filter)
      return c.json({ groups: await groupRecords(db, filter, { limit: (limit as string | undefined) ?? 20 }) })
    },

    'post /v1/records/:id/replay': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { target?: RedriveTarget; force?: boolean }
      await authorizeReplay(ctx, principal, id, { target: b.target, force: b.force === true }, `replaying record ${id}`)
      const audit = auditOf(principal, 'record.replay', `record:${id}`, { target: b.target ?? { kind: 'origin' }, force: b.force === true })
      return c.json(await replayRecord(deps, id, { actor: principal.name, ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }), audit }))
    },
    'post /v1/records/:id/edit': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { value: unknown; reason?: string; replay?: boolean; target?: RedriveTarget }
      await getRecordSummary(db, id) // 404 before an approval is asked for
      if (needsApproval(policy, 'edit')) {
        // Checked and masked now: the approval never holds a clear value typed into a masked field. The
        // approver sees the target in the approval: no role check on it here.
        const { text } = await prepareEdit(deps, id, b.value)
        const approval = await requestApproval(db, { action: 'edit', payload: { id, ...b, value: JSON.parse(text) as unknown }, requester: principal, policy, target: `record:${id}` })
        return c.json({ approval: approvalJson(approval, { payload: false }) }, 202)
      }
      if (b.replay === true) await authorizeReplay(ctx, principal, id, { target: b.target, force: false }, `replaying the edit of record ${id}`)
      const edited = await editRecord(deps, id, { value: b.value, actor: principal.name, ...(b.reason === undefined ? {} : { reason: b.reason }), audit: auditOf(principal, 'record.edit', `record:${id}`, { reason: b.reason ?? null }) })
      if (b.replay !== true) return c.json(edited)
      const audit = auditOf(principal, 'record.replay-edited', `record:${id}`, { editId: edited.editId, target: b.target ?? { kind: 'origin' } })
      const replay = await replayEdited(deps, id, { actor: principal.name, editId: edited.editId, ...(b.target === undefined ? {} : { target: b.target }), audit })
      return c.json({ ...edited, replay })
    },
    'post /v1/records/:id/replay-edited': async (c, { principal, body }) => {
      const id = pathId(c)
      const b = body as { editId?: string; target?: RedriveTarget; force?: boolean }
      await authorizeReplay(ctx, principal, id, { target: b.target, force: b.force === true }, `replaying the edit of record ${id}`)
      const audit = auditOf(principal, 'record.replay-edited', `record:${id}`, { editId: b.editId ?? null, target: b.target ?? { kind: 'origin' }, force: b.force === true })
      return c.json(await replayEdited(deps, id, { actor: principal.name, ...(b.editId === undefined ? {} : { editId: b.editId }), ...(b.target === undefined ? {} : { target: b.target }), ...(b.force === undefined ? {} : { force: b.force }), audit }))
    },
    'post /v1/records/:id/discard': (c, input) => closeRecord(ctx, c, input, 'discard'),
    'post /v1/records/:id/resolve': (c, input) => closeRecord(ctx, c, input, 'resolve'),
  }
}
