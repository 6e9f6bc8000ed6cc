import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { RateLimiter } from '../../src/util/rate-limiter.js'

test('the rate limiter admits at most `rate` per sliding second', async () => {
  const limiter = new RateLimiter(50)
  const times: number[] = []
  for (let i = 0; i < 120; i++) times.push(await limiter.acquire())
  for (let i = 0; i + 50 < times.length; i++) assert.ok(times[i + 50]! - times[i]! >= 1000)
})

test('a rate that is not a positive integer is refused with LL_ARGUMENT_INVALID', () => {
  for (const rate of [0, -1, 1.5, Number.NaN]) assert.throws(() => new RateLimiter(rate), (err: unknown) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.field === 'rate', String(rate))
})

test('a wait for admission ends with LL_ABORTED when its signal aborts', async () => {
  const limiter = new RateLimiter(1, 60_000)
  await limiter.acquire()
  const c = new AbortController()
  const waiting = limiter.acquire(c.signal)
  c.abort()
  await assert.rejects(waiting, (err: unknown) => isLifelineError(err, 'LL_ABORTED'))
})
