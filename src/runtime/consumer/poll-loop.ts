/**
 * The poll loop: never waits for handlers (so handler time never causes a max.poll.interval eviction);
 * the next batch is fetched (on librdkafka's thread) while this one is dispatched.
 *
 * @module
 */
import type { ConsumedRecord, KafkaConsumer } from '../../kafka/types.js'
import { sleep } from '../../util/sleep.js'
import { reportError } from './events.js'
import { dispatch } from './intake.js'
import type { ConsumerContext } from './context.js'

/** Records per poll: large batches amortise the trip to librdkafka's thread. */
const POLL_MAX = 10_000

export async function pollLoop(ctx: ConsumerContext, consumer: KafkaConsumer, onPoll: () => void): Promise<void> {
  let next: Promise<ConsumedRecord[]> = consumer.poll(POLL_MAX, 100)
  try {
    while (!ctx.stopping.signal.aborted) {
      let records: ConsumedRecord[]
      try {
        records = await next
      } catch (err) {
        if (ctx.stopping.signal.aborted) return
        reportError(ctx, err, 'poll failed; retrying')
        await sleep(500, ctx.stopping.signal).catch(() => undefined)
        next = consumer.poll(POLL_MAX, 100)
        continue
      }
      if (ctx.stopping.signal.aborted) return
      onPoll()
      next = consumer.poll(POLL_MAX, 100)
      await dispatch(ctx, records)
    }
  } finally {
    // A batch fetched during close() is dropped: never committed, it is read again by the next owner.
    await next.then(
      () => undefined,
      () => undefined,
    )
  }
}
