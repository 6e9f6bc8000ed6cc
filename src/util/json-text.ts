/**
 * JSON that survives a parse and a stringify unchanged in meaning (pure): numbers keep their source text
 * ({@link JsonNumber}), so `12345678901234567890` or `1.10` come back as they were, where `JSON.parse`
 * would round them to a double. Masking reads and rewrites payloads with it: a masked payload must not
 * corrupt the fields it leaves alone, and an encrypted number must decrypt to the same digits.
 *
 * Objects have no prototype (a `__proto__` key is data, as in `JSON.parse`); the last of duplicate keys
 * wins. Input deeper than {@link MAX_JSON_DEPTH} is refused (undefined), never a stack overflow.
 *
 * @module
 */

/** A JSON number, as written. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

export type Json = null | boolean | string | JsonNumber | Json[] | { [key: string]: Json }

/** Deepest nesting read (arrays and objects); deeper input is not read. */
export const MAX_JSON_DEPTH = 200

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
// eslint-disable-next-line no-control-regex -- JSON strings may not hold raw control characters (RFC 8259 §7)
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y
const SPACE = /[ \t\n\r]*/y

/** Parses JSON text (what `JSON.parse` accepts), numbers as {@link JsonNumber}; undefined when it is not JSON or too deep. */
export function parseJson(text: string): Json | undefined {
  let at = 0
  const skip = () => {
    SPACE.lastIndex = at
    SPACE.exec(text)
    at = SPACE.lastIndex
  }
  const fail = Symbol('fail')
  const value = (depth: number): Json | typeof fail => {
    if (depth > MAX_JSON_DEPTH) return fail
    skip()
    const c = text[at]
    if (c === '{') {
      at++
      const out = Object.create(null) as { [key: string]: Json }
      skip()
      if (text[at] === '}') {
        at++
        return out
      }
      for (;;) {
        skip()
        STRING.lastIndex = at
        const k = STRING.exec(text)
        if (!k) return fail
        at = STRING.lastIndex
        skip()
        if (text[at] !== ':') return fail
        at++
        const v = value(depth + 1)
        if (v === fail) return fail
        out[JSON.parse(k[0]) as string] = v
        skip()
        if (text[at] === ',') {
          at++
          continue
        }
        if (text[at] === '}') {
          at++
          return out
        }
        return fail
      }
    }
    if (c === '[') {
      at++
      const out: Json[] = []
      skip()
      if (text[at] === ']') {
        at++
        return out
      }
      for (;;) {
        const v = value(depth + 1)
        if (v === fail) return fail
        out.push(v)
        skip()
        if (text[at] === ',') {
          at++
          continue
        }
        if (text[at] === ']') {
          at++
          return out
        }
        return fail
      }
    }
    if (c === '"') {
      STRING.lastIndex = at
      const m = STRING.exec(text)
      if (!m) return fail
      at = STRING.lastIndex
      return JSON.parse(m[0]) as string
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, at)) {
        at += word.length
        return v
      }
    }
    NUMBER.lastIndex = at
    const n = NUMBER.exec(text)
    if (!n) return fail
    at = NUMBER.lastIndex
    return new JsonNumber(n[0])
  }
  const v = value(0)
  if (v === fail) return undefined
  skip()
  return at === text.length ? v : undefined
}

/** Writes `value` as compact JSON (numbers as they were read). */
export function stringifyJson(value: Json): string {
  if (value === null || typeof value === 'boolean') return String(value)
  if (typeof value === 'string') return JSON.stringify(value)
  if (value instanceof JsonNumber) return value.text
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(',')}]`
  return `{${Object.entries(value)
    .map(([k, v]) => `${JSON.stringify(k)}:${stringifyJson(v)}`)
    .join(',')}}`
}

/** Whether `value` is an object (not an array, not a number). */
export function isJsonObject(value: Json): value is { [key: string]: Json } {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof JsonNumber)
}
