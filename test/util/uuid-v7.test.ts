import assert from 'node:assert/strict'
import { test } from 'node:test'
import { uuidV7 } from '../../src/util/uuid-v7.js'

test('uuidV7: version 7, RFC 9562 variant, the time in its first 48 bits, unique, sorted by time', () => {
  const now = Date.UTC(2026, 11, 5, 1, 2, 3, 456)
  const id = uuidV7(now)
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), now)
  // More than one pool of random bytes: never the same id twice.
  const many = Array.from({ length: 10_000 }, () => uuidV7(now))
  assert.equal(new Set(many).size, many.length)
  // Ids of later milliseconds sort after (text order is time order).
  const ordered = [now, now + 1, now + 1000, now + 86_400_000].map((ms) => uuidV7(ms))
  assert.deepEqual([...ordered].sort(), ordered)
  assert.match(uuidV7(), /^[0-9a-f]{8}-[0-9a-f]{4}-7/)
})

test('uuidV7 refuses a time outside 48 bits', () => {
  for (const bad of [-1, 2 ** 48, 1.5, Number.NaN]) assert.throws(() => uuidV7(bad), RangeError)
})
