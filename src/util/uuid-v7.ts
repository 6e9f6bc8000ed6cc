/**
 * UUID version 7 (RFC 9562 § 5.7): 48 bits of Unix time in milliseconds, the version, 74 random bits.
 *
 * Ids made in time order sort in time order, so a B-tree index over them takes each new id at its right
 * edge, and ids made together (a redrive batch's replay ids) sit on a few neighbouring leaf pages. Random
 * (v4) ids land on a random page each: on an index larger than the cache, a read per row for every insert
 * and every look-up (issue 14: the replay rows' offsets were the costliest write of a bulk redrive).
 *
 * @module
 */
import { randomFillSync } from 'node:crypto'

const POOL = 16 * 256
let pool = Buffer.alloc(0)
let at = POOL

/** A new UUID v7 as lower-case 8-4-4-4-12 hex; `now` (ms since the epoch) for tests. */
export function uuidV7(now: number = Date.now()): string {
  if (!Number.isSafeInteger(now) || now < 0 || now >= 2 ** 48) throw new RangeError(`uuidV7: the time must be 0 to 2^48 - 1 ms, got ${now}`)
  if (at === POOL) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL))
    at = 0
  }
  const b = Buffer.from(pool.subarray(at, at + 16))
  at += 16
  b.writeUIntBE(now, 0, 6)
  b[6] = (b[6]! & 0x0f) | 0x70
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = b.toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}
