/**
 * The console's sessions: a signed-in browser holds a random session id in an HttpOnly cookie; the
 * processor keeps, in memory, the API token it was opened with, its CSRF token and its two clocks. A
 * session ends at sign-out, after `idleMs` without a request, or `absoluteMs` after sign-in, whichever
 * comes first; the token is checked again on every request (a revoked or expired token ends it too).
 *
 * Sessions live in the processor's memory on purpose: nothing about them (least of all the token) reaches
 * the database, and a restart signs everyone out.
 *
 * @module
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { LifelineError } from '../errors.js'

/** Defaults of {@link SessionOptions}: 30 minutes idle, 12 hours at most. */
export const sessionDefaults = { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000, maxSessions: 10_000 } as const

export interface SessionOptions {
  /** A session unused this long ends, ms (default 30 min). */
  idleMs?: number
  /** A session ends this long after sign-in whatever its use, ms (default 12 h). */
  absoluteMs?: number
  /** Most open sessions; the least recently used one ends when another opens (default 10000). */
  maxSessions?: number
  /** The clock (ms since the epoch); Date.now by default. */
  now?: () => number
}

export interface Session {
  id: string
  /** The API token it was opened with (kept in memory only). */
  token: string
  /** The token's name when it signed in (for display; the role is read again on every request). */
  name: string
  /** Sent back with every form as `_csrf`. */
  csrf: string
  createdAt: number
  lastSeenAt: number
}

const randomId = () => randomBytes(32).toString('base64url')

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 1) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: console.sessions.${name}: must be a positive integer, got ${String(value)}`)
  return value
}

/** Equality of two strings in constant time (for their length). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export class SessionStore {
  readonly idleMs: number
  readonly absoluteMs: number
  readonly #max: number
  readonly #now: () => number
  /** Insertion order is use order: a touched session moves to the end. */
  readonly #sessions = new Map<string, Session>()

  constructor(options: SessionOptions = {}) {
    this.idleMs = positive('idleMs', options.idleMs, sessionDefaults.idleMs)
    this.absoluteMs = positive('absoluteMs', options.absoluteMs, sessionDefaults.absoluteMs)
    this.#max = positive('maxSessions', options.maxSessions, sessionDefaults.maxSessions)
    this.#now = options.now ?? Date.now
  }

  /** Opens a session for `token` (already verified by the caller). */
  open(token: string, name: string): Session {
    const now = this.#now()
    const session: Session = { id: randomId(), token, name, csrf: randomId(), createdAt: now, lastSeenAt: now }
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value as string)
    this.#sessions.set(session.id, session)
    return session
  }

  /** The live session of `id` (its idle clock restarted), or undefined: unknown, idle too long or too old (then it ends). */
  touch(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined
    const session = this.#sessions.get(id)
    if (session === undefined) return undefined
    const now = this.#now()
    this.#sessions.delete(id)
    if (now - session.lastSeenAt > this.idleMs || now - session.createdAt > this.absoluteMs) return undefined
    session.lastSeenAt = now
    this.#sessions.set(id, session)
    return session
  }

  /** Ends a session (sign-out, a token that no longer verifies). */
  end(id: string): void {
    this.#sessions.delete(id)
  }

  get size(): number {
    return this.#sessions.size
  }
}
