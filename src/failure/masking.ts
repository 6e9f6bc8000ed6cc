/**
 * PII masking for dead letters (pure, except for crypto): policies by topic and JSON path, applied when
 * the runtime writes a DLQ record (the value, the key, the error message and the stack) and when the DLQ
 * indexer stores a record (foreign or Lifeline's own: what is masked already is left as it is).
 *
 * Actions:
 * - `redact`: the value becomes `"[REDACTED]"`;
 * - `hash`: `"hash:v1:<hex>"`, an HMAC-SHA256 under the keyring's `hashKey` (stable, so records can still be
 *   grouped and searched by it, but not reversible or guessable from a dictionary without the key);
 * - `encrypt`: `"enc:v2:<keyId>:<iv>:<ciphertext>:<tag>"` (base64url), AES-256-GCM under the keyring's
 *   current key with associated data binding it to (topic, JSON path): it decrypts only where it was
 *   encrypted, so a value copied into another record's topic or another field fails (LL_DECRYPT). Only a
 *   holder of the keyring (the DLQ processor, for a replay) can decrypt it.
 *
 * A policy's `key: 'encrypt'` encrypts the record key too, deterministically (the IV is an HMAC of the key
 * and its associated data): equal keys give equal tokens, so the DLQ still groups, filters and orders by key.
 *
 * Every clear value a rule masked (every leaf of an object or array it masked; numbers as written; strings
 * also as they read inside JSON text) and a masked key are also replaced wherever they appear in the error
 * message and stack — values of 1 to 3 characters only where they stand alone — and `patterns` (regular
 * expressions, e.g. e-mail addresses or card numbers) are redacted there, in string values of the payload,
 * and in a value that is text but not JSON.
 *
 * `enc:v1:` values (before associated data) still decrypt, without that binding, unless the keyring says
 * `acceptV1: false`; see docs/masking.md.
 *
 * Paths: `$.a.b`, `$.items[*].email`, `$.items[0]`, `$['a b']`, `$..email` (any depth), `$` (the whole value).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { LifelineError } from '../errors.js'
import { mapPath, mapStrings, parsePath, type Segment } from '../util/json-path.js'
import { parseJson, stringifyJson, type Json } from '../util/json-text.js'
import type { FieldRef, Keyring, MaskAction, MaskingPolicy } from './masking-options.js'
import { clearTexts, redactPatterns, REDACTED, scrubClears } from './masking-scrub.js'

export { parsePath, REDACTED }
export { MaskingOptionsSchema, type FieldRef, type Keyring, type MaskAction, type MaskingPolicy, type MaskRule } from './masking-options.js'

/** Header on a DLQ record a masking policy changed: `v1` (the header's own version, whatever the encryption's). */
export const MASKED_HEADER = 'lifeline.masked'
/** The path of an encrypted record key and of an encrypted non-JSON value. */
export const KEY_PATH = '(key)'
export const RAW_PATH = '(raw)'
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/
const TOKEN = /^enc:v([12]):([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]+):([A-Za-z0-9_-]*):([A-Za-z0-9_-]+)$/
const HASH_TOKEN = /^hash:v1:[0-9a-f]{64}$/

/** Whether `s` is what masking writes (an `enc:` or `hash:` token, or `[REDACTED]`): masking leaves it alone. */
export function isMaskedToken(s: string): boolean {
  return s === REDACTED || TOKEN.test(s) || HASH_TOKEN.test(s)
}

/** Whether `s` is an encrypted value (`enc:v1:` or `enc:v2:`). */
export function isEncrypted(s: string): boolean {
  return TOKEN.test(s)
}

const options = (message: string) => new LifelineError('LL_OPTIONS_INVALID', `invalid options: ${message}`)

function keyBytes(value: Buffer | string, id: string): Buffer {
  const bytes = Buffer.isBuffer(value) ? value : /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64')
  if (bytes.length !== 32) throw options(`masking key ${JSON.stringify(id)} must be 32 bytes (AES-256), got ${bytes.length}`)
  return bytes
}

const aad = (at: FieldRef) => Buffer.from(`lifeline.enc.v2\n${at.topic}\n${at.path}`, 'utf8')
const decryptFailure = (message: string, at: FieldRef | undefined, cause?: unknown) =>
  new LifelineError('LL_DECRYPT', message, { details: at === undefined ? {} : { topic: at.topic, path: at.path }, ...(cause === undefined ? {} : { cause }) })

export interface MaskInput {
  value: Buffer | null
  errorMessage: string
  errorStack?: string
  headers: ReadonlyArray<{ key: string; value: Buffer | null }>
  /** The record key: masked under a policy's `key: 'encrypt'` (the result's `key`). */
  key?: Buffer | null
}

export interface MaskResult {
  value: Buffer | null
  errorMessage: string
  errorStack: string | undefined
  headers: Array<{ key: string; value: Buffer | null }>
  /** The key, masked when a policy says so (undefined when the input had none). */
  key?: Buffer | null
  /** Whether any rule, pattern, header or key rule changed something. */
  masked: boolean
}

interface CompiledPolicy {
  topics: Set<string>
  rules: Array<{ segments: Segment[]; action: MaskAction }>
  patterns: RegExp[]
  headers: Set<string>
  nonJson: 'encrypt' | 'redact' | 'keep'
  key: 'encrypt' | 'keep'
}

const POLICY_FIELDS = new Set(['topics', 'rules', 'patterns', 'headers', 'nonJson', 'key'])

/** A compiled set of policies with its keyring. */
export class Masker {
  readonly #policies: CompiledPolicy[]
  readonly #keys = new Map<string, Buffer>()
  /** Per key id: the key that derives deterministic IVs (for record keys), from the AES key by HKDF. */
  readonly #ivKeys = new Map<string, Buffer>()
  readonly #current: string | undefined
  readonly #hashKey: Buffer | undefined
  readonly #acceptV1: boolean

  constructor(policies: readonly MaskingPolicy[], keyring?: Keyring) {
    if (keyring) {
      for (const [id, key] of Object.entries(keyring.keys)) {
        if (!KEY_ID.test(id)) throw options(`masking key id ${JSON.stringify(id)} must match ${KEY_ID.source}`)
        this.#keys.set(id, keyBytes(key, id))
      }
      if (!this.#keys.has(keyring.currentKeyId)) throw options(`masking.keyring.currentKeyId ${JSON.stringify(keyring.currentKeyId)} is not one of the keys`)
      this.#current = keyring.currentKeyId
      if (keyring.hashKey !== undefined) {
        const hashKey = keyBytes(keyring.hashKey, 'hashKey')
        // One key, one purpose: a key both encrypting and hashing would tie the two (issue 13, finding 10).
        if ([...this.#keys.values()].some((k) => k.equals(hashKey))) throw options('masking.keyring.hashKey must differ from every encryption key (one key, one purpose)')
        this.#hashKey = hashKey
      }
      if (keyring.acceptV1 !== undefined && typeof keyring.acceptV1 !== 'boolean') throw options('masking.keyring.acceptV1 must be a boolean')
    }
    this.#acceptV1 = keyring?.acceptV1 ?? true
    this.#policies = policies.map((p, i) => {
      if (p === null || typeof p !== 'object' || !Array.isArray(p.topics) || !Array.isArray(p.rules)) throw options(`masking[${i}]: a policy needs topics and rules (arrays)`)
      for (const k of Object.keys(p)) if (!POLICY_FIELDS.has(k)) throw options(`masking[${i}].${k}: unknown field`)
      for (const r of p.rules) {
        if (r.action !== 'redact' && r.action !== 'hash' && r.action !== 'encrypt') throw options(`masking[${i}]: action must be redact, hash or encrypt, got ${JSON.stringify(r.action)}`)
        if (r.action === 'encrypt' && !keyring) throw options(`masking[${i}]: encrypt needs a keyring`)
        if (r.action === 'hash' && !keyring) throw options(`masking[${i}]: hash needs a keyring`)
        if (r.action === 'hash' && !this.#hashKey) throw options(`masking[${i}]: hash needs masking.keyring.hashKey (a key of its own, not an encryption key)`)
      }
      if (p.key !== undefined && p.key !== 'encrypt' && p.key !== 'keep') throw options(`masking[${i}].key must be encrypt or keep`)
      if (p.key === 'encrypt' && !keyring) throw options(`masking[${i}].key: encrypt needs a keyring`)
      if (p.nonJson !== undefined && !['encrypt', 'redact', 'keep'].includes(p.nonJson)) throw options(`masking[${i}].nonJson must be encrypt, redact or keep`)
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
        key: p.key ?? 'keep',
      }
    })
  }

  /** Whether any policy covers `topic`. */
  covers(topic: string): boolean {
    return this.#policies.some((p) => p.topics.has(topic) || p.topics.has('*'))
  }

  /** Encrypts `clear` for the field `at` (`enc:v2:`); `deterministic` derives the IV from the clear value (record keys). */
  encrypt(clear: string | Buffer, at: FieldRef, deterministic = false): string {
    if (!this.#current) throw options('encrypt needs a keyring')
    const bytes = typeof clear === 'string' ? Buffer.from(clear, 'utf8') : clear
    const ad = aad(at)
    const iv = deterministic ? createHmac('sha256', this.#ivKey(this.#current)).update(ad).update(Buffer.from([0])).update(bytes).digest().subarray(0, 12) : randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#current)!, iv)
    cipher.setAAD(ad)
    const ct = Buffer.concat([cipher.update(bytes), cipher.final()])
    return `enc:v2:${this.#current}:${iv.toString('base64url')}:${ct.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}`
  }

  #ivKey(id: string): Buffer {
    let k = this.#ivKeys.get(id)
    if (!k) this.#ivKeys.set(id, (k = Buffer.from(hkdfSync('sha256', this.#keys.get(id)!, Buffer.alloc(0), 'lifeline.enc.v2.iv', 32))))
    return k
  }

  /**
   * Decrypts an `enc:v2:` value encrypted for `at` (or an `enc:v1:` one, which carries no binding, unless
   * the keyring refuses them). LL_DECRYPT for anything else: not a token, an unknown key id, a tampered
   * value, or one encrypted for another topic or path.
   */
  decrypt(token: string, at: FieldRef): Buffer {
    const m = TOKEN.exec(token)
    if (!m) throw decryptFailure(`not an encrypted value at ${at.path}`, at)
    const [, version, keyId, iv, ct, tag] = m as unknown as [string, '1' | '2', string, string, string, string]
    if (version === '1' && !this.#acceptV1) throw decryptFailure(`the enc:v1 value at ${at.path} is refused (keyring.acceptV1 is false): it is bound to no topic or field`, at)
    const key = this.#keys.get(keyId)
    if (!key) throw decryptFailure(`the encrypted value at ${at.path} names an unknown masking key id ${JSON.stringify(keyId)}`, at)
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
      if (version === '2') decipher.setAAD(aad(at))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()])
    } catch (err) {
      throw decryptFailure(
        `the encrypted value at ${at.path} does not decrypt for topic ${at.topic}: it was encrypted for another topic or field (moved), tampered with, or under another key`,
        at,
        err,
      )
    }
  }

  /** The first of `topics` the token at `path` decrypts for (a record's value may have been masked under its origin's or its DLQ topic's policy). */
  #decryptFor(token: string, topics: readonly string[], path: string): Buffer {
    let failure: unknown
    for (const topic of topics) {
      try {
        return this.decrypt(token, { topic, path })
      } catch (err) {
        failure ??= err
      }
    }
    throw failure ?? decryptFailure(`no topic to decrypt the value at ${path} for`, undefined)
  }

  hash(clear: string): string {
    if (!this.#hashKey) throw options('hash needs masking.keyring.hashKey')
    return `hash:v1:${createHmac('sha256', this.#hashKey).update(clear).digest('hex')}`
  }

  /**
   * The clear value of a masked value of a record whose policy topic is one of `topics` (its origin topic,
   * then its DLQ topic): every `enc:` token decrypted where it sits (LL_DECRYPT when one does not). A value
   * with no token is returned as it is, byte for byte.
   */
  unmaskValue(value: Buffer | null, topics: string | readonly string[]): Buffer | null {
    if (value === null) return null
    const candidates = typeof topics === 'string' ? [topics] : topics
    const text = value.toString('utf8')
    if (!text.includes('enc:v')) return value
    if (TOKEN.test(text)) return this.#decryptFor(text, candidates, RAW_PATH)
    const parsed = parseJson(text)
    if (parsed === undefined) return value
    const clear = mapStrings(parsed, (s, path) => {
      if (!TOKEN.test(s)) return s
      const json = parseJson(this.#decryptFor(s, candidates, path).toString('utf8'))
      if (json === undefined) throw decryptFailure(`the encrypted value at ${path} is not JSON once decrypted`, { topic: candidates[0] ?? '', path })
      return json
    })
    return Buffer.from(stringifyJson(clear), 'utf8')
  }

  /** The clear record key of a key masked under `key: 'encrypt'` (any other key as it is). */
  unmaskKey(key: Buffer | null, topics: string | readonly string[]): Buffer | null {
    if (key === null) return null
    const text = key.toString('utf8')
    if (!TOKEN.test(text)) return key
    return this.#decryptFor(text, typeof topics === 'string' ? [topics] : topics, KEY_PATH)
  }

  /**
   * Paths of the encrypted values of `edited` that do not belong where they sit in a record of `topics`
   * whose stored value is `stored`: an `enc:v2:` value must decrypt there, an `enc:v1:` one (no binding)
   * must be the very value stored at that path. An edit may keep a record's encrypted fields, not bring
   * another record's.
   */
  foreignTokens(edited: Buffer, stored: Buffer | null, topics: readonly string[]): string[] {
    const after = parseJson(edited.toString('utf8'))
    if (after === undefined) return []
    const before = stored === null ? undefined : parseJson(stored.toString('utf8'))
    const storedAt = new Map<string, string>()
    if (before !== undefined) mapStrings(before, (s, path) => (storedAt.set(path, s), s))
    const foreign: string[] = []
    mapStrings(after, (s, path) => {
      if (!TOKEN.test(s)) return s
      if (s.startsWith('enc:v1:')) {
        if (storedAt.get(path) !== s) foreign.push(path)
        return s
      }
      try {
        this.#decryptFor(s, topics, path)
      } catch {
        foreign.push(path)
      }
      return s
    })
    return foreign
  }

  /** Masks what a DLQ record of `topic` would carry. Never throws on bad input: an unparsable value follows `nonJson`. */
  mask(topic: string, input: MaskInput): MaskResult {
    const policies = this.#policies.filter((p) => p.topics.has(topic) || p.topics.has('*'))
    let value = input.value
    let errorMessage = input.errorMessage
    let errorStack = input.errorStack
    let headers = [...input.headers]
    let key = input.key
    const result = (masked: boolean): MaskResult => ({ value, errorMessage, errorStack, headers, ...(input.key === undefined ? {} : { key }), masked })
    if (policies.length === 0) return result(false)
    const clears = new Set<string>()
    const patterns = policies.flatMap((p) => p.patterns)
    const hasRules = policies.some((p) => p.rules.length > 0)
    let masked = false
    const apply = (action: MaskAction, clear: string | Buffer, path: string): string =>
      action === 'redact' ? REDACTED : action === 'hash' ? this.hash(clear.toString()) : this.encrypt(clear, { topic, path })

    if (key !== undefined && key !== null && policies.some((p) => p.key === 'encrypt') && !isEncrypted(key.toString('utf8'))) {
      const text = key.toString('utf8')
      if (Buffer.from(text, 'utf8').equals(key) && text.length > 0) clears.add(text)
      key = Buffer.from(this.encrypt(key, { topic, path: KEY_PATH }, true), 'utf8')
      masked = true
    }

    if (value !== null) {
      const text = value.toString('utf8')
      const parsed = parseJson(text)
      if (parsed === undefined) {
        const isText = Buffer.from(text, 'utf8').equals(value)
        const nonJson = policies.some((p) => p.nonJson === 'encrypt') && this.#current ? 'encrypt' : policies.some((p) => p.nonJson !== 'keep') ? 'redact' : 'keep'
        if (isText && isMaskedToken(text)) {
          // Masked whole already (a Lifeline record the runtime masked): left as it is.
        } else if (nonJson !== 'keep' && (hasRules || (!isText && patterns.length > 0))) {
          if (isText) clears.add(text)
          value = Buffer.from(nonJson === 'encrypt' ? this.encrypt(value, { topic, path: RAW_PATH }) : REDACTED, 'utf8')
          masked = true
        } else if (isText && patterns.length > 0) {
          const out = redactPatterns(text, patterns)
          if (out !== text) {
            value = Buffer.from(out, 'utf8')
            masked = true
          }
        }
      } else {
        let changed = false
        let next: Json = parsed
        for (const p of policies) {
          for (const rule of p.rules) {
            next = mapPath(next, rule.segments, (v, path) => {
              if (v === null || (typeof v === 'string' && isMaskedToken(v))) return v
              clearTexts(v, clears)
              changed = true
              return apply(rule.action, stringifyJson(v), path)
            })
          }
        }
        if (patterns.length > 0) {
          next = mapStrings(next, (s) => {
            if (isMaskedToken(s)) return s
            const out = redactPatterns(s, patterns)
            if (out !== s) changed = true
            return out
          })
        }
        if (changed) {
          value = Buffer.from(stringifyJson(next), 'utf8')
          masked = true
        }
      }
    }
    const scrubText = (text: string): string => redactPatterns(scrubClears(text, clears), patterns)
    const newMessage = scrubText(errorMessage)
    const newStack = errorStack === undefined ? undefined : scrubText(errorStack)
    if (newMessage !== errorMessage || newStack !== errorStack) masked = true
    errorMessage = newMessage
    errorStack = newStack
    const headerNames = new Set(policies.flatMap((p) => [...p.headers]))
    if (headerNames.size > 0) {
      headers = headers.map((h) => {
        if (!headerNames.has(h.key) || h.value === null || h.value.toString('utf8') === REDACTED) return h
        masked = true
        return { key: h.key, value: Buffer.from(REDACTED) }
      })
    }
    return result(masked)
  }
}
