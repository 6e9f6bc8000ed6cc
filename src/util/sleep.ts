/** The one cancellable wait: every backoff and retry wait in Lifeline goes through it. */
import { LifelineError } from '../errors.js'

/** Resolves after `ms`, or rejects with LL_ABORTED as soon as `signal` aborts. Leaves no timer behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new LifelineError('LL_ABORTED', 'wait aborted'))
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(new LifelineError('LL_ABORTED', 'wait aborted'))
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
