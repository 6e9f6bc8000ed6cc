/**
 * The contract between `lifeline rehearse` and a consumer under rehearsal (docs/rehearsal.md).
 *
 * A consumer module exports (as `default` or `createRehearsalConsumer`) a function that receives a
 * {@link RehearsalContext} and returns a Lifeline consumer, not started. The harness starts it in a child
 * process per member, subscribes to its events, kills it, pauses it, cuts it off, and closes it with
 * SIGTERM. The module decides everything a real service decides — ordering, concurrency, retries and
 * tiers, the inbox, sequences, delivery mode — and calls `ctx.apply(tx, message)` for the effect, in the
 * transaction that should carry it.
 *
 * @module
 * @example
 * // my-consumer.ts
 * import { createConsumer, createInbox } from 'lifeline'
 * import type { RehearsalContext } from 'lifeline/rehearsal'
 * export default function (ctx: RehearsalContext) {
 *   const inbox = createInbox({ db: ctx.db, consumer: ctx.groupId, handler: (m, { tx }) => ctx.apply(tx, m) })
 *   return createConsumer({ brokers: ctx.brokers, groupId: ctx.groupId, service: ctx.service, topics: [ctx.topic],
 *     state: ctx.db, retryTopics: { delaysMs: ctx.retryDelaysMs }, handler: inbox.handler })
 * }
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { LifelineError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { LifelineConsumer } from '../runtime/consumer.js'
import type { LifelineMessage } from '../runtime/options.js'
import type { SqlExecutor, SqlQueryable } from '../store/executor.js'
import type { RehearsalEvent } from './workload.js'

export interface RehearsalContext {
  brokers: string[]
  groupId: string
  /** The service name (DLQ topic `{service}.{topic}.dlq`, tiers `{service}.{topic}.retry.{n}`). */
  service: string
  /** The rehearsal's source topic (events keyed by `key`, JSON values, event id in the `event-id` header). */
  topic: string
  /** The rehearsal's PostgreSQL database (a pool of this member): for `state`, the inbox and the effects. */
  db: SqlExecutor
  /**
   * The effect of an event: writes it through `tx`, then throws for a poison event (until the operator
   * fixes the cause) and for a transient event's first attempts. Call it once per handler invocation.
   */
  apply(tx: SqlQueryable, message: LifelineMessage<RehearsalEvent>): Promise<void>
  /** The event's sequence within its key (for `sequence.extract`). */
  sequence(message: LifelineMessage<unknown>): number | null
  /** The header that carries the event id (the inbox's default, `event-id`). */
  eventIdHeader: string
  /** Suggested settings, so faults (a SIGSTOP past the session timeout) act within the run. */
  sessionTimeoutMs: number
  commitIntervalMs: number
  retryDelaysMs: number[]
  logger: Logger
}

export type RehearsalConsumerFactory = (ctx: RehearsalContext) => LifelineConsumer | Promise<LifelineConsumer>

/** Imports a consumer module and returns its factory; LL_REHEARSAL when it does not follow the contract. */
export async function loadConsumerFactory(path: string): Promise<RehearsalConsumerFactory> {
  const url = path.startsWith('file:') ? path : pathToFileURL(resolve(path)).href
  let mod: Record<string, unknown>
  try {
    mod = (await import(url)) as Record<string, unknown>
  } catch (err) {
    throw new LifelineError('LL_REHEARSAL', `cannot import the consumer module ${path}: ${(err as Error).message}`, { cause: err })
  }
  const factory = mod.createRehearsalConsumer ?? mod.default
  if (typeof factory !== 'function') {
    throw new LifelineError('LL_REHEARSAL', `the consumer module ${path} must export a function (default export or createRehearsalConsumer) that takes the rehearsal context and returns a Lifeline consumer (docs/rehearsal.md)`)
  }
  return factory as RehearsalConsumerFactory
}

/** Checks what a factory returned looks like a Lifeline consumer (start, close, on). */
export function assertConsumer(value: unknown, path: string): LifelineConsumer {
  const c = value as Partial<LifelineConsumer> | undefined
  if (typeof c?.start !== 'function' || typeof c.close !== 'function' || typeof c.on !== 'function') {
    throw new LifelineError('LL_REHEARSAL', `the consumer module ${path} returned ${c === null ? 'null' : typeof c}, not a Lifeline consumer (createConsumer(...), not started)`)
  }
  return c as LifelineConsumer
}
