/**
 * The shapes of masking's options (the policies and the keyring) and their one schema, shared by the
 * consumer's, the indexer's and the DLQ processor's options. The Masker (masking.ts) checks the rest.
 *
 * @module
 */
import Type from 'typebox'

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
  /** Regular expressions whose matches are redacted in messages, stacks, string values and non-JSON text values. */
  patterns?: string[]
  /** Header names whose values are redacted. */
  headers?: string[]
  /** A value that is not JSON (the rules cannot apply): `encrypt` it whole (default when a key exists), `redact` it, or `keep` it (patterns still apply to text). */
  nonJson?: 'encrypt' | 'redact' | 'keep'
  /** `encrypt`: the record key is encrypted (deterministically: equal keys, equal tokens); default: kept. */
  key?: 'encrypt' | 'keep'
}

/**
 * The one schema of `masking: { policies, keyring }` (the consumer's options, the indexer's, the processor's):
 * shapes only; the Masker constructor checks the rest (paths, keys, patterns).
 */
export const MaskingOptionsSchema = Type.Object(
  {
    policies: Type.Array(
      Type.Object(
        {
          topics: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
          rules: Type.Array(Type.Object({ path: Type.String({ minLength: 1 }), action: Type.Union([Type.Literal('redact'), Type.Literal('hash'), Type.Literal('encrypt')]) }, { additionalProperties: false })),
          patterns: Type.Optional(Type.Array(Type.String())),
          headers: Type.Optional(Type.Array(Type.String())),
          nonJson: Type.Optional(Type.Union([Type.Literal('encrypt'), Type.Literal('redact'), Type.Literal('keep')])),
          key: Type.Optional(Type.Union([Type.Literal('encrypt'), Type.Literal('keep')])),
        },
        { additionalProperties: false },
      ),
    ),
    keyring: Type.Optional(
      Type.Object({ currentKeyId: Type.String(), keys: Type.Record(Type.String(), Type.Any()), hashKey: Type.Optional(Type.Any()), acceptV1: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
)

export interface Keyring {
  /** The key id new encryptions use. */
  currentKeyId: string
  /** Key id → 32-byte AES-256 key (Buffer, or base64/hex text of 32 bytes). Old ids stay for decryption. */
  keys: Record<string, Buffer | string>
  /** HMAC key for `hash` (32 bytes): required by hash rules, and never one of the encryption keys. */
  hashKey?: Buffer | string
  /** Whether `enc:v1:` values (encrypted without associated data) still decrypt (default true). */
  acceptV1?: boolean
}

/** Where an encrypted value sits: the topic whose policy encrypted it and its JSON path (`(key)`, `(raw)` for the key and a non-JSON value). */
export interface FieldRef {
  topic: string
  path: string
}
