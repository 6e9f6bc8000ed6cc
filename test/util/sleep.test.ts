import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { sleep } from '../../src/util/sleep.js'

test('sleep resolves, and rejects with LL_ABORTED at once when aborted', async () => {
  await sleep(1, new AbortController().signal)
  const c = new AbortController()
  const p = sleep(60_000, c.signal)
  c.abort()
  await assert.rejects(p, (err: unknown) => isLifelineError(err, 'LL_ABORTED'))
  await assert.rejects(sleep(1, c.signal), (err: unknown) => isLifelineError(err, 'LL_ABORTED'))
})
