/**
 * Editing a dead letter before its replay: an edited value is checked (JSON, the record `pending`, the
 * topic's schema, its encrypted values the record's own), masked like the record, and stored with its diff
 * from the stored value (`lifeline_dlq_edits`); the original stays in the record. `replayEdited`
 * (./replay.ts) sends it.
 *
 * @module
 */
import { Compile } from 'typebox/compile'
import { dlqConflict, invalidArgument, LifelineError } from '../../errors.js'
import { jsonDiff, type DiffOp, type JsonValue as Json } from '../../util/json-diff.js'
import { appendAudit, type AuditEntry } from '../audit.js'
import { policyTopics } from './plan.js'
import { insertEdit, loadSource } from './record-store.js'
import type { RedriveDeps } from './types.js'
import { positiveId, text } from './validate.js'

const compiled = new WeakMap<object, ReturnType<typeof Compile>>()

/**
 * Checks an edited value of record `id` and masks it like the record: JSON, the record `pending`, valid
 * against `deps.schemas[origin topic]` when there is one (LL_SCHEMA_INVALID listing the problems), its
 * encrypted values the record's own (an `enc:v2:` value must decrypt where it sits, an `enc:v1:` one must be
 * the record's at that path: LL_ARGUMENT_INVALID naming the paths), then masked under the record's policy
 * (with `deps.masker`): a clear value typed into a masked field is encrypted again, so no edit, approval or
 * diff holds it in clear. Returns the masked JSON text.
 */
export async function prepareEdit(deps: Pick<RedriveDeps, 'db' | 'masker' | 'schemas'>, id: string, input: unknown): Promise<{ text: string; stored: Buffer | null }> {
  const rid = positiveId('record', id)
  let serialized: string | undefined
  try {
    serialized = JSON.stringify(input)
  } catch (err) {
    throw invalidArgument('value must be JSON', { field: 'value', cause: (err as Error)?.message })
  }
  if (serialized === undefined) throw invalidArgument('value must be JSON', { field: 'value' })
  const value = JSON.parse(serialized) as Json
  const source = await loadSource(deps.db, rid)
  if (source.status !== 'pending') throw dlqConflict(`DLQ record ${rid} is ${source.status}: only a pending record can be edited`, { id: rid, status: source.status })
  const schema = deps.schemas?.[source.originTopic ?? source.topic]
  if (schema) {
    let check = compiled.get(schema)
    if (!check) compiled.set(schema, (check = Compile(schema as never)))
    if (!check.Check(value)) {
      const problems = [...check.Errors(value)].slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`)
      throw new LifelineError('LL_SCHEMA_INVALID', `the edited value does not match the schema of ${source.originTopic ?? source.topic}: ${problems.join('; ')}`, { details: { problems } })
    }
  }
  const masker = deps.masker
  if (!masker) return { text: serialized, stored: source.value }
  const topics = policyTopics(source)
  const foreign = masker.foreignTokens(Buffer.from(serialized, 'utf8'), source.value, topics)
  if (foreign.length > 0) {
    throw invalidArgument(`the edited value carries encrypted values that are not this record's own at ${foreign.slice(0, 5).join(', ')}: keep the record's own, or type the clear value (it is encrypted again)`, { field: 'value', paths: foreign.slice(0, 20) })
  }
  const policyTopic = topics.find((t) => masker.covers(t))
  if (policyTopic === undefined) return { text: serialized, stored: source.value }
  const masked = masker.mask(policyTopic, { value: Buffer.from(serialized, 'utf8'), errorMessage: '', headers: [] })
  return { text: masked.value === null ? serialized : masked.value.toString('utf8'), stored: source.value }
}

/**
 * Stores an edited value of a `pending` record (the original stays in the record), checked and masked by
 * {@link prepareEdit}, with its diff from the stored value. The diff is taken against the value as stored
 * (masked): fields left as encrypted tokens are decrypted at replay, and fields typed in clear under a
 * masking rule are stored encrypted again.
 */
export async function editRecord(deps: RedriveDeps, id: string, opts: { value: unknown; actor: string; reason?: string; audit?: AuditEntry }): Promise<{ editId: string; diff: DiffOp[] }> {
  const rid = positiveId('record', id)
  const actor = text('actor', opts.actor, 200)!
  const reason = text('reason', opts.reason, 2000, true)
  const { text: serialized, stored } = await prepareEdit(deps, rid, opts.value)
  const value = JSON.parse(serialized) as Json
  let before: Json | undefined
  try {
    before = stored === null ? null : (JSON.parse(stored.toString('utf8')) as Json)
  } catch {
    before = undefined // not JSON: the whole value is replaced
  }
  const diff = before === undefined ? [{ op: 'replace' as const, path: '', value }] : jsonDiff(before, value)
  const editId = await deps.db.transaction(async (tx) => {
    const id = await insertEdit(tx, { recordId: rid, value: Buffer.from(serialized, 'utf8'), diff: JSON.stringify(diff), actor, reason: reason ?? null })
    if (opts.audit) await appendAudit(tx, { ...opts.audit, detail: { ...opts.audit.detail, editId: id, outcome: 'ok' } })
    return id
  })
  return { editId, diff }
}
