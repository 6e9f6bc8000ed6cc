/**
 * The runtime's side of the ordering state: the fenced, write-ahead park/release protocol
 * (docs/ordering.md, "The protocol"). Operators read and release keys through state-store.ts.
 *
 * Every write is one statement (atomic on its own, one round trip); the hot ones (head moves, "placed" marks,
 * head checks) also come in a multi-row form that the runtime uses to write a partition's rows together
 * (src/runtime/consumer/state-batches.ts), each row its own compare-and-set with its own answer. Every write:
 * - is **fenced**: it names the partition it acts through (a source partition, or a retry-tier partition)
 *   and the epoch its writer took when it was assigned that partition ({@link ProtocolStore.claim}), and
 *   holds a share lock on that epoch's row. A member whose assignment was lost finds a newer epoch and the
 *   write is refused (`'fenced'`); a new owner's claim waits for writes in flight, so what it loads right
 *   after its claim is everything a former owner ever wrote.
 * - is a **compare-and-set** on the key's status and head token: a transition from a state the key is no
 *   longer in changes nothing (`'conflict'`), so a stale copy, a stale poll or a concurrent operator release
 *   can never undo another transition.
 * - is **idempotent** where a retry after a lost answer must not fail: a head move whose new token is
 *   already in place answers `'ok'`.
 *
 * Write-ahead: a head move stores the head's outgoing copy (the retry-tier or DLQ record, exactly as it will
 * be produced) as `pending`; the copy is produced, then marked `placed`. A pending copy whose writer lost its
 * partition is produced again by the partition's next owner ({@link ProtocolStore.claim} returns it). A
 * record leaves the database (a replayed parked record becoming the head) only in the same statement that
 * stores its copy.
 *
 * One file (over ~400 lines) on purpose: it holds every statement of the protocol, each a single SQL
 * statement written around the same `FENCE` clause and compare-and-set, side by side, so a reviewer checks
 * the fence and the expected status and token of every write in one place. What it shares with
 * state-store.ts (row codecs, key events) is already in rows.ts; what is left is that list of statements.
 *
 * @module
 */
import type { KafkaHeader } from '../kafka/types.js'
import { prepared, type SqlExecutor, type SqlResult, type SqlRow } from '../store/executor.js'
import { TableStatistics } from '../store/table-stats.js'
import { decodeHeaders, encodeHeaders, headerPairs, keyEvent, parkedRecords, type ParkedRecord, type ParkStatus } from './rows.js'

/** The partition a write acts through and the epoch its writer took at assignment. */
export interface Fence {
  readonly topic: string
  readonly partition: number
  readonly epoch: number
}

/** ok: done (or already done); fenced: the writer lost the partition; conflict: the key is not in the expected state. */
export type WriteResult = 'ok' | 'fenced' | 'conflict'

/** A head's outgoing copy: the record produced to a retry tier or the DLQ. */
export interface OutgoingCopy {
  topic: string
  partition: number
  key: Buffer | null
  value: Buffer | null
  headers: KafkaHeader[]
  timestamp?: number
  /** For a DLQ copy: the partition's high watermark before it was produced (where a recovery looks for it). */
  from?: number
}

/** A key with ordering state, as its partition's owner keeps it. */
export interface KeyRow {
  key: Buffer
  status: ParkStatus
  /** Source offset of the head (parked, released); -1 for a gap. */
  headOffset: number
  token: string
  headState: 'pending' | 'placed'
  location: string
  /** Records stored behind the key. */
  records: number
  parkedAt: Date
  /** For a gap: the first missing sequence and since when the key waits. */
  gapFrom: number | null
  gapSince: Date | null
}

/**
 * A copy whose writer lost its partition before marking it placed: a head's copy (`key`), or the dead letter
 * of a record that parks no key (`deadLetter`: the record's coordinates).
 */
export interface PendingCopy {
  /** The source topic (a head's key's topic, or the dead-lettered record's topic). */
  topic: string
  key: Buffer | null
  token: string
  /** `retry:N` or `dlq`. */
  location: string
  copy: OutgoingCopy
  deadLetter?: { partition: number; offset: number }
}

export interface ClaimedPartition {
  epoch: number
  /** Keys of this (source) partition with ordering state; empty for a retry-tier partition. */
  keys: KeyRow[]
  /** Last handled sequence of this partition's keys. */
  sequences: Array<{ key: Buffer; lastSeq: number }>
  /** Pending copies written through this partition by an earlier owner. */
  pending: PendingCopy[]
}

export type Expectation = { status: 'none' } | { status: ParkStatus; token: string }

export interface HeadMove {
  /** The key's source topic and partition. */
  topic: string
  partition: number
  key: Buffer
  /** The state the key must be in for the move to happen. */
  expect: Expectation
  /** The new head's token (a new one for every move: copies of earlier heads become stale). */
  token: string
  headOffset: number
  /** `retry:N` or `dlq`. */
  location: string
  errorCode: string
  errorMessage: string
  copy: OutgoingCopy
  /** The head was a record stored behind the key: its row is deleted in the same statement. */
  fromParkedRecord?: string
  /** The head's sequence: it is handled now, saved as the key's last handled sequence. */
  seq?: number
  /** Sequences the move skips past (a gap dead-lettered): recorded for late stragglers. */
  skip?: { from: number; to: number; policy: string }
  /** Key history event (default: `parked`, or `head-moved` when the key was parked already). */
  event?: string
}

export interface StoredRecord {
  topic: string
  partition: number
  key: Buffer
  offset: number
  seq?: number
  value: Buffer | null
  headers: KafkaHeader[]
  timestamp: number
}

/** The fence guard every write starts with: the writer's epoch, share-locked until the statement's transaction ends. */
const FENCE = `fence as (select 1 from lifeline_partition_epochs where group_id = $1 and topic = $2 and partition = $3 and epoch = $4 for share)`

const count = (row: Record<string, unknown> | undefined, column: string): number => Number(row?.[column] ?? 0)

function result(row: Record<string, unknown> | undefined, done: boolean): WriteResult {
  if (count(row, 'fence') === 0) return 'fenced'
  return done ? 'ok' : 'conflict'
}

const SEQ_UPSERT = `on conflict (group_id, topic, key) do update set last_seq = greatest(lifeline_key_sequences.last_seq, excluded.last_seq), partition = excluded.partition, updated_at = now()`

/** The tables the protocol's statements look rows up in by key, and that the runtime fills: analyzed as they fill. */
export const ANALYZED_TABLES = ['lifeline_parked_keys', 'lifeline_parked_records', 'lifeline_dead_letters', 'lifeline_key_sequences'] as const

export interface ProtocolStoreOptions {
  /** An `ANALYZE` of the ordering tables failed (the planner keeps its older statistics; nothing is lost). */
  onAnalyzeError?: (err: unknown) => void
  /** Rows written before the first `ANALYZE` (default `tableStatsDefaults.firstAt`; `Infinity`: never, as a profile's baseline). */
  analyzeFirstAt?: number
}

/**
 * The runtime's reads and fenced writes of the ordering tables. One instance per consumer; its only state is
 * the count of rows it wrote, which keeps the tables' statistics current ({@link TableStatistics}).
 */
export class ProtocolStore {
  /** Analyzes the ordering tables as this store fills them (src/store/table-stats.ts says why). */
  readonly statistics: TableStatistics

  constructor(
    readonly db: SqlExecutor,
    options: ProtocolStoreOptions = {},
  ) {
    this.statistics = new TableStatistics(() => db.query(`analyze ${ANALYZED_TABLES.join(', ')}`), options.onAnalyzeError ?? (() => undefined), options.analyzeFirstAt)
  }

  /** Every statement here is of fixed text and on the protocol's hot path: run as a prepared statement. */
  #query<R extends SqlRow = SqlRow>(text: string, params: readonly unknown[]): Promise<SqlResult<R>> {
    return this.db.query<R>(prepared(text), params)
  }

  /**
   * Takes the partition for `member`: bumps its epoch (refusing every later write of an earlier owner) and,
   * in the same transaction, loads what the new owner needs. `withKeys` for a source partition.
   */
  async claim(group: string, topic: string, partition: number, member: string, withKeys: boolean): Promise<ClaimedPartition> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query(
        `insert into lifeline_partition_epochs (group_id, topic, partition, epoch, member) values ($1, $2, $3, 1, $4)
         on conflict (group_id, topic, partition) do update set epoch = lifeline_partition_epochs.epoch + 1, member = excluded.member, assigned_at = now()
         returning epoch`,
        [group, topic, partition, member],
      )
      const epoch = Number(rows[0]!.epoch)
      const keys = withKeys
        ? (
            await tx.query(
              `select k.key, k.status, k.head_offset, k.head_token, k.head_state, k.head_location, k.parked_at, k.gap_from, k.gap_since,
                 (select count(*) from lifeline_parked_records r where r.group_id = k.group_id and r.topic = k.topic and r.key = k.key) as records
               from lifeline_parked_keys k where k.group_id = $1 and k.topic = $2 and k.partition = $3`,
              [group, topic, partition],
            )
          ).rows.map(toKeyRow)
        : []
      const sequences = withKeys
        ? (await tx.query('select key, last_seq from lifeline_key_sequences where group_id = $1 and topic = $2 and partition = $3', [group, topic, partition])).rows.map((r) => ({ key: r.key as Buffer, lastSeq: Number(r.last_seq) }))
        : []
      const heads = (
        await tx.query(
          `select topic, key, head_token as token, head_location as location, out_topic, out_partition, out_key, out_value, out_headers, out_timestamp, out_from from lifeline_parked_keys
           where group_id = $1 and writer_topic = $2 and writer_partition = $3 and head_state = 'pending'`,
          [group, topic, partition],
        )
      ).rows.map((r): PendingCopy => ({ topic: r.topic as string, key: r.key as Buffer, token: r.token as string, location: r.location as string, copy: copyFrom(r) }))
      const letters = (
        await tx.query(
          `select topic, partition, "offset", token, out_topic, out_partition, out_key, out_value, out_headers, out_timestamp, out_from from lifeline_dead_letters
           where group_id = $1 and topic = $2 and partition = $3 and state = 'pending'`,
          [group, topic, partition],
        )
      ).rows.map((r): PendingCopy => ({ topic: r.topic as string, key: null, token: r.token as string, location: 'dlq', copy: copyFrom(r), deadLetter: { partition: Number(r.partition), offset: Number(r.offset) } }))
      return { epoch, keys, sequences, pending: [...heads, ...letters] }
    })
  }

  /**
   * Parks the key behind a head, or moves its head (compare-and-set on `move.expect`), storing the head's
   * outgoing copy as pending. One statement: the key row, the deletion of a replayed parked record that
   * became the head, the head's sequence, a skipped range and the history event.
   */
  async moveHead(fence: Fence, group: string, move: HeadMove): Promise<WriteResult> {
    return (await this.moveHeads(fence, group, [move]))[0]!
  }

  /**
   * {@link ProtocolStore.moveHead} for several keys at once, through one fence, in one statement (the runtime
   * batches the head moves of a partition issued while one is in flight). Each move is its own
   * compare-and-set and gets its own result, in order; the fence holds or refuses them all. At most one move
   * per key (the caller's batches never hold two).
   */
  async moveHeads(fence: Fence, group: string, moves: readonly HeadMove[]): Promise<WriteResult[]> {
    const rows = moves.map((move, i) => {
      const c = move.copy
      return {
        i, topic: move.topic, partition: move.partition, key: move.key.toString('base64'), head_offset: move.headOffset, token: move.token, location: move.location,
        error_code: move.errorCode, error_message: move.errorMessage.slice(0, 2000),
        out_topic: c.topic, out_partition: c.partition, out_key: c.key?.toString('base64') ?? null, out_value: c.value?.toString('base64') ?? null, out_headers: headerPairs(c.headers),
        out_timestamp: c.timestamp ?? null, out_from: c.from ?? null,
        expect_status: move.expect.status === 'none' ? null : move.expect.status, expect_token: move.expect.status === 'none' ? null : move.expect.token,
        parked_id: move.fromParkedRecord ?? null, seq: move.seq ?? null, skip_from: move.skip?.from ?? null, skip_to: move.skip?.to ?? null, skip_policy: move.skip?.policy ?? null,
        event: move.event ?? (move.expect.status === 'parked' || move.expect.status === 'released' ? 'head-moved' : 'parked'),
        detail: { offset: move.headOffset, location: move.location, topic: c.topic, errorCode: move.errorCode, ...(move.skip ? { skipped: [move.skip.from, move.skip.to] } : {}) },
      }
    })
    const { rows: out } = await this.#query(
      `with ${FENCE},
       m as (
         select t.*, decode(t.key, 'base64') as k from jsonb_to_recordset($5::jsonb) as t(i int, topic text, partition int, key text, head_offset int8, token text, location text,
           error_code text, error_message text, out_topic text, out_partition int, out_key text, out_value text, out_headers jsonb, out_timestamp int8, out_from int8,
           expect_status text, expect_token text, parked_id int8, seq int8, skip_from int8, skip_to int8, skip_policy text, event text, detail jsonb)
       ),
       cur as (select m.i, p.head_token from m join lifeline_parked_keys p on p.group_id = $1 and p.topic = m.topic and p.key = m.k),
       ins as (
         insert into lifeline_parked_keys (group_id, topic, partition, key, status, head_offset, head_token, head_location, head_topic, head_error_code, head_error_message,
           head_state, out_topic, out_partition, out_key, out_value, out_headers, out_timestamp, out_from, writer_topic, writer_partition, writer_epoch)
         select $1, m.topic, m.partition, m.k, 'parked', m.head_offset, m.token, m.location, m.out_topic, m.error_code, m.error_message, 'pending',
           m.out_topic, m.out_partition, decode(m.out_key, 'base64'), decode(m.out_value, 'base64'), m.out_headers, m.out_timestamp, m.out_from, $2, $3, $4
         from m where m.expect_status is null and exists (select 1 from fence)
         on conflict (group_id, topic, key) do nothing
         returning topic, key
       ),
       upd as (
         update lifeline_parked_keys p set status = 'parked', parked_at = case when p.status = 'parked' then p.parked_at else now() end, partition = m.partition,
           head_offset = m.head_offset, head_token = m.token, head_location = m.location, head_topic = m.out_topic, head_error_code = m.error_code, head_error_message = m.error_message,
           head_state = 'pending', out_topic = m.out_topic, out_partition = m.out_partition, out_key = decode(m.out_key, 'base64'), out_value = decode(m.out_value, 'base64'),
           out_headers = m.out_headers, out_timestamp = m.out_timestamp, out_from = m.out_from,
           writer_topic = $2, writer_partition = $3, writer_epoch = $4, gap_from = null, gap_since = null,
           release_reason = null, released_by = null, released_at = null, updated_at = now()
         from m
         where p.group_id = $1 and p.topic = m.topic and p.key = m.k and m.expect_status is not null and p.status = m.expect_status and p.head_token = m.expect_token and exists (select 1 from fence)
         returning p.topic, p.key
       ),
       moved as (select m.* from m where exists (select 1 from ins where ins.topic = m.topic and ins.key = m.k) or exists (select 1 from upd where upd.topic = m.topic and upd.key = m.k)),
       gone as (delete from lifeline_parked_records r using moved where moved.parked_id is not null and r.id = moved.parked_id and r.group_id = $1 and r.topic = moved.topic and r.key = moved.k returning r.id),
       seq as (
         insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq) select $1, moved.topic, moved.partition, moved.k, moved.seq
         from moved where moved.seq is not null ${SEQ_UPSERT} returning 1
       ),
       skipped as (
         insert into lifeline_sequence_skips (group_id, topic, key, from_seq, to_seq, policy) select $1, moved.topic, moved.k, moved.skip_from, moved.skip_to, moved.skip_policy
         from moved where moved.skip_from is not null on conflict do nothing returning 1
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail) select $1, moved.topic, moved.k, moved.event, moved.detail from moved)
       select m.i, (select count(*) from fence) as fence, exists (select 1 from moved where moved.i = m.i) as moved, (select cur.head_token from cur where cur.i = m.i) as current from m`,
      [group, fence.topic, fence.partition, fence.epoch, JSON.stringify(rows)],
    )
    const results: WriteResult[] = moves.map(() => 'fenced')
    // A retry whose first try committed (its answer lost) finds its own token in place.
    for (const row of out) results[Number(row.i)] = result(row, row.moved === true || row.current === moves[Number(row.i)]!.token)
    this.statistics.wrote(moves.length)
    return results
  }

  /** The head's copy was acknowledged: pending → placed (its stored copy is dropped, only where it went is kept). */
  async placed(fence: Fence, group: string, topic: string, key: Buffer, token: string): Promise<WriteResult> {
    return (await this.placedMany(fence, group, [{ topic, key, token }]))[0]!
  }

  /** {@link ProtocolStore.placed} for several heads' copies at once, through one fence, in one statement; a result per copy, in order. */
  async placedMany(fence: Fence, group: string, copies: ReadonlyArray<{ topic: string; key: Buffer; token: string }>): Promise<WriteResult[]> {
    const { rows } = await this.#query(
      `with ${FENCE},
       m as (select t.i, t.topic, decode(t.key, 'base64') as k, t.token from jsonb_to_recordset($5::jsonb) as t(i int, topic text, key text, token text)),
       up as (
         update lifeline_parked_keys p set head_state = 'placed', out_key = null, out_value = null, out_headers = null, updated_at = now()
         from m where p.group_id = $1 and p.topic = m.topic and p.key = m.k and p.head_token = m.token and exists (select 1 from fence) returning m.i
       )
       select m.i, (select count(*) from fence) as fence, exists (select 1 from up where up.i = m.i) as n from m`,
      [group, fence.topic, fence.partition, fence.epoch, JSON.stringify(copies.map((c, i) => ({ i, topic: c.topic, key: c.key.toString('base64'), token: c.token })))],
    )
    const results: WriteResult[] = copies.map(() => 'fenced')
    for (const row of rows) results[Number(row.i)] = result(row, row.n === true)
    return results
  }

  /**
   * Stores a record behind its key (parked, released or gap); with `openGap` the key becomes a gap key
   * first when it has no state. 'exists': already stored (a redelivery of its offset); 'duplicate': a record
   * with its sequence is already stored (a duplicate at another offset); 'conflict': the key has no state.
   */
  async store(fence: Fence, group: string, r: StoredRecord, openGap?: { from: number; token: string }): Promise<'stored' | 'exists' | 'duplicate' | 'fenced' | 'conflict'> {
    const { rows } = await this.#query(
      `with ${FENCE},
       keyrow as (select 1 from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $7),
       gap as (
         insert into lifeline_parked_keys (group_id, topic, partition, key, status, head_offset, head_token, head_location, gap_from, gap_since, writer_topic, writer_partition, writer_epoch)
         select $1, $5, $6, $7, 'gap', -1, $14, 'gap', $13::int8, now(), $2, $3, $4
         where $13::int8 is not null and exists (select 1 from fence) and not exists (select 1 from keyrow)
         on conflict (group_id, topic, key) do nothing returning 1 as n
       ),
       twin as (select 1 from lifeline_parked_records where $9::int8 is not null and group_id = $1 and topic = $5 and key = $7 and seq = $9::int8 and not (partition = $6 and "offset" = $8) limit 1),
       ins as (
         insert into lifeline_parked_records (group_id, topic, partition, key, "offset", seq, value, headers, "timestamp")
         select $1, $5, $6, $7, $8, $9, $10, $11::jsonb, $12
         where exists (select 1 from fence) and (exists (select 1 from keyrow) or exists (select 1 from gap)) and not exists (select 1 from twin)
         on conflict do nothing returning 1 as n
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail) select $1, $5, $7, 'gap-opened', $15::jsonb from gap)
       select (select count(*) from fence) as fence, (select count(*) from keyrow) + (select count(*) from gap) as keyed, (select count(*) from ins) as stored, (select count(*) from twin) as twin`,
      [
        group, fence.topic, fence.partition, fence.epoch,
        r.topic, r.partition, r.key, r.offset, r.seq ?? null, r.value, encodeHeaders(r.headers), r.timestamp,
        openGap?.from ?? null, openGap?.token ?? null, JSON.stringify({ missing: openGap?.from, offset: r.offset, seq: r.seq }),
      ],
    )
    const row = rows[0]
    if (count(row, 'fence') === 0) return 'fenced'
    if (count(row, 'keyed') === 0) return 'conflict'
    if (count(row, 'twin') > 0) return 'duplicate'
    if (count(row, 'stored') === 0) return 'exists'
    this.statistics.wrote(1)
    return 'stored'
  }

  /**
   * The head with `token` succeeded (in a retry tier, or redriven to its origin): parked → released.
   * Returns the key's source partition; 'stale' when `token` is not the key's parked head (already released
   * by this token answers with the partition again: a retry after a lost answer).
   */
  async releaseHead(fence: Fence, group: string, topic: string, key: Buffer, token: string, reason: string): Promise<{ partition: number } | 'stale' | 'fenced'> {
    const { rows } = await this.#query(
      `with ${FENCE},
       cur as (select status, head_token, partition from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $6),
       up as (
         update lifeline_parked_keys set status = 'released', head_state = 'placed', release_reason = $8, released_by = 'runtime', released_at = now(), updated_at = now()
         where group_id = $1 and topic = $5 and key = $6 and status = 'parked' and head_token = $7 and exists (select 1 from fence) returning partition
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail, actor) select $1, $5, $6, 'released', jsonb_build_object('reason', $8::text), 'runtime' from up)
       select (select count(*) from fence) as fence, (select partition from up) as released, (select status from cur) as status, (select head_token from cur) as token, (select partition from cur) as partition`,
      [group, fence.topic, fence.partition, fence.epoch, topic, key, token, reason],
    )
    const row = rows[0]
    if (count(row, 'fence') === 0) return 'fenced'
    if (row?.released !== null && row?.released !== undefined) return { partition: Number(row.released) }
    if (row?.status === 'released' && row.token === token) return { partition: Number(row.partition) }
    return 'stale'
  }

  /**
   * A record stored behind a released key was replayed (or skipped as a duplicate): its row is deleted, and
   * its sequence saved as the key's last handled one. Conflict when the key is no longer released by `releaseToken`.
   */
  async replayed(fence: Fence, group: string, p: { topic: string; partition: number; key: Buffer; id: string; releaseToken: string; seq?: number }): Promise<WriteResult> {
    const { rows } = await this.#query(
      `with ${FENCE},
       k as (select 1 from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $7 and status = 'released' and head_token = $8),
       del as (delete from lifeline_parked_records where id = $9::int8 and group_id = $1 and topic = $5 and key = $7 and exists (select 1 from fence) and exists (select 1 from k) returning 1),
       seq as (
         insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq) select $1, $5, $6, $7, $10::int8
         where $10::int8 is not null and exists (select 1 from fence) and exists (select 1 from k) ${SEQ_UPSERT} returning 1
       )
       select (select count(*) from fence) as fence, (select count(*) from k) as k`,
      [group, fence.topic, fence.partition, fence.epoch, p.topic, p.partition, p.key, p.releaseToken, p.id, p.seq ?? null],
    )
    return result(rows[0], count(rows[0], 'k') > 0)
  }

  /** Records stored behind a key, in replay order (sequence, then arrival). */
  records(group: string, topic: string, key: Buffer, limit: number): Promise<ParkedRecord[]> {
    return parkedRecords(this.db, group, topic, key, limit)
  }

  /**
   * Forgets a released key once nothing is stored behind it. 'records-left': replay them first; 'conflict':
   * the key is no longer released by `releaseToken`.
   */
  async finishRelease(fence: Fence, group: string, topic: string, key: Buffer, releaseToken: string): Promise<'done' | 'records-left' | 'fenced' | 'conflict'> {
    const { rows } = await this.#query(
      `with ${FENCE},
       k as (select 1 from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $6 and status = 'released' and head_token = $7),
       rest as (select 1 from lifeline_parked_records where group_id = $1 and topic = $5 and key = $6 limit 1),
       del as (
         delete from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $6 and status = 'released' and head_token = $7
           and exists (select 1 from fence) and not exists (select 1 from rest) returning 1
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail, actor) select $1, $5, $6, 'drained', '{}', 'runtime' from del)
       select (select count(*) from fence) as fence, (select count(*) from k) as k, (select count(*) from rest) as rest, (select count(*) from del) as deleted`,
      [group, fence.topic, fence.partition, fence.epoch, topic, key, releaseToken],
    )
    const row = rows[0]
    if (count(row, 'fence') === 0) return 'fenced'
    if (count(row, 'deleted') > 0) return 'done'
    if (count(row, 'k') === 0) return 'conflict'
    return count(row, 'rest') > 0 ? 'records-left' : 'conflict'
  }

  /** A replay found a gap: released → gap, waiting for `from` (a new token: the release is over). */
  async reopenGap(fence: Fence, group: string, topic: string, key: Buffer, releaseToken: string, token: string, from: number): Promise<WriteResult> {
    const { rows } = await this.#query(
      `with ${FENCE},
       cur as (select head_token from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $6),
       up as (
         update lifeline_parked_keys set status = 'gap', head_offset = -1, head_token = $8, head_location = 'gap', head_state = 'placed', gap_from = $9, gap_since = now(), updated_at = now()
         where group_id = $1 and topic = $5 and key = $6 and status = 'released' and head_token = $7 and exists (select 1 from fence) returning 1
       ),
       ev as (insert into lifeline_key_events (group_id, topic, key, event, detail) select $1, $5, $6, 'gap-opened', jsonb_build_object('missing', $9::int8) from up)
       select (select count(*) from fence) as fence, (select count(*) from up) as n, (select head_token from cur) as current`,
      [group, fence.topic, fence.partition, fence.epoch, topic, key, releaseToken, token, from],
    )
    return result(rows[0], count(rows[0], 'n') > 0 || rows[0]?.current === token)
  }

  /**
   * The missing sequence of a gap key was handled (or the gap is skipped by policy `skip`): gap → released,
   * keeping the token, so the owner replays what waits. With `skip` the range up to the first stored
   * sequence is recorded as skipped and saved as handled. Returns the first stored sequence (null when none).
   */
  async closeGap(fence: Fence, group: string, p: { topic: string; partition: number; key: Buffer; token: string; skip?: string }): Promise<{ firstStored: number | null } | 'fenced' | 'conflict'> {
    const { rows } = await this.#query(
      `with ${FENCE},
       k as (select gap_from from lifeline_parked_keys where group_id = $1 and topic = $5 and key = $7 and status = 'gap' and head_token = $8),
       first as (select min(seq) as seq from lifeline_parked_records where group_id = $1 and topic = $5 and key = $7),
       up as (
         update lifeline_parked_keys set status = 'released', gap_from = null, gap_since = null, release_reason = coalesce($9, 'gap-filled'), released_by = 'runtime', released_at = now(), updated_at = now()
         where group_id = $1 and topic = $5 and key = $7 and status = 'gap' and head_token = $8 and exists (select 1 from fence) returning 1
       ),
       skipped as (
         insert into lifeline_sequence_skips (group_id, topic, key, from_seq, to_seq, policy)
         select $1, $5, $7, k.gap_from, first.seq - 1, $9 from k, first
         where $9::text is not null and exists (select 1 from up) and first.seq is not null and first.seq > k.gap_from on conflict do nothing returning 1
       ),
       seq as (
         insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq) select $1, $5, $6, $7, first.seq - 1 from first
         where $9::text is not null and exists (select 1 from up) and first.seq is not null ${SEQ_UPSERT} returning 1
       ),
       ev as (
         insert into lifeline_key_events (group_id, topic, key, event, detail, actor)
         select $1, $5, $7, case when $9::text is null then 'gap-filled' else 'gap-skipped' end, jsonb_build_object('missing', (select gap_from from k), 'firstStored', (select seq from first)), 'runtime' from up
       )
       select (select count(*) from fence) as fence, (select count(*) from up) as n, (select seq from first) as first`,
      [group, fence.topic, fence.partition, fence.epoch, p.topic, p.partition, p.key, p.token, p.skip ?? null],
    )
    const row = rows[0]
    if (count(row, 'fence') === 0) return 'fenced'
    // From what the statement changed, not from its snapshot: a release that won the row's lock changed it first.
    if (count(row, 'n') === 0) return 'conflict'
    return { firstStored: row?.first === null || row?.first === undefined ? null : Number(row.first) }
  }

  /**
   * Writes ahead the dead letter of a record that parks no key. 'started': produce it, then
   * {@link ProtocolStore.deadLetterPlaced}; 'placed': it was dead-lettered already (a redelivery); a pending
   * row (a former owner's, never completed) comes back to be completed with its own token and copy.
   */
  async beginDeadLetter(fence: Fence, group: string, at: { topic: string; partition: number; offset: number }, token: string, copy: OutgoingCopy): Promise<'started' | 'placed' | 'fenced' | PendingCopy> {
    const { rows } = await this.#query(
      `with ${FENCE},
       cur as (select state, token, out_topic, out_partition, out_key, out_value, out_headers, out_timestamp, out_from from lifeline_dead_letters where group_id = $1 and topic = $5 and partition = $6 and "offset" = $7),
       ins as (
         insert into lifeline_dead_letters (group_id, topic, partition, "offset", token, state, out_topic, out_partition, out_key, out_value, out_headers, out_timestamp, out_from, epoch)
         select $1, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13::jsonb, $14, $15::int8, $4 where exists (select 1 from fence)
         on conflict do nothing returning 1 as n
       )
       select (select count(*) from fence) as fence, (select count(*) from ins) as started, cur.* from (select 1) one left join cur on true`,
      [group, fence.topic, fence.partition, fence.epoch, at.topic, at.partition, at.offset, token, copy.topic, copy.partition, copy.key, copy.value, encodeHeaders(copy.headers), copy.timestamp ?? null, copy.from ?? null],
    )
    const row = rows[0]
    if (count(row, 'fence') === 0) return 'fenced'
    const started = count(row, 'started') > 0
    if (started) this.statistics.wrote(1)
    if (started || row?.token === token) return 'started'
    if (row?.state === 'placed') return 'placed'
    return { topic: at.topic, key: null, token: row!.token as string, location: 'dlq', copy: copyFrom(row!), deadLetter: { partition: at.partition, offset: at.offset } }
  }

  /** The dead letter was acknowledged (and its hook ran): pending → placed, its stored copy dropped. */
  async deadLetterPlaced(fence: Fence, group: string, at: { topic: string; partition: number; offset: number }, token: string): Promise<WriteResult> {
    const { rows } = await this.#query(
      `with ${FENCE},
       up as (
         update lifeline_dead_letters set state = 'placed', out_key = null, out_value = null, out_headers = null
         where group_id = $1 and topic = $5 and partition = $6 and "offset" = $7 and token = $8 and exists (select 1 from fence) returning 1
       )
       select (select count(*) from fence) as fence, (select count(*) from up) as n`,
      [group, fence.topic, fence.partition, fence.epoch, at.topic, at.partition, at.offset, token],
    )
    return result(rows[0], count(rows[0], 'n') > 0)
  }

  /** Whether the key's parked head has `token` (a retry-tier copy or a redriven head with another token is stale). */
  async isHead(group: string, topic: string, key: Buffer, token: string): Promise<boolean> {
    return (await this.areHeads(group, [{ topic, key, token }]))[0]!
  }

  /** {@link ProtocolStore.isHead} for several copies at once, in one statement; an answer per copy, in order. */
  async areHeads(group: string, copies: ReadonlyArray<{ topic: string; key: Buffer; token: string }>): Promise<boolean[]> {
    const { rows } = await this.#query(
      `select t.i from jsonb_to_recordset($2::jsonb) as t(i int, topic text, key text, token text)
       join lifeline_parked_keys p on p.group_id = $1 and p.topic = t.topic and p.key = decode(t.key, 'base64') and p.head_token = t.token and p.status = 'parked'`,
      [group, JSON.stringify(copies.map((c, i) => ({ i, topic: c.topic, key: c.key.toString('base64'), token: c.token })))],
    )
    const heads = copies.map(() => false)
    for (const row of rows) heads[Number(row.i)] = true
    return heads
  }

  /** The key's current state (for a write that found the key in another state than its owner thought). */
  async keyRow(group: string, topic: string, key: Buffer): Promise<KeyRow | undefined> {
    const { rows } = await this.#query(
      `select k.key, k.status, k.head_offset, k.head_token, k.head_state, k.head_location, k.parked_at, k.gap_from, k.gap_since,
         (select count(*) from lifeline_parked_records r where r.group_id = k.group_id and r.topic = k.topic and r.key = k.key) as records
       from lifeline_parked_keys k where k.group_id = $1 and k.topic = $2 and k.key = $3`,
      [group, topic, key],
    )
    return rows[0] === undefined ? undefined : toKeyRow(rows[0])
  }

  /** Released keys of these partitions (and the token of their release), waiting for their owner to replay them. */
  async releasedKeys(group: string, topic: string, partitions: readonly number[]): Promise<Array<{ partition: number; key: Buffer; token: string }>> {
    if (partitions.length === 0) return []
    const { rows } = await this.#query(
      "select partition, key, head_token from lifeline_parked_keys where group_id = $1 and topic = $2 and status = 'released' and partition = any($3::int[]) order by released_at",
      [group, topic, `{${partitions.join(',')}}`],
    )
    return rows.map((r) => ({ partition: Number(r.partition), key: r.key as Buffer, token: r.head_token as string }))
  }

  /** Whether `seq` of the key was skipped by a gap policy (so its late arrival is a straggler, not a duplicate). */
  async isSkipped(group: string, topic: string, key: Buffer, seq: number): Promise<boolean> {
    const { rows } = await this.#query('select 1 from lifeline_sequence_skips where group_id = $1 and topic = $2 and key = $3 and from_seq <= $4 and to_seq >= $4 limit 1', [group, topic, key, seq])
    return rows.length > 0
  }

  /** Upserts the last handled sequence of keys (never moves one back). Fenced like every runtime write. */
  async saveSequences(fence: Fence, group: string, topic: string, partition: number, entries: ReadonlyArray<readonly [key: Buffer, seq: number]>): Promise<WriteResult> {
    if (entries.length === 0) return 'ok'
    const { rows } = await this.#query(
      `with ${FENCE},
       up as (
         insert into lifeline_key_sequences (group_id, topic, partition, key, last_seq)
         select $1, $5, $6, decode(k, 'hex'), s from unnest($7::text[], $8::int8[]) as t(k, s) where exists (select 1 from fence) ${SEQ_UPSERT} returning 1
       )
       select (select count(*) from fence) as fence`,
      [group, fence.topic, fence.partition, fence.epoch, topic, partition, `{${entries.map(([k]) => `"${k.toString('hex')}"`).join(',')}}`, `{${entries.map(([, s]) => String(s)).join(',')}}`],
    )
    this.statistics.wrote(entries.length)
    return result(rows[0], true)
  }

  async recordEvent(group: string, topic: string, key: Buffer, name: string, detail: Record<string, unknown>, actor?: string): Promise<void> {
    await keyEvent(this.db, group, topic, key, name, detail, actor)
  }
}

function copyFrom(r: Record<string, unknown>): OutgoingCopy {
  return {
    topic: r.out_topic as string,
    partition: Number(r.out_partition),
    key: (r.out_key as Buffer | null) ?? null,
    value: (r.out_value as Buffer | null) ?? null,
    headers: r.out_headers === null || r.out_headers === undefined ? [] : decodeHeaders(r.out_headers),
    ...(r.out_timestamp === null || r.out_timestamp === undefined ? {} : { timestamp: Number(r.out_timestamp) }),
    ...(r.out_from === null || r.out_from === undefined ? {} : { from: Number(r.out_from) }),
  }
}

function toKeyRow(r: Record<string, unknown>): KeyRow {
  return {
    key: r.key as Buffer,
    status: r.status as ParkStatus,
    headOffset: Number(r.head_offset),
    token: r.head_token as string,
    headState: r.head_state as 'pending' | 'placed',
    location: r.head_location as string,
    records: Number(r.records),
    parkedAt: r.parked_at as Date,
    gapFrom: r.gap_from === null || r.gap_from === undefined ? null : Number(r.gap_from),
    gapSince: (r.gap_since as Date | null) ?? null,
  }
}
