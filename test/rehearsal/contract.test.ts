import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { assertConsumer, loadConsumerFactory } from '../../src/rehearsal/contract.js'
import { REFERENCE_CONSUMER } from '../../src/rehearsal/run.js'

describe('rehearsal consumer contract', () => {
  test('the reference consumer and a user module load as factories', async () => {
    assert.equal(typeof (await loadConsumerFactory(REFERENCE_CONSUMER)), 'function')
    assert.equal(typeof (await loadConsumerFactory(new URL('../fixtures/rehearsal-naive-consumer.ts', import.meta.url).href)), 'function')
  })

  test('a module without a factory, a missing module, and a factory returning something else are refused with LL_REHEARSAL', async () => {
    await assert.rejects(loadConsumerFactory(new URL('../fixtures/rehearsal-not-a-consumer.ts', import.meta.url).href), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /must export a function/.test((e as Error).message))
    await assert.rejects(loadConsumerFactory('./no/such/module.ts'), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /cannot import/.test((e as Error).message))
    assert.throws(() => assertConsumer({ start: 1 }, 'm.ts'), (e: unknown) => isLifelineError(e, 'LL_REHEARSAL') && /not a Lifeline consumer/.test((e as Error).message))
  })
})
