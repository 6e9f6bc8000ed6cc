import assert from 'node:assert/strict'
import { test } from 'node:test'
import Type from 'typebox'
import { isLifelineError } from '../../src/errors.js'
import { validateOptions } from '../../src/util/options.js'

const Schema = Type.Object(
  {
    brokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    retry: Type.Optional(Type.Object({ maxAttempts: Type.Integer({ minimum: 1 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
)

test('valid options come back frozen', () => {
  const opts = validateOptions(Schema, { brokers: ['a:1'] })
  assert.ok(Object.isFrozen(opts))
})

test('every problem is reported with the option path', () => {
  assert.throws(
    () => validateOptions(Schema, { brokers: ['ok', ''], retry: { maxAttempts: 0 }, bogus: 1 }, 'consumer'),
    (err: unknown) => {
      assert.ok(isLifelineError(err, 'LL_OPTIONS_INVALID'))
      const msg = (err as Error).message
      assert.match(msg, /consumer\.brokers\[1\]: /)
      assert.match(msg, /consumer\.retry\.maxAttempts: must be >= 1/)
      assert.match(msg, /consumer\.bogus: unknown option/)
      return true
    },
  )
})

test('a missing required option names it', () => {
  assert.throws(() => validateOptions(Schema, {}), /brokers/)
})
