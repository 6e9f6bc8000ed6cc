/**
 * What the `lifeline dlq` API-client commands share: the filter and client options, turning them into a
 * filter object and a query string, and the checks of ids, counts and `--target`.
 *
 * @module
 */
import type { Command } from 'commander'
import type { RecordFilter } from '../../dlq/records.js'
import { DEFAULT_DLQ_URL } from './dlq-client.js'

/** The record filter fields a command takes as options (the store's, without paging). */
type FilterField = Exclude<keyof RecordFilter, 'afterId' | 'order' | 'limit'>

/** `--filter` (a query string) and one option a filter field, as commander hands them over. */
export interface FilterOptions extends Partial<Record<FilterField, string>> {
  filter?: string
}

const FILTER_OPTIONS: Array<[FilterField, string, string]> = [
  ['topic', '--topic <topic>', 'origin topic'],
  ['dlqTopic', '--dlq-topic <topic>', 'DLQ topic'],
  ['group', '--group <group>', 'consumer group that failed'],
  ['errorCode', '--error-code <code>', 'error code'],
  ['errorClass', '--error-class <class>', 'error class'],
  ['fingerprint', '--fingerprint <fp>', 'error fingerprint (see groups)'],
  ['key', '--key <key>', 'record key (UTF-8)'],
  ['status', '--status <list>', 'statuses, comma-separated (pending, replaying, replayed, resolved, discarded, failed-again)'],
  ['format', '--format <format>', 'lifeline, spring, spring-retry, connect, streams, karafka, unknown'],
  ['from', '--from <time>', 'failed at or after (ISO-8601 or ms)'],
  ['to', '--to <time>', 'failed before (ISO-8601 or ms)'],
  ['text', '--text <text>', 'substring of the error message'],
]

/** Adds `--filter` and the filter options to `cmd`. */
export function withFilterOptions(cmd: Command): Command {
  cmd.option('--filter <query>', 'a filter as a query string, e.g. "topic=orders&errorCode=E_TAX" (the options below add to it)')
  for (const [, flags, help] of FILTER_OPTIONS) cmd.option(flags, help)
  return cmd
}

/** Adds the API client's options (`--url`, the token, `--insecure`, `--json`) to `cmd`. */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', `DLQ API base URL (default: LIFELINE_DLQ_URL, else ${DEFAULT_DLQ_URL}); plain http only to this machine unless --insecure`)
    .option('--token-file <path>', 'a file holding the API token (default: LIFELINE_TOKEN, else the file LIFELINE_TOKEN_FILE names)')
    .option('--token <token>', 'the API token itself (discouraged: it shows in the shell history and the process list)')
    .option('--insecure', 'allow plain http to another host (the token travels in clear)')
    .option('--json', 'print JSON')
}

/** The filter of `--filter` and the filter options, as an object (the API validates it). */
export function filterFrom(opts: FilterOptions): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  if (opts.filter !== undefined) {
    for (const [k, v] of new URLSearchParams(opts.filter)) {
      const prev = out[k]
      out[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v]
    }
  }
  for (const [name] of FILTER_OPTIONS) {
    const v = opts[name]
    if (v !== undefined) out[name] = v
  }
  if (typeof out.status === 'string' && out.status.includes(',')) out.status = out.status.split(',').map((s) => s.trim())
  return out
}

/** `params` as a query string (`?a=1&b=2`, repeated keys for lists; empty when none is set). */
export function queryString(params: Record<string, string | string[] | number | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one))
  }
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}

/** An option's value as an integer from 1 to `max` (undefined when not given). */
export function positiveInt(name: string, value: string | undefined, max = 1_000_000): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1 || Number(value) > max) throw new Error(`${name} must be an integer from 1 to ${max}, got ${value}`)
  return Number(value)
}

/** A record (or job, approval) id argument: a positive integer. */
export function idArgument(value: string, what = 'record id'): string {
  if (!/^[1-9]\d{0,15}$/.test(value)) throw new Error(`the ${what} must be a positive integer, got ${value}`)
  return value
}

/** `--target origin | topic:<name>[:<partition>] | tier:<n>:<service>`. */
export function targetOption(value: string | undefined): Record<string, unknown> | undefined {
  if (value === undefined) return undefined
  if (value === 'origin') return { kind: 'origin' }
  const topic = /^topic:([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(value)
  if (topic) return { kind: 'topic', topic: topic[1], ...(topic[2] === undefined ? {} : { partition: Number(topic[2]) }) }
  const tier = /^tier:(\d+):(.+)$/.exec(value)
  if (tier) return { kind: 'retry-tier', tier: Number(tier[1]), service: tier[2] }
  throw new Error(`--target must be origin, topic:<name>[:<partition>] or tier:<n>:<service>, got ${value}`)
}

/** An ISO-8601 time without its milliseconds (empty for anything else). */
export const time = (v: unknown): string => (typeof v === 'string' ? v.replace(/\.\d{3}Z$/, 'Z') : '')
