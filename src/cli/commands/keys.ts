/** `lifeline keys list|show|release`: the operator's view of parked keys (see src/ordering/state-store.ts). */
import type { Command } from 'commander'
import { LifelineError } from '../../errors.js'
import { createParkedKeys, type KeyEvent, type ParkedKey, type ParkedKeys, type ParkedRecord, type ParkStatus } from '../../ordering/state-store.js'
import { databaseOptionsFromEnv, openDatabase, type OpenDatabaseOptions } from '../../store/index.js'
import { migrateLifeline } from '../../store/schema.js'
import { printJson, printTable } from '../output.js'

const DATABASE_HELP = 'postgres:// URL of a server, or a PGlite data directory (default: DATABASE_URL, else LIFELINE_DATA_DIR, else .lifeline/db)'
const MAX_LIMIT = 10_000
const PREVIEW_CHARS = 80

/** Where `--database` points (pure): a URL is a server (openDatabase refuses a non-postgres scheme), anything else a PGlite directory. */
export function databaseOption(value: string | undefined, env: NodeJS.ProcessEnv = process.env): Pick<OpenDatabaseOptions, 'url' | 'dataDir'> {
  if (value === undefined) return databaseOptionsFromEnv(env)
  if (value.trim() === '') throw new Error('--database must be a postgres:// URL or a directory, got an empty string')
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? { url: value } : { dataDir: value }
}

/** `--limit`: an integer from 1 to 10000 (default 100). */
export function limitOption(value: string | undefined): number {
  if (value === undefined) return 100
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > MAX_LIMIT) throw new Error(`--limit must be an integer from 1 to ${MAX_LIMIT}, got ${value}`)
  return n
}

function statusOption(value: string | undefined): ParkStatus | undefined {
  if (value === undefined || value === 'parked' || value === 'released' || value === 'gap') return value
  throw new Error(`--status must be parked, released or gap, got ${value}`)
}

/** Where a key waits, for people: its head's offset and location, or the sequence a gap key waits for. */
function headText(k: ParkedKey): string {
  if (k.headLocation === 'gap') return `waiting for sequence ${k.gapFrom ?? '?'}${k.gapSince === null ? '' : ` since ${k.gapSince.toISOString()}`}`
  return `offset ${k.headOffset} in ${k.headLocation}${k.headTopic === null ? '' : ` (${k.headTopic})`}${k.headState === 'pending' ? ' (copy being written)' : ''}`
}

function offsetOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) throw new Error(`--expect-head must be a source offset (an integer >= 0), got ${value}`)
  return n
}

/** The key argument as bytes: UTF-8 text, or with `--hex` hex digits (a leading `hex:`, as `list` prints it, is accepted). */
export function keyArgument(value: string, hex: boolean | undefined): Buffer {
  if (!hex) return Buffer.from(value, 'utf8')
  const digits = value.startsWith('hex:') ? value.slice(4) : value
  if (!/^(?:[0-9a-f]{2})*$/i.test(digits)) throw new Error(`--hex: the key must be an even number of hex digits, got ${value}`)
  return Buffer.from(digits, 'hex')
}

function isUtf8(bytes: Buffer): string | null {
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes) ? text : null
}

/** A key as operators read it: its text, or `hex:<hex>` when it is not UTF-8. */
export const keyLabel = (key: Buffer, text: string | null = isUtf8(key)): string => text ?? `hex:${key.toString('hex')}`

/** Control characters escaped so a value stays on one table line. */
const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }
function escapeControls(text: string): string {
  let out = ''
  for (const c of text) {
    const code = c.charCodeAt(0)
    out += code < 0x20 || code === 0x7f ? (CONTROL_ESCAPES[c] ?? `\\x${code.toString(16).padStart(2, '0')}`) : c
  }
  return out
}

/** A value preview of at most 80 characters: UTF-8 text, else `hex:<hex>`; `(null)` for a tombstone. */
export function preview(value: Buffer | null, max = PREVIEW_CHARS): string {
  if (value === null) return '(null)'
  const text = isUtf8(value)
  const full = text === null ? `hex:${value.subarray(0, max).toString('hex')}` : escapeControls(text.slice(0, max + 1))
  return full.length > max ? `${full.slice(0, max - 1)}…` : full
}

/** Elapsed time as `45s`, `3m12s`, `2h5m`, `3d4h`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString())

/** A parked key for `--json`: bytes as text (null when not UTF-8) and hex. */
function keyJson(k: ParkedKey) {
  return {
    group: k.group,
    topic: k.topic,
    partition: k.partition,
    key: k.keyText,
    keyHex: k.key.toString('hex'),
    status: k.status,
    headOffset: k.headOffset,
    headToken: k.headToken,
    headLocation: k.headLocation,
    headState: k.headState,
    gapFrom: k.gapFrom,
    gapSince: iso(k.gapSince),
    headTopic: k.headTopic,
    headErrorCode: k.headErrorCode,
    headErrorMessage: k.headErrorMessage,
    parkedAt: iso(k.parkedAt),
    updatedAt: iso(k.updatedAt),
    releaseReason: k.releaseReason,
    releasedBy: k.releasedBy,
    releasedAt: iso(k.releasedAt),
    parkedRecords: k.parkedRecords,
  }
}

/** A parked record for `--json`: the value as UTF-8 text (null when not text) and base64; header values base64. */
function recordJson(r: ParkedRecord) {
  return {
    id: r.id,
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    seq: r.seq,
    value: r.value === null ? null : isUtf8(r.value),
    valueBase64: r.value === null ? null : r.value.toString('base64'),
    headers: r.headers.map((h) => ({ key: h.key, valueBase64: h.value === null ? null : h.value.toString('base64') })),
    timestamp: r.timestamp,
    parkedAt: iso(r.parkedAt),
  }
}

const eventJson = (e: KeyEvent) => ({ id: e.id, at: iso(e.at), event: e.event, actor: e.actor, detail: e.detail })

/** Opens the database, applies Lifeline's migrations (an empty database shows nothing), runs `fn`, closes. */
async function withParkedKeys<T>(database: Pick<OpenDatabaseOptions, 'url' | 'dataDir'>, fn: (keys: ParkedKeys) => Promise<T>): Promise<T> {
  const db = await openDatabase(database)
  try {
    await migrateLifeline(db)
    return await fn(createParkedKeys(db))
  } finally {
    await db.close()
  }
}

const notParked = (key: Buffer, topic: string, group: string) =>
  new LifelineError('LL_KEY_NOT_PARKED', `key ${JSON.stringify(keyLabel(key))} of ${topic} in group ${group} is not parked`, { details: { group, topic } })

interface ListOptions { database?: string; group?: string; topic?: string; status?: string; limit?: string; json?: boolean }
interface ShowOptions { database?: string; group: string; topic: string; hex?: boolean; limit?: string; json?: boolean }
interface ReleaseOptions { database?: string; group: string; topic: string; reason: string; actor?: string; expectHead?: string; expectToken?: string; hex?: boolean; json?: boolean }

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('inspect and release keys parked behind a record in a retry tier or the DLQ')

  keys
    .command('list')
    .description('list parked (and released, not yet replayed) keys, oldest first')
    .option('-g, --group <group>', 'only this consumer group')
    .option('-t, --topic <topic>', 'only this source topic')
    .option('--status <status>', 'only parked, released or gap keys (gap: waiting for a missing sequence)')
    .option('-n, --limit <n>', 'most keys to list, 1 to 10000', '100')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (opts: ListOptions) => {
      const limit = limitOption(opts.limit)
      const status = statusOption(opts.status)
      const database = databaseOption(opts.database)
      const rows = await withParkedKeys(database, (k) => k.list({ group: opts.group, topic: opts.topic, status, limit }))
      if (opts.json) {
        printJson(rows.map(keyJson))
        return
      }
      const now = Date.now()
      printTable(
        rows.map((k) => ({
          group: k.group,
          topic: k.topic,
          partition: k.partition,
          key: keyLabel(k.key, k.keyText),
          status: k.status,
          head: k.headLocation === 'gap' ? `seq ${k.gapFrom ?? '?'}` : k.headOffset,
          location: k.headLocation,
          error: k.headErrorCode ?? '',
          'parked records': k.parkedRecords,
          'parked at': k.parkedAt.toISOString(),
          age: formatAge(now - k.parkedAt.getTime()),
        })),
      )
    })

  keys
    .command('show')
    .description('show a key: its head, the records parked behind it (in replay order) and its history')
    .argument('<key>', 'the key (UTF-8 text; hex bytes with --hex)')
    .requiredOption('-g, --group <group>', 'consumer group')
    .requiredOption('-t, --topic <topic>', 'source topic')
    .option('--hex', 'the key argument is hex bytes (as `list` prints a key that is not UTF-8: hex:…)')
    .option('-n, --limit <n>', 'most parked records to show, 1 to 10000', '100')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (keyArg: string, opts: ShowOptions) => {
      const key = keyArgument(keyArg, opts.hex)
      const limit = limitOption(opts.limit)
      const database = databaseOption(opts.database)
      const shown = await withParkedKeys(database, (k) => k.show(opts.group, opts.topic, key, { limit }))
      if (shown === undefined) throw notParked(key, opts.topic, opts.group)
      // The store returns the latest events newest first; show them in the order they happened.
      const events = [...shown.events].sort((a, b) => a.at.getTime() - b.at.getTime() || Number(a.id) - Number(b.id))
      if (opts.json) {
        printJson({ key: keyJson(shown.key), records: shown.records.map(recordJson), events: events.map(eventJson) })
        return
      }
      const k = shown.key
      const fields: Array<[string, unknown]> = [
        ['group', k.group],
        ['topic', k.topic],
        ['partition', k.partition],
        ['key', keyLabel(k.key, k.keyText)],
        ['status', k.status],
        ['head', headText(k)],
        ['error', k.headErrorCode === null ? '' : `${k.headErrorCode}${k.headErrorMessage === null ? '' : `: ${escapeControls(k.headErrorMessage)}`}`],
        ['parked at', `${k.parkedAt.toISOString()} (${formatAge(Date.now() - k.parkedAt.getTime())} ago)`],
        ['updated at', k.updatedAt.toISOString()],
        ['parked records', k.parkedRecords],
      ]
      if (k.status === 'released') fields.push(['released', `${iso(k.releasedAt) ?? ''} by ${k.releasedBy ?? '?'}: ${k.releaseReason ?? ''}`])
      const width = Math.max(...fields.map(([name]) => name.length))
      process.stdout.write(fields.map(([name, value]) => `${`${name}:`.padEnd(width + 2)}${String(value)}`.trimEnd()).join('\n') + '\n')
      const more = k.parkedRecords > shown.records.length ? ` (first ${shown.records.length} of ${k.parkedRecords}; --limit for more)` : ''
      process.stdout.write(`\nparked records, in replay order${more}:\n`)
      printTable(shown.records.map((r) => ({ id: r.id, partition: r.partition, offset: r.offset, seq: r.seq ?? '', value: preview(r.value) })))
      process.stdout.write('\nhistory:\n')
      printTable(events.map((e) => ({ at: e.at.toISOString(), event: e.event, actor: e.actor ?? '', detail: JSON.stringify(e.detail) })))
    })

  keys
    .command('release')
    .description("release a parked key: the partition's owner replays its parked records in order, then the key flows again")
    .argument('<key>', 'the key (UTF-8 text; hex bytes with --hex)')
    .requiredOption('-g, --group <group>', 'consumer group')
    .requiredOption('-t, --topic <topic>', 'source topic')
    .requiredOption('-r, --reason <text>', 'why (kept in the key\'s history)')
    .option('--actor <name>', 'who releases it (default: $USER, else operator)')
    .option('--expect-head <offset>', 'release only while the key is parked behind this source offset')
    .option('--expect-token <token>', "release only while the key's head has this park token (its DLQ record's lifeline.park.token)")
    .option('--hex', 'the key argument is hex bytes (as `list` prints a key that is not UTF-8: hex:…)')
    .option('--database <url>', DATABASE_HELP)
    .option('--json', 'print JSON')
    .action(async (keyArg: string, opts: ReleaseOptions) => {
      const key = keyArgument(keyArg, opts.hex)
      const expectHeadOffset = offsetOption(opts.expectHead)
      if (opts.reason.trim() === '') throw new Error('--reason must not be empty')
      const actor = opts.actor ?? (process.env.USER || 'operator')
      if (actor.trim() === '') throw new Error('--actor must not be empty')
      const database = databaseOption(opts.database)
      if (opts.expectToken !== undefined && opts.expectToken.trim() === '') throw new Error('--expect-token must not be empty')
      const released = await withParkedKeys(database, (k) =>
        k.release({ group: opts.group, topic: opts.topic, key, actor, reason: opts.reason, ...(expectHeadOffset === undefined ? {} : { expectHeadOffset }), ...(opts.expectToken === undefined ? {} : { expectToken: opts.expectToken }) }),
      )
      if (opts.json) {
        printJson(keyJson(released))
        return
      }
      const n = released.parkedRecords
      process.stdout.write(
        `released key ${JSON.stringify(keyLabel(released.key, released.keyText))} of ${released.topic}[${released.partition}] in group ${released.group} ` +
          `(${released.headLocation === 'gap' ? 'it was waiting for a missing sequence, now skipped: a late arrival of it is dead-lettered' : `head was offset ${released.headOffset} in ${released.headLocation}`}); status: ${released.status}, ${n} parked record${n === 1 ? '' : 's'} to replay\n`,
      )
      const replays = n === 0 ? 'forgets the key' : `replays ${n === 1 ? 'it' : 'them'} in order, then forgets the key,`
      process.stdout.write(
        `the owner of partition ${released.partition} ${replays} within its parking poll interval (parking.pollMs, default 1 s); ` +
          'if no member of the group runs, once the partition is next assigned\n',
      )
      if (released.headLocation.startsWith('retry')) {
        process.stdout.write(`note: the head (offset ${released.headOffset}) was waiting in ${released.headLocation}; that retry is now stale and is skipped, not run\n`)
      }
    })
}
