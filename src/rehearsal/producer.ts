/**
 * The rehearsal's producers: they send the workload's plan on time (producer `a`, and `b` for the
 * out-of-order sends), record every attempt as ok / failed / unknown, and send again what was not
 * acknowledged — as a real producer retries — so every event is eventually in the log.
 *
 * A delivery error is `unknown` (the broker may have written the record: a timeout never means lost);
 * only errors that say nothing was written (unknown topic, record too large) are `failed`.
 *
 * @module
 */
import { createHash } from 'node:crypto'
import { createProducer } from '../kafka/index.js'
import type { KafkaProducer } from '../kafka/types.js'
import { isLifelineError } from '../errors.js'
import { delayFor, exponential } from '../retry/backoff.js'
import type { ProduceEntry } from './history.js'
import { EVENT_ID_HEADER, eventValue, type PlannedSend, type Workload } from './workload.js'

/** librdkafka codes that mean nothing was written: unknown topic/partition, message too large, invalid. */
const DEFINITE_FAILURES = new Set<unknown>([3, -188, -190, 10, 2])

export interface ProducerRun {
  readonly log: ProduceEntry[]
  /** Sends acknowledged so far. */
  readonly acked: number
  /** Sends not acknowledged yet (in flight or waiting to be retried). */
  readonly outstanding: number
  /** Resolves when every planned send was acknowledged (or `stop()` was called). */
  readonly done: Promise<void>
  stop(): Promise<void>
}

export interface ProducerRunOptions {
  brokers: string[]
  topic: string
  workload: Workload
  /** Scales the plan's times (1 = as planned). */
  startAt: number
  retryDelayMs?: number
  deliveryTimeoutMs?: number
}

export function valueShas(workload: Workload): Map<string, string> {
  return new Map(workload.events.map((e) => [e.id, createHash('sha256').update(eventValue(e)).digest('hex')]))
}

export function runProducers(options: ProducerRunOptions): ProducerRun {
  const timeout = options.deliveryTimeoutMs ?? 20_000
  const producers: Record<'a' | 'b', KafkaProducer> = {
    a: createProducer({ brokers: options.brokers, clientId: 'rehearsal-a', deliveryTimeoutMs: timeout }),
    b: createProducer({ brokers: options.brokers, clientId: 'rehearsal-b', deliveryTimeoutMs: timeout }),
  }
  const log: ProduceEntry[] = []
  let acked = 0
  let outstanding = options.workload.sends.length
  let stopped = false
  const inflight = new Set<Promise<void>>()
  const retryDelayMs = options.retryDelayMs ?? 1000
  const backoff = exponential({ baseMs: retryDelayMs, maxMs: retryDelayMs * 8, jitter: 'none' })
  /** Wakes the planner waiting for a free slot (one waiter at most: the planner). */
  let slot: (() => void) | undefined

  const sendOne = async (s: PlannedSend): Promise<void> => {
    const event = options.workload.byId.get(s.eventId)!
    let failure: ProduceEntry | undefined
    let failures = 0
    for (;;) {
      if (stopped) return
      const at = Date.now()
      try {
        const [ack] = await producers[s.producer].send([{ topic: options.topic, key: event.key, value: eventValue(event), headers: [{ key: EVENT_ID_HEADER, value: Buffer.from(event.id) }] }])
        log.push({ eventId: s.eventId, copy: s.copy, producer: s.producer, at, doneAt: Date.now(), outcome: 'ok', partition: ack!.partition, offset: ack!.offset })
        acked++
        outstanding--
        return
      } catch (err) {
        const code = isLifelineError(err) ? (err.details as { nativeCode?: unknown } | undefined)?.nativeCode : undefined
        const outcome = DEFINITE_FAILURES.has(code) ? 'failed' : 'unknown'
        const error = (err as Error).message
        if (failure !== undefined && failure.outcome === outcome && failure.error === error) {
          failure.repeats = (failure.repeats ?? 0) + 1
          failure.doneAt = Date.now()
        } else {
          failure = { eventId: s.eventId, copy: s.copy, producer: s.producer, at, doneAt: Date.now(), outcome, error }
          log.push(failure)
        }
        // Back off while the failures last (up to 8 retry delays), as a real producer's retries do.
        await new Promise((r) => setTimeout(r, delayFor(backoff, ++failures, err)))
      }
    }
  }

  const done = (async () => {
    await Promise.all([producers.a.connect(), producers.b.connect()])
    for (const s of options.workload.sends) {
      const wait = options.startAt + s.atMs - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      if (stopped) break
      const p = sendOne(s).finally(() => {
        inflight.delete(p)
        const wake = slot
        slot = undefined
        wake?.()
      })
      inflight.add(p)
      // Bound memory when the brokers are down: at most 20k sends in flight. Not `Promise.race(inflight)`
      // in a loop: each race adds a reaction to all 20k pending sends, and none is freed while they pend
      // (it filled the harness's 4 GB heap within minutes of a broker-kill-all).
      while (inflight.size > 20_000) await new Promise<void>((resolve) => (slot = resolve))
    }
    await Promise.all(inflight)
  })()

  return {
    log,
    get acked() {
      return acked
    },
    get outstanding() {
      return outstanding
    },
    done,
    async stop() {
      stopped = true
      await Promise.allSettled([...inflight])
      await Promise.allSettled([producers.a.close(), producers.b.close()])
    },
  }
}
