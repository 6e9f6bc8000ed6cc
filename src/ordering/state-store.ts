/**
 * The durable ordering state behind parked keys and sequence tracking, in PostgreSQL (a server or embedded
 * PGlite; tables in `migrations/0001_ordering.sql`). The consumer runtime writes it; operators read and
 * release keys through {@link ParkedKeys} (`lifeline keys`), and the DLQ processor releases keys on redrive
 * and discard through the same API.
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
import type { KafkaHeader } from '../kafka/types.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import { listLimit } from '../util/limit.js'

export type ParkStatus = 'parked' | 'released'

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
  /** Where the head is: `retry:N` or `dlq`. */
  headLocation: string
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

/** A record stored behind a parked key. */
export interface ParkedRecord {
  id: string
  topic: string
  partition: number
  offset: number
  seq: number | null
  key: Buffer
  value: Buffer | null
  headers: KafkaHeader[]
  timestamp: number
  parkedAt: Date
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
}

/** The operator-facing API over parked keys (what `lifeline keys` and the DLQ processor call). */
export interface ParkedKeys {
  list(filter?: ParkedKeyFilter): Promise<ParkedKey[]>
  /** The key, its first `limit` (1..10000, default 100) parked records in replay order, and its latest 50 history events (newest first); undefined if not parked. */
  show(group: string, topic: string, key: Buffer | string, options?: { limit?: number }): Promise<{ key: ParkedKey; records: ParkedRecord[]; events: KeyEvent[] } | undefined>
  /**
   * Marks the key released: the owner of its partition replays the parked records in order (within about
   * `parking.pollMs`), then forgets the key. A head still waiting in a retry tier is given up (its copy is
   * skipped as stale). LL_KEY_NOT_PARKED when it is not parked (or its head moved).
   */
  release(request: ReleaseRequest): Promise<ParkedKey>
}

/** What an owner loads for a partition it is assigned. */
export interface PartitionState {
  parked: Array<{ key: Buffer; status: ParkStatus; headOffset: number; headToken: string; records: number; parkedAt: Date }>
  sequences: Array<{ key: Buffer; lastSeq: number }>
}

export interface HeadMove {
  group: string
  topic: string
  partition: number
  key: Buffer
  headOffset: number
  token: string
  location: string
  headTopic: string
  errorCode: string
  errorMessage: string
  /** The head was a parked record being replayed: delete its row in the same transaction. */
  fromParkedRecord?: string
}

export interface FollowerRecord {
  group: string
  topic: string
  partition: number
  key: Buffer
  offset: number
  seq?: number
  value: Buffer | null
  headers: KafkaHeader[]
  timestamp: number
}

const toKey = (key: Buffer | string): Buffer => (typeof key === 'string' ? Buffer.from(key, 'utf8') : key)

function keyText(key: Buffer): string | null {
  const text = key.toString('utf8')
  return Buffer.from(text, 'utf8').equals(key) ? text : null
}

const encodeHeaders = (headers: readonly KafkaHeader[]) => JSON.stringify(headers.map((h) => [h.key, h.value === null ? null : h.value.toString('base64')]))
const decodeHeaders = (json: unknown): KafkaHeader[] => (json as Array<[string, string | null]>).map(([key, value]) => ({ key, value: value === null ? null : Buffer.from(value, 'base64') }))

const KEY_COLUMNS = `k.group_id, k.topic, k.partition, k.key, k.status, k.head_offset, k.head_token, k.head_location, k.head_topic,
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

function toParkedRecord(row: Record<string, unknown>): ParkedRecord {
  return {
    id: String(row.id),
    topic: row.topic as string,
    partition: Number(row.partition),
    offset: Number(row.offset),
    seq: row.seq === null ? null : Number(row.seq),
    key: row.key as Buffer,
    value: (row.value as Buffer | null) ?? null,
    headers: decodeHeaders(row.headers),
    timestamp: Number(row.timestamp),
    parkedAt: row.parked_at as Date,
  }
}

async function event(q: SqlQueryable, group: string, topic: string, key: Buffer, name: string, detail: Record<string, unknown>, actor?: string): Promise<void> {
  await q.query('insert into lifeline_key_events (group_id, topic, key, event, detail, actor) values ($1, $2, $3, $4, $5, $6)', [group, topic, key, name, JSON.stringify(detail), actor ?? null])
}

/** Reads and writes the ordering tables. One instance per database; stateless itself. */
export class OrderingStore implements ParkedKeys {
  constructor(readonly db: SqlExecutor) {}

  // ---- runtime ---------------------------------------------------------------------------------------
  async loadPartition(group: string, topic: string, partition: number): Promise<PartitionState> {
    const parked = await this.db.query(
      `select k.key, k.status, k.head_offset, k.head_token, k.parked_at,
         (select count(*) from lifeline_parked_records r where r.group_id = k.group_id and r.topic = k.topic and r.key = k.key) as records
       from lifeline_parked_keys k where k.group_id = $1 and k.topic = $2 and k.partition = $3`,
      [group, topic, partition],
    )
    const sequences = await this.db.query('select key, last_seq from lifeline_key_sequences where group_id = $1 and topic = $2 and partition = $3', [group, topic, partition])
    return {
      parked: parked.rows.map((r) => ({ key: r.key as Buffer, status: r.status as ParkStatus, headOffset: Number(r.head_offset), headToken: r.head_token as string, records: Number(r.records), parkedAt: r.parked_at as Date })),
      sequences: sequences.rows.map((r) => ({ key: r.key as Buffer, lastSeq: Number(r.last_seq) })),
    }
  }

  /**
   * Parks the key behind `move`'s record, or moves its head there (a new token makes older retry copies
   * stale). One statement (atomic on its own): the upsert, the history event and, for a replayed parked
   * record, its deletion — one round trip on the failure path.
   */
  async moveHead(move: HeadMove): Promise<void> {
    await this.db.query(
      `with up as (
         insert into lifeline_parked_keys (group_id, topic, partition, key, status, head_offset, head_token, head_location, head_topic, head_error_code, head_error_message)
         values ($1, $2, $3, $4, 'parked', $5, $6, $7, $8, $9, $10)
         on conflict (group_id, topic, key) do update set status = 'parked',
           parked_at = case when lifeline_parked_keys.status = 'released' then now() else lifeline_parked_keys.parked_at end, partition = excluded.partition, head_offset = excluded.head_offset,
           head_token = excluded.head_token, head_location = excluded.head_location, head_topic = excluded.head_topic,
           head_error_code = excluded.head_error_code, head_error_message = excluded.head_error_message, updated_at = now(),
           release_reason = null, released_by = null, released_at = null
         returning (xmax = 0) as inserted
       ),
       gone as (delete from lifeline_parked_records where $11::int8 is not null and id = $11::int8 returning id)
       insert into lifeline_key_events (group_id, topic, key, event, detail)
       select $1, $2, $4, case when up.inserted then 'parked' else 'head-moved' end, $12::jsonb from up`,
      [
        move.group, move.topic, move.partition, move.key, move.headOffset, move.token, move.location, move.headTopic, move.errorCode, move.errorMessage.slice(0, 2000),
        move.fromParkedRecord ?? null,
        JSON.stringify({ offset: move.headOffset, location: move.location, topic: move.headTopic, errorCode: move.errorCode }),
      ],
    )
  }

  /** Stores a record behind its parked key; idempotent on its source offset (a redelivery adds nothing). */
  async addFollower(r: FollowerRecord): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `insert into lifeline_parked_records (group_id, topic, partition, key, "offset", seq, value, headers, "timestamp")
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict do nothing`,
      [r.group, r.topic, r.partition, r.key, r.offset, r.seq ?? null, r.value, encodeHeaders(r.headers), r.timestamp],
    )
    return rowCount > 0
  }

  /** Whether `token` is the key's current head (a retry-tier record with an older token is stale). */
  async isHead(group: string, topic: string, key: Buffer, token: string): Promise<boolean> {
    const { rows } = await this.db.query("select 1 from lifeline_parked_keys where group_id = $1 and topic = $2 and key = $3 and head_token = $4 and status = 'parked'", [group, topic, key, token])
    return rows.length > 0
  }

  /** The head with `token` succeeded in a retry tier: release the key. Returns its partition, or undefined if stale. */
  async headSucceeded(group: string, topic: string, key: Buffer, token: string): Promise<number | undefined> {
    const { rows } = await this.db.query<{ partition: number }>(
      `with up as (
         update lifeline_parked_keys set status = 'released', release_reason = 'head-succeeded', released_by = 'runtime', released_at = now(), updated_at = now()
         where group_id = $1 and topic = $2 and key = $3 and head_token = $4 and status = 'parked' returning partition
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail, actor) select $1, $2, $3, 'released', '{"reason":"head-succeeded"}', 'runtime' from up)
       select partition from up`,
      [group, topic, key, token],
    )
    return rows.length === 0 ? undefined : Number(rows[0]!.partition)
  }

  /** Released keys of these partitions, waiting for their owner to replay their records. */
  async releasedKeys(group: string, topic: string, partitions: readonly number[]): Promise<Array<{ partition: number; key: Buffer }>> {
    if (partitions.length === 0) return []
    const { rows } = await this.db.query(
      "select partition, key from lifeline_parked_keys where group_id = $1 and topic = $2 and status = 'released' and partition = any($3::int[]) order by released_at",
      [group, topic, `{${partitions.join(',')}}`],
    )
    return rows.map((r) => ({ partition: Number(r.partition), key: r.key as Buffer }))
  }

  async records(group: string, topic: string, key: Buffer, limit: number, afterId?: string): Promise<ParkedRecord[]> {
    const { rows } = await this.db.query(
      `select id, topic, partition, key, "offset", seq, value, headers, "timestamp", parked_at from lifeline_parked_records
       where group_id = $1 and topic = $2 and key = $3 and id > $4 order by id limit $5`,
      [group, topic, key, afterId ?? '0', limit],
    )
    return rows.map(toParkedRecord)
  }

  async deleteRecord(id: string): Promise<void> {
    await this.db.query('delete from lifeline_parked_records where id = $1', [id])
  }

  /** Forgets a released key once nothing is parked behind it; false if records remain (replay them first). */
  async finishRelease(group: string, topic: string, key: Buffer): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query('select 1 from lifeline_parked_records where group_id = $1 and topic = $2 and key = $3 limit 1', [group, topic, key])
      if (rows.length > 0) return false
      const { rowCount } = await tx.query("delete from lifeline_parked_keys where group_id = $1 and topic = $2 and key = $3 and status = 'released'", [group, topic, key])
      if (rowCount > 0) await event(tx, group, topic, key, 'drained', {}, 'runtime')
      return true
    })
  }

  /** Upserts the last handled sequence of keys (never moves one back). */
  async saveSequences(group: string, topic: string, partition: number, entries: ReadonlyArray<readonly [key: Buffer, seq: number]>): Promise<void> {
    if (entries.length === 0) return
    await this.db.query(
      `insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq)
       select $1, $2, $3, decode(k, 'hex'), s from unnest($4::text[], $5::int8[]) as t(k, s)
       on conflict (group_id, topic, key) do update set last_seq = greatest(lifeline_key_sequences.last_seq, excluded.last_seq), partition = excluded.partition, updated_at = now()`,
      [group, topic, partition, `{${entries.map(([k]) => `"${k.toString('hex')}"`).join(',')}}`, `{${entries.map(([, s]) => String(s)).join(',')}}`],
    )
  }

  async recordEvent(group: string, topic: string, key: Buffer, name: string, detail: Record<string, unknown>, actor?: string): Promise<void> {
    await event(this.db, group, topic, key, name, detail, actor)
  }

  // ---- operators -------------------------------------------------------------------------------------
  async list(filter: ParkedKeyFilter = {}): Promise<ParkedKey[]> {
    const limit = listLimit(filter.limit)
    if (filter.status !== undefined && filter.status !== 'parked' && filter.status !== 'released') throw new LifelineError('LL_ARGUMENT_INVALID', `status must be parked or released, got ${JSON.stringify(filter.status)}`)
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
    const records = await this.records(group, topic, key, limit)
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
        `update lifeline_parked_keys set status = 'released', release_reason = $4, released_by = $5, released_at = now(), updated_at = now()
         where group_id = $1 and topic = $2 and key = $3 and status = 'parked' and ($6::int8 is null or head_offset = $6) returning *`,
        [request.group, request.topic, key, request.reason, request.actor, request.expectHeadOffset ?? null],
      )
      if (rows.length === 0) {
        throw new LifelineError('LL_KEY_NOT_PARKED', `key ${JSON.stringify(keyText(key) ?? key.toString('hex'))} of ${request.topic} in group ${request.group} is not parked${request.expectHeadOffset === undefined ? '' : ` behind offset ${request.expectHeadOffset}`}`, {
          details: { group: request.group, topic: request.topic },
        })
      }
      // A head still in a retry tier is given up: its copy is skipped as stale when it comes due.
      const given = rows[0]!
      await event(tx, request.group, request.topic, key, 'released', { reason: request.reason, headOffset: Number(given.head_offset), headLocation: given.head_location }, request.actor)
      const count = await tx.query('select count(*) as n from lifeline_parked_records where group_id = $1 and topic = $2 and key = $3', [request.group, request.topic, key])
      return toParkedKey({ ...rows[0]!, records: count.rows[0]!.n })
    })
  }
}

/** The operator API over `db` (migrate it first: {@link migrateLifeline}). */
export function createParkedKeys(db: SqlExecutor): ParkedKeys {
  return new OrderingStore(db)
}
