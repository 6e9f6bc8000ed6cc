/**
 * The operators' view of the durable ordering state (parked keys, the records stored behind them, their
 * history) in PostgreSQL (a server or embedded PGlite; tables in `migrations/0001_ordering.sql` and
 * `0006_ordering_protocol.sql`). The consumer runtime writes it through protocol-store.ts; operators read and
 * release keys through {@link ParkedKeys} (`lifeline keys`), and the DLQ processor releases keys on
 * discard through the same API.
 *
 * Why the database and not a compacted topic: a release comes from anywhere (a retry-tier consumer on
 * another instance, an operator, the DLQ processor) and must reach the partition's current owner, the
 * parked records must be read back in order per key, and operators query by key; a compacted topic would
 * have to be materialised in full by every owner on every assignment. See docs/ordering.md.
 *
 * Every statement is parameterised; keys are bytea (any bytes), passed as Buffers.
 *
 * @module
 */
import { LifelineError } from '../errors.js'
import type { SqlExecutor } from '../store/executor.js'
import { listLimit } from '../util/limit.js'
import { keyEvent, keyText, parkedRecords, toKey, type ParkedRecord, type ParkStatus } from './rows.js'

export type { ParkedRecord, ParkStatus } from './rows.js'

/** A parked key, as operators see it. */
export interface ParkedKey {
  group: string
  topic: string
  partition: number
  key: Buffer
  /** The key as UTF-8 text when it is valid UTF-8, else null (use `key`). */
  keyText: string | null
  status: ParkStatus
  /** Source offset of the record the key is parked behind. */
  headOffset: number
  headToken: string
  /** Where the head is: `retry:N`, `dlq`, or `gap` (the key waits for a missing sequence). */
  headLocation: string
  /** `pending` while the head's copy is being written to its retry tier or the DLQ, then `placed`. */
  headState: 'pending' | 'placed'
  /** For a gap key: the first missing sequence and since when the key waits for it. */
  gapFrom: number | null
  gapSince: Date | null
  headTopic: string | null
  headErrorCode: string | null
  headErrorMessage: string | null
  parkedAt: Date
  updatedAt: Date
  releaseReason: string | null
  releasedBy: string | null
  releasedAt: Date | null
  /** Records waiting behind the head. */
  parkedRecords: number
}

export interface KeyEvent {
  id: string
  event: string
  detail: Record<string, unknown>
  actor: string | null
  at: Date
}

export interface ParkedKeyFilter {
  group?: string
  topic?: string
  status?: ParkStatus
  /** Most rows (default 100, at most 10,000). */
  limit?: number
}

export interface ReleaseRequest {
  group: string
  topic: string
  key: Buffer | string
  /** Who released it (an operator name, `dlq-processor`, ...). */
  actor: string
  /** Why: `redriven`, `discarded`, `operator`, free text. */
  reason: string
  /** Only release when the head is still this source offset (a redrive of an older head must not release a newer one). */
  expectHeadOffset?: number
  /** Only release when the head still has this token (the `lifeline.park.token` of its DLQ record). */
  expectToken?: string
}

/** The operator-facing API over parked keys (what `lifeline keys` and the DLQ processor call). */
export interface ParkedKeys {
  list(filter?: ParkedKeyFilter): Promise<ParkedKey[]>
  /** The key, its first `limit` (1..10000, default 100) parked records in replay order, and its latest 50 history events (newest first); undefined if not parked. */
  show(group: string, topic: string, key: Buffer | string, options?: { limit?: number }): Promise<{ key: ParkedKey; records: ParkedRecord[]; events: KeyEvent[] } | undefined>
  /**
   * Marks the key released: the owner of its partition replays the parked records in order (within about
   * `parking.pollMs`), then forgets the key. A head still waiting in a retry tier is given up (its copy is
   * skipped as stale). Releasing a gap key skips the missing sequences (recorded: a late arrival of one is
   * dead-lettered as a straggler). LL_KEY_NOT_PARKED when it is neither parked nor waiting for a gap (or its
   * head moved).
   */
  release(request: ReleaseRequest): Promise<ParkedKey>
}

const KEY_COLUMNS = `k.group_id, k.topic, k.partition, k.key, k.status, k.head_offset, k.head_token, k.head_location, k.head_topic, k.head_state, k.gap_from, k.gap_since,
  k.head_error_code, k.head_error_message, k.parked_at, k.updated_at, k.release_reason, k.released_by, k.released_at,
  (select count(*) from lifeline_parked_records r where r.group_id = k.group_id and r.topic = k.topic and r.key = k.key) as records`

function toParkedKey(row: Record<string, unknown>): ParkedKey {
  const key = row.key as Buffer
  return {
    group: row.group_id as string,
    topic: row.topic as string,
    partition: Number(row.partition),
    key,
    keyText: keyText(key),
    status: row.status as ParkStatus,
    headOffset: Number(row.head_offset),
    headToken: row.head_token as string,
    headLocation: row.head_location as string,
    headState: (row.head_state as 'pending' | 'placed' | undefined) ?? 'placed',
    gapFrom: row.gap_from === null || row.gap_from === undefined ? null : Number(row.gap_from),
    gapSince: (row.gap_since as Date | null | undefined) ?? null,
    headTopic: (row.head_topic as string | null) ?? null,
    headErrorCode: (row.head_error_code as string | null) ?? null,
    headErrorMessage: (row.head_error_message as string | null) ?? null,
    parkedAt: row.parked_at as Date,
    updatedAt: row.updated_at as Date,
    releaseReason: (row.release_reason as string | null) ?? null,
    releasedBy: (row.released_by as string | null) ?? null,
    releasedAt: (row.released_at as Date | null) ?? null,
    parkedRecords: Number(row.records),
  }
}

const STATUSES: readonly ParkStatus[] = ['parked', 'released', 'gap']

/** The operators' reads and releases of the ordering tables. One instance per database; stateless itself. */
class ParkedKeysStore implements ParkedKeys {
  constructor(readonly db: SqlExecutor) {}

  async list(filter: ParkedKeyFilter = {}): Promise<ParkedKey[]> {
    const limit = listLimit(filter.limit)
    if (filter.status !== undefined && !STATUSES.includes(filter.status)) throw new LifelineError('LL_ARGUMENT_INVALID', `status must be one of ${STATUSES.join(', ')}, got ${JSON.stringify(filter.status)}`)
    const { rows } = await this.db.query(
      `select ${KEY_COLUMNS} from lifeline_parked_keys k
       where ($1::text is null or k.group_id = $1) and ($2::text is null or k.topic = $2) and ($3::text is null or k.status = $3)
       order by k.parked_at, k.group_id, k.topic, k.key limit $4`,
      [filter.group ?? null, filter.topic ?? null, filter.status ?? null, limit],
    )
    return rows.map(toParkedKey)
  }

  async show(group: string, topic: string, keyInput: Buffer | string, options: { limit?: number } = {}): Promise<{ key: ParkedKey; records: ParkedRecord[]; events: KeyEvent[] } | undefined> {
    const key = toKey(keyInput)
    const limit = listLimit(options.limit)
    const { rows } = await this.db.query(`select ${KEY_COLUMNS} from lifeline_parked_keys k where k.group_id = $1 and k.topic = $2 and k.key = $3`, [group, topic, key])
    if (rows.length === 0) return undefined
    const records = await parkedRecords(this.db, group, topic, key, limit)
    const events = await this.db.query('select id, event, detail, actor, at from lifeline_key_events where group_id = $1 and topic = $2 and key = $3 order by id desc limit 50', [group, topic, key])
    return {
      key: toParkedKey(rows[0]!),
      records,
      events: events.rows.map((e) => ({ id: String(e.id), event: e.event as string, detail: e.detail as Record<string, unknown>, actor: (e.actor as string | null) ?? null, at: e.at as Date })),
    }
  }

  async release(request: ReleaseRequest): Promise<ParkedKey> {
    const key = toKey(request.key)
    if (!request.actor) throw new LifelineError('LL_ARGUMENT_INVALID', 'release needs an actor (who releases the key)')
    if (!request.reason) throw new LifelineError('LL_ARGUMENT_INVALID', 'release needs a reason')
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query(
        `update lifeline_parked_keys k set status = 'released', release_reason = $4, released_by = $5, released_at = now(), updated_at = now(), head_state = 'placed', gap_from = null, gap_since = null
         from (select status as was, gap_from as missing from lifeline_parked_keys where group_id = $1 and topic = $2 and key = $3 for update) old
         where k.group_id = $1 and k.topic = $2 and k.key = $3 and k.status in ('parked', 'gap')
           and ($6::int8 is null or k.head_offset = $6) and ($7::text is null or k.head_token = $7) returning k.*, old.was, old.missing`,
        [request.group, request.topic, key, request.reason, request.actor, request.expectHeadOffset ?? null, request.expectToken ?? null],
      )
      if (rows.length === 0) {
        const expected = [request.expectHeadOffset === undefined ? '' : ` behind offset ${request.expectHeadOffset}`, request.expectToken === undefined ? '' : ` with head token ${request.expectToken}`].join('')
        throw new LifelineError('LL_KEY_NOT_PARKED', `key ${JSON.stringify(keyText(key) ?? key.toString('hex'))} of ${request.topic} in group ${request.group} is not parked${expected}`, {
          details: { group: request.group, topic: request.topic },
        })
      }
      const given = rows[0]!
      if (given.was === 'gap') {
        // Releasing a gap skips the missing sequences: recorded (a late arrival is a straggler) and saved as handled.
        await tx.query(
          `with first as (select min(seq) as seq from lifeline_parked_records where group_id = $1 and topic = $2 and key = $3),
           skipped as (insert into lifeline_sequence_skips (group_id, topic, key, from_seq, to_seq, policy) select $1, $2, $3, $5::int8, first.seq - 1, 'operator' from first where first.seq > $5::int8 on conflict do nothing)
           insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq) select $1, $2, $4, $3, first.seq - 1 from first where first.seq is not null
           on conflict (group_id, topic, key) do update set last_seq = greatest(lifeline_key_sequences.last_seq, excluded.last_seq), updated_at = now()`,
          [request.group, request.topic, key, given.partition, given.missing],
        )
      }
      // A head still in a retry tier is given up: its copy is skipped as stale when it comes due.
      await keyEvent(tx, request.group, request.topic, key, 'released', { reason: request.reason, headOffset: Number(given.head_offset), headLocation: given.head_location, ...(given.was === 'gap' ? { missing: Number(given.missing) } : {}) }, request.actor)
      const count = await tx.query('select count(*) as n from lifeline_parked_records where group_id = $1 and topic = $2 and key = $3', [request.group, request.topic, key])
      return toParkedKey({ ...given, records: count.rows[0]!.n })
    })
  }
}

/** The operator API over `db` (migrate it first: {@link migrateLifeline}). */
export function createParkedKeys(db: SqlExecutor): ParkedKeys {
  return new ParkedKeysStore(db)
}
