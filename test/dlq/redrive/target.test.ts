import assert from 'node:assert/strict'
import { test } from 'node:test'
import Value from 'typebox/value'
import { isLifelineError } from '../../../src/errors.js'
import { MAX_RETRY_TIERS } from '../../../src/failure/tier-record.js'
import { Schemas } from '../../../src/dlq/http/routes.js'
import { parseTarget, TargetSchema } from '../../../src/dlq/redrive/target.js'

const cases: [unknown, string | null][] = [
  [{ kind: 'origin' }, null],
  [{ kind: 'retry-tier', tier: 1, service: 'orders' }, null],
  [{ kind: 'retry-tier', tier: MAX_RETRY_TIERS, service: 'a'.repeat(249) }, null],
  [{ kind: 'retry-tier', tier: MAX_RETRY_TIERS + 1, service: 'orders' }, 'target.tier'],
  [{ kind: 'retry-tier', tier: 0, service: 'orders' }, 'target.tier'],
  [{ kind: 'retry-tier', tier: 1.5, service: 'orders' }, 'target.tier'],
  [{ kind: 'retry-tier', service: 'orders' }, 'target.tier'],
  [{ kind: 'retry-tier', tier: 1 }, 'target.service'],
  [{ kind: 'retry-tier', tier: 1, service: 'a'.repeat(250) }, 'target.service'],
  [{ kind: 'retry-tier', tier: 1, service: 'has space' }, 'target.service'],
  [{ kind: 'topic', topic: 'audit.replays' }, null],
  [{ kind: 'topic', topic: 'audit', partition: 0 }, null],
  [{ kind: 'topic', topic: 'audit', partition: 0x7fffffff }, null],
  [{ kind: 'topic', topic: 'audit', partition: 0x80000000 }, 'target.partition'],
  [{ kind: 'topic', topic: 'audit', partition: -1 }, 'target.partition'],
  [{ kind: 'topic', topic: 'bad/topic' }, 'target.topic'],
  [{ kind: 'topic', topic: 'a'.repeat(250) }, 'target.topic'],
  [{ kind: 'topic' }, 'target.topic'],
  [{ kind: 'origin', topic: 'x' }, 'target.topic'],
  [{ kind: 'topic', topic: 'a', extra: 1 }, 'target.extra'],
  [{ kind: 'elsewhere' }, 'target.kind'],
  [{}, 'target.kind'],
  ['origin', 'target'],
  [[{ kind: 'origin' }], 'target'],
]

test('parseTarget and the API schema accept exactly the same targets, and a refusal names the field', () => {
  for (const [input, field] of cases) {
    const label = JSON.stringify(input).slice(0, 80)
    assert.equal(Value.Check(TargetSchema, input), field === null, `schema: ${label}`)
    assert.equal(Value.Check(Schemas.Replay, { target: input }), field === null, `API body: ${label}`)
    if (field === null) assert.deepEqual(parseTarget(input), input, label)
    else assert.throws(() => parseTarget(input), (err: unknown) => isLifelineError(err, 'LL_ARGUMENT_INVALID') && err.details.field === field && err.message.startsWith(field), label)
  }
  assert.deepEqual(parseTarget(undefined), { kind: 'origin' })
  assert.deepEqual(parseTarget(null), { kind: 'origin' })
})

test('parseTarget returns a copy the caller cannot change under it', () => {
  const input = { kind: 'topic', topic: 'audit', partition: 2 }
  const parsed = parseTarget(input)
  input.partition = 3
  assert.deepEqual(parsed, { kind: 'topic', topic: 'audit', partition: 2 })
})
