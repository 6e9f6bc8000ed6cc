/** Random names for tests: every topic, group, database and table a test makes is named by this one function. */
import { randomBytes } from 'node:crypto'

/**
 * A random, collision-free name: `<prefix><sep><time, base 36><sep><8 hex>`. With `_` (for SQL) it stays
 * a plain identifier when the prefix is one; `-` (the default) reads better in topic and group names.
 */
export function randomName(prefix: string, separator: '-' | '_' = '-'): string {
  return `${prefix}${separator}${Date.now().toString(36)}${separator}${randomBytes(4).toString('hex')}`
}
