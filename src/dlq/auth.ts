/**
 * API tokens of the DLQ processor and the roles they carry.
 *
 * A token is 32 random bytes, base64url, prefixed `llt_` (`llt_` + 43 characters). It is shown once, by
 * {@link createToken}; the database keeps only its SHA-256 hash (`lifeline_dlq_tokens.token_hash`). A token
 * is looked up by its hash and the stored hash is compared again in constant time; revoked tokens never
 * verify. Nothing here returns a hash.
 *
 * Roles are ordered `viewer` < `operator` < `approver` < `admin`; each role may do what the roles below it
 * may. {@link ACTION_ROLES} says which role every action needs.
 *
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { isLifelineError, LifelineError } from '../errors.js'
import type { SqlQueryable } from '../store/executor.js'

export type Role = 'viewer' | 'operator' | 'approver' | 'admin'

/** The roles, lowest first. */
export const ROLES: readonly Role[] = Object.freeze(['viewer', 'operator', 'approver', 'admin'])

/**
 * The role each action needs (or any higher role).
 *
 * - `viewer`: read records, groups, jobs, approvals and the policy.
 * - `operator`: replay, edit, replay edited, discard, resolve, bulk redrives (dry run and job), pause,
 *   cancel and resume jobs.
 * - `approver`: approve or reject pending actions (never one they requested), read the audit log.
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
  'approval.decide': 'approver',
  'audit.read': 'approver',
  'token.manage': 'admin',
} as const satisfies Record<string, Role>)

export type Action = keyof typeof ACTION_ROLES

export const TOKEN_PREFIX = 'llt_'
const TOKEN_FORMAT = /^llt_[A-Za-z0-9_-]{43}$/
const NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/

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

const invalid = (message: string, details: Record<string, unknown> = {}) => new LifelineError('LL_ARGUMENT_INVALID', message, { details })

/** The SHA-256 of a token, hex (what the database stores). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_FORMAT.test(name)) {
    throw invalid('token name must be 1 to 100 characters: letters, digits, and . _ @ - (starting with a letter or digit)', { field: 'name' })
  }
  return name
}

export interface TokenInfo {
  id: string
  name: string
  role: Role
  createdAt: Date
  revokedAt: Date | null
}

export interface CreatedToken extends TokenInfo {
  /** The token in clear: shown this once, never stored. */
  token: string
}

export interface Principal {
  name: string
  role: Role
}

const toInfo = (row: Record<string, unknown>): TokenInfo => ({
  id: String(row.id),
  name: row.name as string,
  role: row.role as Role,
  createdAt: row.created_at as Date,
  revokedAt: (row.revoked_at as Date | null) ?? null,
})

/**
 * Creates a token named `name` with `role`; returns it in clear (only this once). LL_ARGUMENT_INVALID for a
 * bad name or role, and with `details.conflict: true` when the name is taken (revoked tokens keep theirs).
 */
export async function createToken(db: SqlQueryable, input: { name: string; role: Role }): Promise<CreatedToken> {
  const name = checkName(input?.name)
  if (!isRole(input.role)) throw invalid(`role must be one of ${ROLES.join(', ')}`, { field: 'role' })
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`
  try {
    const { rows } = await db.query(
      'insert into lifeline_dlq_tokens (name, token_hash, role) values ($1, $2, $3) returning id, name, role, created_at, revoked_at',
      [name, hashToken(token), input.role],
    )
    return { ...toInfo(rows[0]!), token }
  } catch (err) {
    if (isLifelineError(err, 'LL_DB_QUERY') && err.details.sqlState === '23505') {
      throw invalid(`a token named ${JSON.stringify(name)} already exists (names of revoked tokens stay taken)`, { field: 'name', conflict: true })
    }
    throw err
  }
}

/** The name and role of a valid, unrevoked token; null for anything else (malformed, unknown, revoked). */
export async function verifyToken(db: SqlQueryable, token: unknown): Promise<Principal | null> {
  if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) return null
  const hash = hashToken(token)
  const { rows } = await db.query('select name, role, token_hash from lifeline_dlq_tokens where token_hash = $1 and revoked_at is null', [hash])
  const row = rows[0]
  if (row === undefined) return null
  const stored = Buffer.from(String(row.token_hash), 'hex')
  const given = Buffer.from(hash, 'hex')
  if (stored.length !== given.length || !timingSafeEqual(stored, given)) return null
  if (!isRole(row.role)) return null
  return { name: row.name as string, role: row.role }
}

/** Revokes the token named `name`; LL_NOT_FOUND when there is no such unrevoked token. */
export async function revokeToken(db: SqlQueryable, name: string): Promise<TokenInfo> {
  const n = checkName(name)
  const { rows } = await db.query(
    'update lifeline_dlq_tokens set revoked_at = now() where name = $1 and revoked_at is null returning id, name, role, created_at, revoked_at',
    [n],
  )
  if (rows.length === 0) throw new LifelineError('LL_NOT_FOUND', `no active token named ${JSON.stringify(n)}`, { details: { name: n } })
  return toInfo(rows[0]!)
}

/** Every token (oldest first), revoked ones included unless `active`; never their hashes. */
export async function listTokens(db: SqlQueryable, options: { active?: boolean } = {}): Promise<TokenInfo[]> {
  const { rows } = await db.query(
    `select id, name, role, created_at, revoked_at from lifeline_dlq_tokens ${options.active ? 'where revoked_at is null' : ''} order by id`,
  )
  return rows.map(toInfo)
}
