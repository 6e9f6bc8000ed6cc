/**
 * Scrubbing free text (an error message, a stack, a string value): the clear values a rule masked and the
 * `patterns` are replaced by {@link REDACTED} wherever they appear (pure).
 *
 * @module
 */
import { isJsonObject, JsonNumber, type Json } from '../util/json-text.js'

export const REDACTED = '[REDACTED]'

/** The texts under which a masked value may be quoted in a message: every leaf, strings also JSON-escaped, numbers as written. */
export function clearTexts(node: Json, out: Set<string>): void {
  if (typeof node === 'string') {
    if (node.length === 0) return
    out.add(node)
    const escaped = JSON.stringify(node).slice(1, -1)
    if (escaped !== node) out.add(escaped)
  } else if (node instanceof JsonNumber) out.add(node.text)
  else if (Array.isArray(node)) for (const v of node) clearTexts(v, out)
  else if (isJsonObject(node)) for (const v of Object.values(node)) clearTexts(v, out)
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** `text` with every clear value replaced (longest first); values of 1 to 3 characters only where they stand alone. */
export function scrubClears(text: string, clears: ReadonlySet<string>): string {
  let out = text
  for (const clear of [...clears].sort((a, b) => b.length - a.length)) {
    if (clear.length >= 4) out = out.split(clear).join(REDACTED)
    else out = out.replace(new RegExp(`(?<![\\p{L}\\p{N}_])${escapeRegExp(clear)}(?![\\p{L}\\p{N}_])`, 'gu'), REDACTED)
  }
  return out
}

export function redactPatterns(text: string, patterns: readonly RegExp[]): string {
  let out = text
  for (const re of patterns) out = out.replace(re, REDACTED)
  return out
}
