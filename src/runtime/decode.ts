/**
 * Value decoders and schema validation. A decode or validation failure is a {@link DecodeError}:
 * permanent (retrying cannot change the bytes), and the DLQ record keeps the original bytes.
 */
import { Compile } from 'typebox/compile'
import { DecodeError } from '../retry/classify.js'
import type { Decoder } from './options.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

function text(value: Buffer): string {
  try {
    return utf8.decode(value)
  } catch (err) {
    throw new DecodeError('value is not valid UTF-8', { cause: err })
  }
}

/** JSON: null value (tombstone) → null; empty or malformed bytes → DecodeError. */
export const jsonDecoder: Decoder<unknown> = {
  name: 'json',
  decode(value) {
    if (value === null) return null
    if (value.length === 0) throw new DecodeError('value is empty, expected JSON')
    const source = text(value)
    try {
      return JSON.parse(source) as unknown
    } catch (err) {
      throw new DecodeError(`value is not valid JSON: ${(err as Error).message}`, { cause: err })
    }
  },
}

/** UTF-8 text: null → null; invalid UTF-8 → DecodeError. */
export const stringDecoder: Decoder<string | null> = {
  name: 'string',
  decode: (value) => (value === null ? null : text(value)),
}

/** The bytes as they are. */
export const rawDecoder: Decoder<Buffer | null> = { name: 'raw', decode: (value) => value }

export function resolveDecoder(decoder: 'json' | 'string' | 'raw' | Decoder<unknown> | undefined): Decoder<unknown> {
  if (decoder === undefined || decoder === 'json') return jsonDecoder
  if (decoder === 'string') return stringDecoder
  if (decoder === 'raw') return rawDecoder
  return decoder
}

/**
 * Wraps a decoder with JSON Schema validation (typebox schemas are JSON Schema). Failures list up to five
 * problems with their JSON pointer.
 */
export function withSchema(decoder: Decoder<unknown>, schema: object): Decoder<unknown> {
  const compiled = Compile(schema as never)
  return {
    name: `${decoder.name}+schema`,
    decode(value) {
      const decoded = wrapDecode(decoder, value)
      if (decoded === null || compiled.Check(decoded)) return decoded
      const problems = [...compiled.Errors(decoded)].slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`)
      throw new DecodeError(`value does not match the schema: ${problems.join('; ')}`, { code: 'LL_SCHEMA_INVALID', details: { problems } })
    },
  }
}

/** Runs a decoder; anything it throws that is not already a DecodeError becomes one. */
export function wrapDecode(decoder: Decoder<unknown>, value: Buffer | null): unknown {
  try {
    return decoder.decode(value)
  } catch (err) {
    if (err instanceof DecodeError) throw err
    throw new DecodeError(`decoder ${decoder.name} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
}
