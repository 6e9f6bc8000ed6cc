/** Typed events and error reporting: a throwing listener is logged and never disturbs processing. */
import type { ConsumerEvents } from '../options.js'
import type { ConsumerContext } from './context.js'

export function emit<K extends keyof ConsumerEvents>(ctx: ConsumerContext, event: K, ...args: ConsumerEvents[K]): void {
  try {
    ;(ctx.emitter.emit as (e: K, ...a: ConsumerEvents[K]) => boolean)(event, ...args)
  } catch (err) {
    ctx.log.warn({ err, event }, 'an event listener threw; ignored')
  }
}

/** Whether anyone listens (so a hot path builds an event's payload only when it is wanted). */
export const listened = (ctx: ConsumerContext, event: keyof ConsumerEvents): boolean => ctx.emitter.listenerCount(event) > 0

/** Logs a failure and emits it as `error` when someone listens. */
export function reportError(ctx: ConsumerContext, error: unknown, context: string): void {
  ctx.log.warn({ err: error }, context)
  if (listened(ctx, 'error')) emit(ctx, 'error', error)
}
