/**
 * API tokens of the DLQ processor and the roles they carry.
 *
 * A token is 32 random bytes, base64url, prefixed `llt_` (`llt_` + 43 characters). It is shown once, by
 * {@link createToken}; the database keeps only its SHA-256 hash (`lifeline_dlq_tokens.token_hash`). A token
 * is looked up by its hash and the stored hash is compared again in constant time; revoked tokens never
 * verify. Nothing here returns a hash.
 *
 * Every token has an owner (the person or service identity holding it: four-eyes compares owners, not
 * token names), an optional expiry (an expired token verifies no more) and `last_used_at` (written at most
 * once a minute). Its name may not be a system actor's ({@link isSystemActorName}).
 *
 * Roles are ordered `viewer` < `operator` < `approver` < `admin`; each role may do what the roles below it
 * may. {@link ACTION_ROLES} says which role every action needs.
 *
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { dlqConflict, invalidArgument, isLifelineError, LifelineError } from '../errors.js'
import type { SqlQueryable, SqlRow } from '../store/executor.js'
import { isSystemActorName, SYSTEM_ACTOR_NAMES } from './actors.js'

export type Role = 'viewer' | 'operator' | 'approver' | 'admin'

/** The roles, lowest first. */
export const ROLES: readonly Role[] = Object.freeze(['viewer', 'operator', 'approver', 'admin'])

/**
 * The role each action needs (or any higher role).
 *
 * - `viewer`: read records, groups, jobs, approvals and the policy.
 * - `operator`: replay (to a record's own targets, without force: see permissions.ts), edit, replay edited,
 *   discard, resolve, bulk redrives (dry run and job), pause, cancel and resume jobs, release a parked key
 *   or settle a compensation failure (the console's parked-keys and failures pages).
 * - `approver`: approve or reject pending actions (never one of their own owner), replay anywhere and with
 *   force, read the audit log.
 * - `admin`: create, list and revoke tokens.
 */
export const ACTION_ROLES = Object.freeze({
  read: 'viewer',
  'record.replay': 'operator',
  'record.edit': 'operator',
  'record.replay-edited': 'operator',
  'record.discard': 'operator',
  'record.resolve': 'operator',
  'redrive.preview': 'operator',
  'redrive.create': 'operator',
  'job.pause': 'operator',
  'job.cancel': 'operator',
  'job.resume': 'operator',
  'key.release': 'operator',
  'failure.settle': 'operator',
  'approval.decide': 'approver',
  'audit.read': 'approver',
  'token.manage': 'admin',
} as const satisfies Record<string, Role>)

export type Action = keyof typeof ACTION_ROLES

export const TOKEN_PREFIX = 'llt_'
const TOKEN_FORMAT = /^llt_[A-Za-z0-9_-]{43}$/
const NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/
/** The longest expiry a token may get: 10 years. */
const MAX_EXPIRY_MS = 3650 * 86_400_000
/** `last_used_at` is written at most this often per token. */
const LAST_USED_GRANULARITY = '60 seconds'

/** Whether `role` is `needed` or higher. */
export function roleAtLeast(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed)
}

/** Whether `role` may perform `action`. */
export function mayPerform(role: Role, action: Action): boolean {
  return roleAtLeast(role, ACTION_ROLES[action])
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value)
}


/** The SHA-256 of a token, hex (what the database stores). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

function checkName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || !NAME_FORMAT.test(name)) {
    throw invalidArgument(`token ${field} must be 1 to 100 characters: letters, digits, and . _ @ - (starting with a letter or digit)`, { field })
  }
  return name
}

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/**
 * When a token given `expires` expires: a duration (`90d`, `12h`, `30m`, `2w`) from `now`, or an ISO-8601
 * time; in the future and at most 10 years away (LL_ARGUMENT_INVALID otherwise). One parser for the API
 * and the command line.
 */
export function parseExpiry(expires: unknown, now = Date.now()): Date {
  let at = NaN
  if (expires instanceof Date) at = expires.getTime()
  else if (typeof expires === 'string') {
    const duration = /^(\d{1,6})([mhdw])$/.exec(expires)
    if (duration) at = now + Number(duration[1]) * UNITS[duration[2]!]!
    else if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/.test(expires)) at = Date.parse(expires)
  }
  if (!Number.isFinite(at)) throw invalidArgument('expires must be a duration (e.g. 90d, 12h, 30m, 2w) or an ISO-8601 time', { field: 'expires' })
  if (at <= now) throw invalidArgument('expires must be in the future', { field: 'expires' })
  if (at > now + MAX_EXPIRY_MS) throw invalidArgument('expires must be at most 3650 days away', { field: 'expires' })
  return new Date(at)
}

export interface TokenInfo {
  id: string
  name: string
  role: Role
  /** The person or service identity holding it. */
  owner: string
  createdAt: Date
  /** When it stops working (null: never). */
  expiresAt: Date | null
  /** Its last use (to the minute; null: never used). */
  lastUsedAt: Date | null
  revokedAt: Date | null
}

export interface CreatedToken extends TokenInfo {
  /** The token in clear: shown this once, never stored. */
  token: string
}

/** Who a request comes from: its token's name, role, owner and id. */
export interface Principal {
  name: string
  role: Role
  owner: string
  tokenId: string
}

const TOKEN_COLUMNS = 'id, name, role, owner, created_at, expires_at, last_used_at, revoked_at'
const toInfo = (row: SqlRow): TokenInfo => ({
  id: String(row.id),
  name: row.name as string,
  role: row.role as Role,
  owner: row.owner as string,
  createdAt: row.created_at as Date,
  expiresAt: (row.expires_at as Date | null) ?? null,
  lastUsedAt: (row.last_used_at as Date | null) ?? null,
  revokedAt: (row.revoked_at as Date | null) ?? null,
})

export interface TokenSpec {
  name: string
  role: Role
  /** Required: the person or service identity that holds it (four-eyes compares owners). */
  owner: string
  /** Optional expiry: a duration (`90d`) or an ISO-8601 time ({@link parseExpiry}). */
  expires?: string | Date
}

/**
 * Creates a token; returns it in clear (only this once). LL_ARGUMENT_INVALID for a bad name, owner, role or
 * expiry, a system actor's name; LL_DLQ_CONFLICT when the name is taken (revoked tokens keep theirs).
 */
export async function createToken(db: SqlQueryable, input: TokenSpec): Promise<CreatedToken> {
  const name = checkName(input?.name)
  if (isSystemActorName(name)) throw invalidArgument(`${JSON.stringify(name)} is a system actor's name (${SYSTEM_ACTOR_NAMES.join(', ')}): pick another token name`, { field: 'name' })
  if (input.owner === undefined || input.owner === null || input.owner === '') throw invalidArgument('a token needs an owner: the person or service identity that holds it', { field: 'owner' })
  const owner = checkName(input.owner, 'owner')
  if (!isRole(input.role)) throw invalidArgument(`role must be one of ${ROLES.join(', ')}`, { field: 'role' })
  const expiresAt = input.expires === undefined ? null : parseExpiry(input.expires)
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`
  try {
    const { rows } = await db.query(
      `insert into lifeline_dlq_tokens (name, token_hash, role, owner, expires_at) values ($1, $2, $3, $4, $5::timestamptz) returning ${TOKEN_COLUMNS}`,
      [name, hashToken(token), input.role, owner, expiresAt?.toISOString() ?? null],
    )
    return { ...toInfo(rows[0]!), token }
  } catch (err) {
    if (isLifelineError(err, 'LL_DB_QUERY') && err.details.sqlState === '23505') {
      throw dlqConflict(`a token named ${JSON.stringify(name)} already exists (names of revoked tokens stay taken)`, { field: 'name' })
    }
    throw err
  }
}

/** Why a token did not verify: not a token at all or unknown (or revoked), or expired. */
export type TokenRefusal = 'invalid' | 'expired'

/**
 * The principal of a valid token (unrevoked, unexpired), or why it is refused. Records the use (at most
 * once a minute per token).
 */
export async function checkToken(db: SqlQueryable, token: unknown): Promise<{ principal: Principal } | { refused: TokenRefusal }> {
  if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) return { refused: 'invalid' }
  const hash = hashToken(token)
  const { rows } = await db.query(
    'select id, name, role, owner, token_hash, expires_at is not null and expires_at <= now() as expired from lifeline_dlq_tokens where token_hash = $1 and revoked_at is null',
    [hash],
  )
  const row = rows[0]
  if (row === undefined) return { refused: 'invalid' }
  const stored = Buffer.from(String(row.token_hash), 'hex')
  const given = Buffer.from(hash, 'hex')
  if (stored.length !== given.length || !timingSafeEqual(stored, given)) return { refused: 'invalid' }
  if (!isRole(row.role)) return { refused: 'invalid' }
  if (row.expired === true) return { refused: 'expired' }
  await db.query(`update lifeline_dlq_tokens set last_used_at = now() where id = $1 and (last_used_at is null or last_used_at < now() - interval '${LAST_USED_GRANULARITY}')`, [row.id])
  return { principal: { name: row.name as string, role: row.role, owner: row.owner as string, tokenId: String(row.id) } }
}

/** The principal of a valid token; null for anything else (malformed, unknown, revoked, expired). */
export async function verifyToken(db: SqlQueryable, token: unknown): Promise<Principal | null> {
  const checked = await checkToken(db, token)
  return 'principal' in checked ? checked.principal : null
}

/** Revokes the token named `name`; LL_NOT_FOUND when there is no such unrevoked token. */
export async function revokeToken(db: SqlQueryable, name: string): Promise<TokenInfo> {
  const n = checkName(name)
  const { rows } = await db.query(`update lifeline_dlq_tokens set revoked_at = now() where name = $1 and revoked_at is null returning ${TOKEN_COLUMNS}`, [n])
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `no active token named ${JSON.stringify(n)}`, { details: { name: n } })
  return toInfo(rows[0]!)
}

/** Every token (oldest first), revoked ones included unless `active` (then expired ones are left out too); never their hashes. */
export async function listTokens(db: SqlQueryable, options: { active?: boolean } = {}): Promise<TokenInfo[]> {
  const { rows } = await db.query(
    `select ${TOKEN_COLUMNS} from lifeline_dlq_tokens ${options.active ? 'where revoked_at is null and (expires_at is null or expires_at > now())' : ''} order by id`,
  )
  return rows.map(toInfo)
}
