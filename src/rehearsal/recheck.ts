/**
 * Raw evidence on disk: a run saves its history (produce log, effects, DLQ records, offsets, faults,
 * operator log, workload) next to the member logs, so the checker can be run again on it — to confirm an
 * anomaly against the raw logs, or after the checker changed (`lifeline rehearse --recheck <dir>`).
 *
 * @module
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { History } from './history.js'
import { readMemberLog } from './member-log.js'

const FILE = 'history.json'

/** Saves everything but the member logs (already on disk) as `history.json` in `dir`. */
export function saveHistory(dir: string, history: History): void {
  const { members: _members, ...rest } = history
  writeFileSync(join(dir, FILE), JSON.stringify({ ...rest, operator: { ...rest.operator, finalState: [...rest.operator.finalState] }, valueSha: [...rest.valueSha] }))
}

/** Loads a run's history from its raw folder (history.json plus every member log). */
export function loadHistory(dir: string): History {
  const raw = JSON.parse(readFileSync(join(dir, FILE), 'utf8')) as Omit<History, 'members' | 'operator' | 'valueSha'> & { operator: Omit<History['operator'], 'finalState'> & { finalState: Array<[string, number[]]> }; valueSha: Array<[string, string]> }
  const members = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) => readMemberLog(join(dir, f)))
  return {
    ...raw,
    members,
    operator: { ...raw.operator, fixedAt: raw.operator.fixedAt ?? Number.POSITIVE_INFINITY, finalState: new Map(raw.operator.finalState) },
    valueSha: new Map(raw.valueSha),
  }
}
