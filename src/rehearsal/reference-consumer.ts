/**
 * The built-in consumer `lifeline rehearse` runs when no `--consumer` module is given: the configuration
 * the README recommends for events that must not be lost, applied twice or reordered — key ordering,
 * in-place retries then retry tiers, parked keys and per-key sequences in PostgreSQL, and the inbox
 * for exactly-once effects. It follows the rehearsal contract (see contract.ts), like a user's module.
 *
 * @module
 */
import { createInbox } from '../effects/inbox.js'
import { createConsumer, type LifelineConsumer } from '../runtime/consumer.js'
import type { RehearsalContext } from './contract.js'
import type { RehearsalEvent } from './workload.js'

export default function referenceConsumer(ctx: RehearsalContext): LifelineConsumer {
  const inbox = createInbox<RehearsalEvent>({
    db: ctx.db,
    consumer: ctx.groupId,
    eventId: ctx.eventIdHeader,
    missingId: 'reject',
    handler: (m, { tx }) => ctx.apply(tx, m),
  })
  return createConsumer<RehearsalEvent>({
    brokers: ctx.brokers,
    groupId: ctx.groupId,
    service: ctx.service,
    topics: [ctx.topic],
    ordering: 'key',
    concurrency: 16,
    state: ctx.db,
    retry: { maxAttempts: 2, backoff: { type: 'fixed', ms: 200 } },
    retryTopics: { delaysMs: ctx.retryDelaysMs },
    sequence: { extract: ctx.sequence, firstSequence: 1, policy: 'hold' },
    parking: { pollMs: 500 },
    commitIntervalMs: ctx.commitIntervalMs,
    sessionTimeoutMs: ctx.sessionTimeoutMs,
    drainTimeoutMs: 10_000,
    logger: ctx.logger,
    handler: inbox.handler,
  })
}
