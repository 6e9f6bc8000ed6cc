/**
 * PII masking for dead letters (pure, except for crypto): policies by topic and JSON path, applied when
 * the runtime writes a DLQ record (the value, the error message and the stack) and when the DLQ indexer
 * stores a foreign record.
 *
 * Actions:
 * - `redact`: the value becomes `"[REDACTED]"`;
 * - `hash`: `"hash:v1:<hex>"`, an HMAC-SHA256 under the keyring's hash key (stable, so records can still be
 *   grouped and searched by it, but not reversible or guessable from a dictionary without the key);
 * - `encrypt`: `"enc:v1:<keyId>:<iv>:<ciphertext>:<tag>"` (base64url), AES-256-GCM under the keyring's
 *   current key; only a holder of the keyring (the DLQ processor, for a replay) can decrypt it.
 *
 * Every clear value a rule masked is also replaced wherever it appears in the error message and stack
 * (an exception message often quotes the payload), and `patterns` (regular expressions, e.g. e-mail
 * addresses or card numbers) are redacted there and in string values of the payload.
 *
 * Paths: `$.a.b`, `$.items[*].email`, `$.items[0]`, `$..email` (any depth), `$` (the whole value).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto'
import { LifelineError } from '../errors.js'

export type MaskAction = 'redact' | 'hash' | 'encrypt'

export interface MaskRule {
  /** A JSON path: `$.customer.email`, `$.items[*].card`, `$..ssn`. */
  path: string
  action: MaskAction
}

export interface MaskingPolicy {
  /** Topic names (source topics) this policy covers; `*` for every topic. */
  topics: string[]
  rules: MaskRule[]
  /** Regular expressions whose matches are redacted in messages, stacks and string values. */
  patterns?: string[]
  /** Header names whose values are redacted. */
  headers?: string[]
  /** A value that is not JSON (the rules cannot apply): `encrypt` it whole (default when a key exists), `redact` it, or `keep` it. */
  nonJson?: 'encrypt' | 'redact' | 'keep'
}

export interface Keyring {
  /** The key id new encryptions use. */
  currentKeyId: string
  /** Key id → 32-byte AES-256 key (Buffer, or base64/hex text of 32 bytes). Old ids stay for decryption. */
  keys: Record<string, Buffer | string>
  /** HMAC key for `hash` (default: the current encryption key). */
  hashKey?: Buffer | string
}

export const REDACTED = '[REDACTED]'
/** Header on a DLQ record a masking policy changed: `v1` (encrypted fields read `enc:v1:...`). */
export const MASKED_HEADER = 'lifeline.masked'
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/

function keyBytes(value: Buffer | string, id: string): Buffer {
  const bytes = Buffer.isBuffer(value) ? value : /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64')
  if (bytes.length !== 32) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking key ${JSON.stringify(id)} must be 32 bytes (AES-256), got ${bytes.length}`)
  return bytes
}

/** Segments of a parsed path: a property, any index (`*`), an index, or recursive descent to a property. */
type Segment = { kind: 'prop'; name: string } | { kind: 'any' } | { kind: 'index'; index: number } | { kind: 'deep'; name: string }

export function parsePath(path: string): Segment[] {
  if (!path.startsWith('$')) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking path ${JSON.stringify(path)} must start with $`)
  const segments: Segment[] = []
  const re = /\.\.([A-Za-z_$][\w$-]*)|\.([A-Za-z_$][\w$-]*)|\[\*\]|\[(\d+)\]|\['([^']+)'\]/gy
  re.lastIndex = 1
  while (re.lastIndex < path.length) {
    const at = re.lastIndex
    const m = re.exec(path)
    if (!m) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking path ${JSON.stringify(path)}: cannot read from position ${at}`)
    if (m[1] !== undefined) segments.push({ kind: 'deep', name: m[1] })
    else if (m[2] !== undefined) segments.push({ kind: 'prop', name: m[2] })
    else if (m[3] !== undefined) segments.push({ kind: 'index', index: Number(m[3]) })
    else if (m[4] !== undefined) segments.push({ kind: 'prop', name: m[4] })
    else segments.push({ kind: 'any' })
  }
  return segments
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

/** Applies `fn` to every value at `segments` under `root`; returns the new root (the input is not mutated). */
function mapPath(root: Json, segments: readonly Segment[], fn: (v: Json) => Json): Json {
  if (segments.length === 0) return fn(root)
  const [head, ...rest] = segments as [Segment, ...Segment[]]
  if (head.kind === 'deep') {
    const visit = (node: Json): Json => {
      if (Array.isArray(node)) return node.map(visit)
      if (node !== null && typeof node === 'object') {
        const out: { [k: string]: Json } = {}
        for (const [k, v] of Object.entries(node)) out[k] = k === head.name ? mapPath(v, rest, fn) : visit(v)
        return out
      }
      return node
    }
    return visit(root)
  }
  if (head.kind === 'prop') {
    if (root === null || typeof root !== 'object' || Array.isArray(root) || !Object.hasOwn(root, head.name)) return root
    return { ...root, [head.name]: mapPath(root[head.name] as Json, rest, fn) }
  }
  if (!Array.isArray(root)) return root
  if (head.kind === 'any') return root.map((v) => mapPath(v, rest, fn))
  if (head.index >= root.length) return root
  const copy = root.slice()
  copy[head.index] = mapPath(copy[head.index] as Json, rest, fn)
  return copy
}

export interface MaskResult {
  value: Buffer | null
  errorMessage: string
  errorStack: string | undefined
  headers: Array<{ key: string; value: Buffer | null }>
  /** Whether any rule, pattern or header rule changed something. */
  masked: boolean
}

/** A compiled set of policies with its keyring. */
export class Masker {
  readonly #policies: Array<{ topics: Set<string>; rules: Array<{ segments: Segment[]; action: MaskAction }>; patterns: RegExp[]; headers: Set<string>; nonJson: 'encrypt' | 'redact' | 'keep' }>
  readonly #keys = new Map<string, Buffer>()
  readonly #current: string | undefined
  readonly #hashKey: Buffer | undefined

  constructor(policies: readonly MaskingPolicy[], keyring?: Keyring) {
    if (keyring) {
      for (const [id, key] of Object.entries(keyring.keys)) {
        if (!KEY_ID.test(id)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking key id ${JSON.stringify(id)} must match ${KEY_ID.source}`)
        this.#keys.set(id, keyBytes(key, id))
      }
      if (!this.#keys.has(keyring.currentKeyId)) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking.keyring.currentKeyId ${JSON.stringify(keyring.currentKeyId)} is not one of the keys`)
      this.#current = keyring.currentKeyId
      this.#hashKey = keyring.hashKey === undefined ? this.#keys.get(keyring.currentKeyId) : keyBytes(keyring.hashKey, 'hashKey')
    }
    this.#policies = policies.map((p, i) => {
      for (const r of p.rules) {
        if (r.action !== 'redact' && r.action !== 'hash' && r.action !== 'encrypt') throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking[${i}]: action must be redact, hash or encrypt, got ${JSON.stringify(r.action)}`)
        if ((r.action === 'encrypt' || r.action === 'hash') && !keyring) throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking[${i}]: ${r.action} needs a keyring`)
      }
      const patterns = (p.patterns ?? []).map((src) => {
        try {
          return new RegExp(src, 'g')
        } catch (err) {
          throw new LifelineError('LL_OPTIONS_INVALID', `invalid options: masking[${i}].patterns: ${JSON.stringify(src)} is not a regular expression`, { cause: err })
        }
      })
      return {
        topics: new Set(p.topics),
        rules: p.rules.map((r) => ({ segments: parsePath(r.path), action: r.action })),
        patterns,
        headers: new Set(p.headers ?? []),
        nonJson: p.nonJson ?? (keyring ? 'encrypt' : 'redact'),
      }
    })
  }

  /** Whether any policy covers `topic`. */
  covers(topic: string): boolean {
    return this.#policies.some((p) => p.topics.has(topic) || p.topics.has('*'))
  }

  encrypt(clear: string): string {
    if (!this.#current) throw new LifelineError('LL_OPTIONS_INVALID', 'encrypt needs a keyring')
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#current)!, iv)
    const ct = Buffer.concat([cipher.update(clear, 'utf8'), cipher.final()])
    return `enc:v1:${this.#current}:${iv.toString('base64url')}:${ct.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}`
  }

  /** Decrypts an `enc:v1:` value (LL_ARGUMENT_INVALID for an unknown key id or a tampered value). */
  decrypt(token: string): string {
    const parts = token.split(':')
    if (parts.length !== 6 || parts[0] !== 'enc' || parts[1] !== 'v1') throw new LifelineError('LL_ARGUMENT_INVALID', 'not an enc:v1 value')
    const key = this.#keys.get(parts[2]!)
    if (!key) throw new LifelineError('LL_ARGUMENT_INVALID', `unknown masking key id ${JSON.stringify(parts[2])}`)
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(parts[3]!, 'base64url'))
      decipher.setAuthTag(Buffer.from(parts[5]!, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(parts[4]!, 'base64url')), decipher.final()]).toString('utf8')
    } catch (err) {
      throw new LifelineError('LL_ARGUMENT_INVALID', 'an encrypted value failed authentication (wrong key or tampered)', { cause: err })
    }
  }

  hash(clear: string): string {
    if (!this.#hashKey) throw new LifelineError('LL_OPTIONS_INVALID', 'hash needs a keyring')
    return `hash:v1:${createHmac('sha256', this.#hashKey).update(clear).digest('hex')}`
  }

  /** Replaces every `enc:v1:` string in a JSON value by its clear JSON value (for replay). */
  unmaskValue(value: Buffer | null): Buffer | null {
    if (value === null) return null
    const text = value.toString('utf8')
    if (text.startsWith('enc:v1:') && !text.includes('"')) return Buffer.from(this.decrypt(text), 'utf8')
    let parsed: Json
    try {
      parsed = JSON.parse(text) as Json
    } catch {
      return value
    }
    const visit = (node: Json): Json => {
      if (typeof node === 'string' && node.startsWith('enc:v1:')) return JSON.parse(this.decrypt(node)) as Json
      if (Array.isArray(node)) return node.map(visit)
      if (node !== null && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, visit(v)]))
      return node
    }
    return Buffer.from(JSON.stringify(visit(parsed)), 'utf8')
  }

  /** Masks what a DLQ record of `topic` would carry. Never throws on bad input: an unparsable value follows `nonJson`. */
  mask(topic: string, input: { value: Buffer | null; errorMessage: string; errorStack?: string; headers: ReadonlyArray<{ key: string; value: Buffer | null }> }): MaskResult {
    const policies = this.#policies.filter((p) => p.topics.has(topic) || p.topics.has('*'))
    let value = input.value
    let errorMessage = input.errorMessage
    let errorStack = input.errorStack
    let headers = [...input.headers]
    if (policies.length === 0) return { value, errorMessage, errorStack, headers, masked: false }
    const clears = new Set<string>()
    const patterns = policies.flatMap((p) => p.patterns)
    let masked = false
    const apply = (action: MaskAction, clear: string): string => (action === 'redact' ? REDACTED : action === 'hash' ? this.hash(clear) : this.encrypt(clear))
    if (value !== null) {
      let parsed: Json | undefined
      try {
        parsed = JSON.parse(value.toString('utf8')) as Json
      } catch {
        parsed = undefined
      }
      if (parsed === undefined) {
        const nonJson = policies.some((p) => p.nonJson === 'encrypt') && this.#current ? 'encrypt' : policies.some((p) => p.nonJson !== 'keep') ? 'redact' : 'keep'
        if (nonJson !== 'keep' && policies.some((p) => p.rules.length > 0)) {
          const text = value.toString('utf8')
          if (text.length >= 4) clears.add(text)
          value = Buffer.from(nonJson === 'encrypt' ? this.encrypt(text) : REDACTED, 'utf8')
          masked = true
        }
      } else {
        let next: Json = parsed
        for (const p of policies) {
          for (const rule of p.rules) {
            next = mapPath(next, rule.segments, (v) => {
              if (v === null) return v
              const clear = JSON.stringify(v)
              if (typeof v === 'string' || typeof v === 'number') clears.add(String(v))
              masked = true
              return apply(rule.action, clear)
            })
          }
        }
        if (patterns.length > 0) {
          const scrub = (node: Json): Json => {
            if (typeof node === 'string') {
              const out = redactPatterns(node, patterns)
              if (out !== node) masked = true
              return out
            }
            if (Array.isArray(node)) return node.map(scrub)
            if (node !== null && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, scrub(v)]))
            return node
          }
          next = scrub(next)
        }
        if (masked) value = Buffer.from(JSON.stringify(next), 'utf8')
      }
    }
    const scrubText = (text: string): string => {
      let out = text
      // Longest first, so a value containing another is replaced whole.
      for (const clear of [...clears].sort((a, b) => b.length - a.length)) if (clear.length >= 3) out = out.split(clear).join(REDACTED)
      return redactPatterns(out, patterns)
    }
    const newMessage = scrubText(errorMessage)
    const newStack = errorStack === undefined ? undefined : scrubText(errorStack)
    if (newMessage !== errorMessage || newStack !== errorStack) masked = true
    errorMessage = newMessage
    errorStack = newStack
    const headerNames = new Set(policies.flatMap((p) => [...p.headers]))
    if (headerNames.size > 0) {
      headers = headers.map((h) => {
        if (!headerNames.has(h.key) || h.value === null) return h
        masked = true
        return { key: h.key, value: Buffer.from(REDACTED) }
      })
    }
    return { value, errorMessage, errorStack, headers, masked }
  }
}

function redactPatterns(text: string, patterns: readonly RegExp[]): string {
  let out = text
  for (const re of patterns) out = out.replace(re, REDACTED)
  return out
}
