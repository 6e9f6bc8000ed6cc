/**
 * One batch of a pass: read it, look its keys up on the other side, compare ({@link detect}); and the
 * repair of one finding ({@link repairOne}). Calls the user's functions only; records nothing.
 *
 * @module
 */
import { LifelineError } from '../../errors.js'
import { diffFields, type AnyReconciliation, type ReconcileBatch, type ReconcileContext, type ReconcileDifference, type ReconcilePhase } from './define.js'
import { describeError, type Finding, type Outcome } from './store.js'

/** A reader's batch, checked, with each key once (a Redis SCAN may return a key twice). */
function readBatch(batch: unknown, cursor: string | null, def: AnyReconciliation, reader: string): { rows: Map<string, { key: unknown; value: unknown }>; next: string | null } {
  const b = batch as ReconcileBatch<unknown, unknown> | undefined
  if (typeof b !== 'object' || b === null || !Array.isArray(b.rows) || !(b.next === null || typeof b.next === 'string')) {
    throw new LifelineError('LL_RECONCILE', `${reader} must resolve to { rows: [{ key, value }], next: string | null }`)
  }
  if (b.next !== null && b.next === cursor) throw new LifelineError('LL_RECONCILE', `${reader} returned its own cursor ${JSON.stringify(cursor)} as next: it would never finish`)
  const rows = new Map<string, { key: unknown; value: unknown }>()
  for (const row of b.rows) {
    const text = def.key(row.key)
    if (typeof text !== 'string') throw new LifelineError('LL_RECONCILE', `key() must return a string, got ${typeof text}`)
    if (!rows.has(text)) rows.set(text, row)
  }
  return { rows, next: b.next }
}

function lookupResult(found: unknown, what: string): ReadonlyMap<string, unknown> {
  if (!(found instanceof Map)) throw new LifelineError('LL_RECONCILE', `${what} must resolve to a Map keyed by key()`)
  return found
}

/** Runs one pass's batch: read, look up, compare. */
export async function detect(def: AnyReconciliation, phase: ReconcilePhase, cursor: string | null, limit: number, ctx: ReconcileContext): Promise<{ findings: Finding[]; checked: number; next: string | null }> {
  const reader = phase === 'source' ? 'source.read' : 'target.read'
  const batch = phase === 'source' ? await def.source.read(cursor, limit, ctx) : await def.target.read!(cursor, limit, ctx)
  const { rows, next } = readBatch(batch, cursor, def, reader)
  const keys = [...rows.values()].map((r) => r.key)
  const lookup = async () => (phase === 'source' ? def.target.get(keys, ctx) : def.source.get!(keys, ctx))
  const other = keys.length === 0 ? new Map<string, unknown>() : lookupResult(await lookup(), phase === 'source' ? 'target.get' : 'source.get')
  const findings: Finding[] = []
  for (const [keyText, row] of rows) {
    const value = other.get(keyText)
    if (phase === 'target') {
      if (value === undefined || value === null) findings.push({ kind: 'extra', keyText, key: row.key, target: row.value })
      continue
    }
    if (value === undefined || value === null) {
      findings.push({ kind: 'missing', keyText, key: row.key, source: row.value })
      continue
    }
    let diff: ReconcileDifference | 'equal'
    try {
      diff = def.compare ? def.compare(row.value, value, row.key) : diffFields(row.value, value)
    } catch (err) {
      diff = { compareError: describeError(err) }
    }
    if (diff !== 'equal') findings.push({ kind: 'different', keyText, key: row.key, source: row.value, target: value, diff })
  }
  return { findings, checked: phase === 'source' ? rows.size : findings.length, next }
}

/** Repairs one finding with its kind's repair; its failure is the finding's outcome, not the run's. */
export async function repairOne(def: AnyReconciliation, f: Finding, ctx: ReconcileContext): Promise<Outcome> {
  const handler = def.repair?.[f.kind]
  if (handler === undefined) return { repaired: false, repairError: null }
  try {
    if (f.kind === 'missing') await def.repair!.missing!({ key: f.key, keyText: f.keyText, source: f.source }, ctx)
    else if (f.kind === 'extra') await def.repair!.extra!({ key: f.key, keyText: f.keyText, target: f.target }, ctx)
    else await def.repair!.different!({ key: f.key, keyText: f.keyText, source: f.source, target: f.target, diff: f.diff! }, ctx)
    return { repaired: true, repairError: null }
  } catch (err) {
    ctx.logger.warn({ err, kind: f.kind, key: f.keyText }, 'repair failed; recorded on the finding, the run goes on')
    return { repaired: false, repairError: describeError(err) }
  }
}
