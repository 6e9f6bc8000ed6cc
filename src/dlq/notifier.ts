/**
 * Webhook delivery of {@link Notification}s: deduplicated, rate-limited, retried with backoff, and never in
 * anyone's way — `notify()` only queues and returns; each webhook has its own worker and bounded queue.
 *
 * - **Dedup**: a notification whose `dedupKey` was accepted within `dedupWindowMs` is dropped (`duplicate`).
 * - **Rate limit**: per webhook, at most `rateLimit.max` notifications per `rateLimit.perMs` (a token
 *   bucket); over it a notification is dropped (`rate-limited`) and the next message sent says how many were.
 * - **Retries**: a network error, a timeout, 408, 429 or a 5xx is retried `retry.attempts` times in all with
 *   exponential backoff and full jitter (`Retry-After` is honoured up to `retry.maxMs`); another 4xx is
 *   not retried. A notification that still fails is counted `failed` and logged (LL_NOTIFY).
 * - **close()**: stops accepting, gives queued deliveries up to `closeTimeoutMs`, then aborts them (counted
 *   `dropped`). Idempotent.
 *
 * Webhook URLs often are secrets (Slack's are): only their host is ever logged.
 *
 * @module
 * @example
 * const notifier = createNotifier({ webhooks: [{ url: process.env.SLACK_WEBHOOK!, format: 'slack' }] })
 * notifier.notify(newErrorGroup({ ... }))
 * await notifier.close()
 */
import Type from 'typebox'
import { LifelineError } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import { validateOptions } from '../util/options.js'
import { sleep } from '../util/sleep.js'
import { NOTIFICATION_KINDS, type DlqMetrics, type NotificationKind, type NotificationOutcome } from './metrics.js'
import { toJson, toSlack, type Notification } from './notification.js'

export interface WebhookTarget {
  /** http(s) URL the payload is POSTed to. */
  url: string
  /** `json` (default): the generic payload; `slack`: Slack's incoming-webhook payload. */
  format?: 'json' | 'slack'
  /** Kinds this webhook gets (default: all). */
  kinds?: NotificationKind[]
  /** Extra request headers (e.g. `authorization`). */
  headers?: Record<string, string>
}

export interface NotifierOptions {
  webhooks: WebhookTarget[]
  /** A notification with the same dedup key as one accepted within this window is dropped, ms (default 3600000). */
  dedupWindowMs?: number
  /** Per webhook: at most `max` notifications per `perMs` (default 20 per 60000 ms). */
  rateLimit?: { max: number; perMs: number }
  /** Attempts in all per delivery (default 5), first backoff cap and largest wait, ms (1000, 30000). */
  retry?: { attempts?: number; baseMs?: number; maxMs?: number }
  /** One request's timeout, ms (default 10000). */
  timeoutMs?: number
  /** Notifications waiting per webhook at most (default 100); more are dropped. */
  queueLimit?: number
  /** How long close() lets queued deliveries finish, ms (default 5000). */
  closeTimeoutMs?: number
  logger?: Logger
  metrics?: DlqMetrics
}

export const notifierDefaults = {
  dedupWindowMs: 3_600_000,
  rateLimit: { max: 20, perMs: 60_000 },
  retry: { attempts: 5, baseMs: 1000, maxMs: 30_000 },
  timeoutMs: 10_000,
  queueLimit: 100,
  closeTimeoutMs: 5000,
} as const satisfies Partial<NotifierOptions>

const Kind = Type.Union(NOTIFICATION_KINDS.map((k) => Type.Literal(k)))
export const WebhookSchema = Type.Object(
  {
    url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048 }),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('slack')])),
    kinds: Type.Optional(Type.Array(Kind, { minItems: 1 })),
    headers: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String())),
  },
  { additionalProperties: false },
)
const OptionsSchema = Type.Object(
  {
    webhooks: Type.Array(WebhookSchema, { minItems: 1 }),
    dedupWindowMs: Type.Optional(Type.Integer({ minimum: 0 })),
    rateLimit: Type.Optional(Type.Object({ max: Type.Integer({ minimum: 1 }), perMs: Type.Integer({ minimum: 1 }) }, { additionalProperties: false })),
    retry: Type.Optional(Type.Object({ attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 20 })), baseMs: Type.Optional(Type.Integer({ minimum: 1 })), maxMs: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    queueLimit: Type.Optional(Type.Integer({ minimum: 1 })),
    closeTimeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
    logger: Type.Optional(Type.Any()),
    metrics: Type.Optional(Type.Any()),
  },
  { additionalProperties: false },
)

/** Remembers dedup keys for a window (pure: the clock is passed in). */
export class Deduper {
  readonly #seen = new Map<string, number>()
  constructor(readonly windowMs: number) {}
  /** True (and remembered) when `key` was not accepted within the window before `now`. */
  accept(key: string, now: number): boolean {
    if (this.#seen.size > 10_000) for (const [k, until] of this.#seen) if (until <= now) this.#seen.delete(k)
    const until = this.#seen.get(key)
    if (until !== undefined && until > now) return false
    this.#seen.set(key, now + this.windowMs)
    return true
  }
}

/** A token bucket: `max` tokens, refilled continuously at `max` per `perMs` (pure: the clock is passed in). */
export class TokenBucket {
  #tokens: number
  #at: number
  constructor(
    readonly max: number,
    readonly perMs: number,
    now: number,
  ) {
    this.#tokens = max
    this.#at = now
  }
  take(now: number): boolean {
    this.#tokens = Math.min(this.max, this.#tokens + ((now - this.#at) * this.max) / this.perMs)
    this.#at = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}

/** The wait before attempt `attempt + 1` (full jitter below `min(maxMs, baseMs * 2^(attempt-1))`; `Retry-After` wins, capped). */
export function retryDelay(attempt: number, retry: { baseMs: number; maxMs: number }, random: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) return Math.min(retry.maxMs, retryAfterMs)
  return Math.floor(random * Math.min(retry.maxMs, retry.baseMs * 2 ** (attempt - 1)))
}

/** `Retry-After` as seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

const RETRIABLE_STATUS = (status: number) => status === 408 || status === 429 || status >= 500

export interface NotifierStats {
  accepted: number
  sent: number
  failed: number
  duplicates: number
  rateLimited: number
  dropped: number
  /** Deliveries queued or in flight. */
  pending: number
}

export interface Notifier {
  /** Queues `n` for every webhook that takes its kind; never waits, never throws. */
  notify(n: Notification): void
  stats(): NotifierStats
  /** Stops accepting; lets queued deliveries run up to closeTimeoutMs, then aborts them. Idempotent. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

interface Webhook {
  target: WebhookTarget
  host: string
  queue: Notification[]
  bucket: TokenBucket
  /** Rate-limited since the last message sent (the next one says so). */
  suppressed: number
  worker: Promise<void> | undefined
}

/** Creates a notifier (options validated now: LL_OPTIONS_INVALID naming the option). */
export function createNotifier(input: NotifierOptions): Notifier {
  const options = validateOptions(OptionsSchema, input, 'notifications') as unknown as NotifierOptions
  const d = notifierDefaults
  const retry = { attempts: options.retry?.attempts ?? d.retry.attempts, baseMs: options.retry?.baseMs ?? d.retry.baseMs, maxMs: options.retry?.maxMs ?? d.retry.maxMs }
  const rate = options.rateLimit ?? d.rateLimit
  const timeoutMs = options.timeoutMs ?? d.timeoutMs
  const queueLimit = options.queueLimit ?? d.queueLimit
  const closeTimeoutMs = options.closeTimeoutMs ?? d.closeTimeoutMs
  const log = (options.logger ?? silentLogger()).child({ component: 'dlq-notifier' })
  const metrics = options.metrics
  const dedup = new Deduper(options.dedupWindowMs ?? d.dedupWindowMs)
  const stop = new AbortController()
  const stats: Omit<NotifierStats, 'pending'> = { accepted: 0, sent: 0, failed: 0, duplicates: 0, rateLimited: 0, dropped: 0 }
  let inFlight = 0
  let closing: Promise<void> | undefined

  const count = (kind: NotificationKind, outcome: NotificationOutcome) => {
    metrics?.notification(kind, outcome)
    if (outcome === 'sent') stats.sent++
    else if (outcome === 'failed') stats.failed++
    else if (outcome === 'duplicate') stats.duplicates++
    else if (outcome === 'rate-limited') stats.rateLimited++
    else stats.dropped++
  }

  const webhooks: Webhook[] = options.webhooks.map((target) => ({ target, host: new URL(target.url).host, queue: [], bucket: new TokenBucket(rate.max, rate.perMs, Date.now()), suppressed: 0, worker: undefined }))

  /** One POST; resolves on 2xx, throws LL_NOTIFY (retriable or not) otherwise. */
  async function post(w: Webhook, n: Notification, suppressed: number): Promise<void> {
    const body = JSON.stringify(w.target.format === 'slack' ? toSlack(n, suppressed) : toJson(n, suppressed))
    let res: Response
    try {
      res = await fetch(w.target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'lifeline-dlq-notifier', ...(w.target.headers ?? {}) },
        body,
        signal: AbortSignal.any([stop.signal, AbortSignal.timeout(timeoutMs)]),
        redirect: 'error',
      })
    } catch (err) {
      throw new LifelineError('LL_NOTIFY', `webhook ${w.host}: ${(err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'request failed'}`, { cause: err, details: { host: w.host } })
    }
    // The body is read so the connection can be reused; it is never logged (it may echo the URL's secret).
    await res.arrayBuffer().catch(() => undefined)
    if (res.ok) return
    throw new LifelineError('LL_NOTIFY', `webhook ${w.host} answered HTTP ${res.status}`, { retriable: RETRIABLE_STATUS(res.status), details: { host: w.host, status: res.status, retryAfterMs: parseRetryAfter(res.headers.get('retry-after'), Date.now()) } })
  }

  async function deliver(w: Webhook, n: Notification): Promise<void> {
    const suppressed = w.suppressed
    for (let attempt = 1; ; attempt++) {
      try {
        await post(w, n, suppressed)
        w.suppressed -= suppressed
        count(n.kind, 'sent')
        log.debug({ kind: n.kind, host: w.host, attempt }, 'notification sent')
        return
      } catch (err) {
        const e = err as LifelineError
        if (stop.signal.aborted) {
          count(n.kind, 'dropped')
          return
        }
        if (!e.retriable || attempt >= retry.attempts) {
          count(n.kind, 'failed')
          log.error({ err: e, kind: n.kind, host: w.host, attempts: attempt }, 'notification failed: gave up')
          return
        }
        const wait = retryDelay(attempt, retry, Math.random(), e.details.retryAfterMs as number | undefined)
        log.warn({ code: e.code, message: e.message, kind: n.kind, host: w.host, attempt, waitMs: wait }, 'notification failed: retrying')
        // sleep() rejects only when close() aborts the wait.
        const waited = await sleep(wait, stop.signal).then(
          () => true,
          () => false,
        )
        if (!waited) {
          count(n.kind, 'dropped')
          return
        }
      }
    }
  }

  async function work(w: Webhook): Promise<void> {
    for (let n = w.queue.shift(); n !== undefined; n = w.queue.shift()) {
      inFlight++
      try {
        if (stop.signal.aborted) count(n.kind, 'dropped')
        else await deliver(w, n)
      } finally {
        inFlight--
      }
    }
    w.worker = undefined
  }

  return {
    notify(n) {
      if (closing) {
        log.debug({ kind: n.kind }, 'notification after close(): ignored')
        return
      }
      const now = Date.now()
      if (!dedup.accept(n.dedupKey, now)) {
        count(n.kind, 'duplicate')
        return
      }
      stats.accepted++
      for (const w of webhooks) {
        if (w.target.kinds !== undefined && !w.target.kinds.includes(n.kind)) continue
        if (!w.bucket.take(now)) {
          w.suppressed++
          count(n.kind, 'rate-limited')
          log.warn({ kind: n.kind, host: w.host }, 'notification rate-limited')
          continue
        }
        if (w.queue.length >= queueLimit) {
          count(n.kind, 'dropped')
          log.warn({ kind: n.kind, host: w.host, queueLimit }, 'notification dropped: the webhook queue is full')
          continue
        }
        w.queue.push(n)
        w.worker ??= work(w)
      }
    },
    stats: () => ({ ...stats, pending: inFlight + webhooks.reduce((sum, w) => sum + w.queue.length, 0) }),
    close() {
      closing ??= (async () => {
        const workers = webhooks.map((w) => w.worker).filter((p) => p !== undefined)
        if (workers.length > 0) {
          const grace = new AbortController()
          await Promise.race([Promise.all(workers), sleep(closeTimeoutMs, grace.signal).catch(() => undefined)])
          grace.abort()
        }
        stop.abort()
        await Promise.all(webhooks.map((w) => w.worker))
      })()
      return closing
    },
    [Symbol.asyncDispose]() {
      return this.close()
    },
  }
}
