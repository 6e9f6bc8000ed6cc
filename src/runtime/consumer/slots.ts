/**
 * Handler slots: at most `concurrency` handlers run at once. A record waiting out a backoff or the breaker
 * holds its key but no slot; when it comes back it is served before new records.
 *
 * @module
 */
import type { ConsumerContext } from './context.js'

/** Frees a handler slot: to a waiting retry first, else to a new record. */
export function releaseSlot(ctx: ConsumerContext): void {
  ctx.running--
  const waiter = ctx.slotWaiters.shift()
  if (waiter) {
    ctx.running++
    waiter()
  } else queueMicrotask(ctx.pump)
}

/** Takes a handler slot, waiting for one when all are busy; false when cancelled meanwhile. */
export async function takeSlot(ctx: ConsumerContext, signal: AbortSignal): Promise<boolean> {
  if (ctx.running < ctx.options.concurrency && ctx.slotWaiters.length === 0) {
    ctx.running++
    return true
  }
  if (signal.aborted) return false
  return new Promise<boolean>((resolve) => {
    const granted = () => {
      signal.removeEventListener('abort', cancel)
      resolve(true)
    }
    const cancel = () => {
      const i = ctx.slotWaiters.indexOf(granted)
      if (i >= 0) ctx.slotWaiters.splice(i, 1)
      resolve(false)
    }
    ctx.slotWaiters.push(granted)
    signal.addEventListener('abort', cancel, { once: true })
  })
}
