/**
 * Group commit of the protocol's hot statements, per partition: the head moves, the "placed" marks and the
 * retry-tier head checks that a partition's records issue while one statement of the same kind is in flight
 * (or within one turn of the event loop) go to the database together, as one multi-row statement, instead
 * of one statement — one socket write, one plan, one commit, one share lock on the fence — each.
 *
 * Nothing of the protocol changes (docs/ordering.md, "The protocol"): each row is still its own
 * compare-and-set with its own result, the batch is fenced by the partition's epoch as a whole, and a record
 * waits for its own row's result before it goes on (state written before the produce it describes). A
 * batched write is one crash point for its batch: `park.after-state` and `park.after-placed` fire once,
 * right after the statement that wrote the batch (docs/crash-points.md). A batch that fails rejects every
 * record in it; each one retries on its own (fencedWrite), and the retries batch again.
 *
 * @module
 */
import type { HeadMove, WriteResult } from '../../ordering/protocol-store.js'
import { crashPoint } from '../../util/crash-points.js'
import { schedulingKey } from '../key-scheduler.js'
import type { ConsumerContext, PartitionState } from './context.js'

/** Rows per statement at most; with the copies' bytes (below) it bounds a statement's size. */
const MAX_ROWS = 200
const MAX_BYTES = 4 * 1024 * 1024

interface Waiter<I, O> {
  row: I
  key: string
  bytes: number
  resolve: (out: O) => void
  reject: (err: unknown) => void
}

/**
 * One kind of statement of one partition: rows queue while a statement of this kind is in flight and go
 * in the next one. A batch holds one row per key (a key's transitions stay in order, one statement each).
 */
export class Coalescer<I, O> {
  #queue: Array<Waiter<I, O>> = []
  #busy = false
  #scheduled = false

  constructor(
    private readonly run: (rows: I[]) => Promise<O[]>,
    private readonly keyOf: (row: I) => string,
    private readonly bytesOf: (row: I) => number = () => 0,
  ) {}

  submit(row: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ row, key: this.keyOf(row), bytes: this.bytesOf(row), resolve, reject })
      this.#schedule()
    })
  }

  /** At the end of this turn (so the rows of records finishing together share it), unless one is in flight. */
  #schedule(): void {
    if (this.#busy || this.#scheduled || this.#queue.length === 0) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      void this.#flush()
    })
  }

  async #flush(): Promise<void> {
    if (this.#busy || this.#queue.length === 0) return
    const batch: Array<Waiter<I, O>> = []
    const rest: Array<Waiter<I, O>> = []
    const keys = new Set<string>()
    let bytes = 0
    for (const w of this.#queue) {
      if (batch.length > 0 && (batch.length >= MAX_ROWS || bytes + w.bytes > MAX_BYTES || keys.has(w.key))) rest.push(w)
      else {
        batch.push(w)
        keys.add(w.key)
        bytes += w.bytes
      }
    }
    this.#queue = rest
    this.#busy = true
    try {
      const out = await this.run(batch.map((w) => w.row))
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(out[i]!)
    } catch (err) {
      for (const w of batch) w.reject(err)
    } finally {
      this.#busy = false
      this.#schedule()
    }
  }
}

interface Copy {
  topic: string
  key: Buffer
  token: string
}

interface Batches {
  moves: Coalescer<HeadMove, WriteResult>
  placed: Coalescer<Copy, WriteResult>
  heads: Coalescer<Copy, boolean>
}

const byState = new WeakMap<PartitionState, Batches>()

const keyOf = (r: { topic: string; key: Buffer }) => `${r.topic}\u0000${schedulingKey(r.key)}`

/** The coalescers of `state` (a partition's state object: a re-assignment gets new ones, with its own epoch). */
export function batchesOf(ctx: ConsumerContext, state: PartitionState): Batches {
  let b = byState.get(state)
  if (b) return b
  const store = ctx.store!
  const group = ctx.options.groupId
  const fence = () => ({ topic: state.topic, partition: state.partition, epoch: state.epoch! })
  b = {
    moves: new Coalescer<HeadMove, WriteResult>(
      async (rows) => {
        const out = await store.moveHeads(fence(), group, rows)
        if (out.includes('ok')) crashPoint('park.after-state')
        return out
      },
      keyOf,
      (m) => (m.copy.value?.length ?? 0) + (m.copy.key?.length ?? 0),
    ),
    placed: new Coalescer<Copy, WriteResult>(async (rows) => {
      const out = await store.placedMany(fence(), group, rows)
      if (out.some((r) => r !== 'fenced')) crashPoint('park.after-placed')
      return out
    }, keyOf),
    heads: new Coalescer<Copy, boolean>((rows) => store.areHeads(group, rows), keyOf),
  }
  byState.set(state, b)
  return b
}
