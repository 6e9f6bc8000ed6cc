import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { ErrorCodes, LifelineError, dlqConflict, invalidArgument, type ErrorCode } from '../../../src/errors.js'
import { errorResponse, HTTP_STATUS_OF_CODE } from '../../../src/dlq/http/io.js'

/** The status table of docs/api.md "Errors and statuses": status → the codes its last column names. */
function documentedStatuses(): Map<string, number> {
  const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8')
  const section = doc.slice(doc.indexOf('## Errors and statuses'), doc.indexOf('\n## ', doc.indexOf('## Errors and statuses') + 5))
  const out = new Map<string, number>()
  for (const line of section.split('\n')) {
    const m = /^\| (\d{3}) \|.*\| ([^|]+) \|$/.exec(line)
    if (!m) continue
    for (const code of m[2]!.matchAll(/`(LL_[A-Z0-9_*]+)`/g)) out.set(code[1]!, Number(m[1]))
  }
  return out
}

test('docs/api.md lists exactly the code → status table, with the same statuses', () => {
  const documented = documentedStatuses()
  const table = new Map<string, number>(Object.entries(HTTP_STATUS_OF_CODE) as [string, number][])
  table.set('LL_KAFKA_*', 503)
  assert.deepEqual([...documented.entries()].sort(), [...table.entries()].sort())
  for (const code of table.keys()) if (code !== 'LL_KAFKA_*') assert.ok(code in ErrorCodes, `${code} is in the catalogue`)
})

test('errorResponse answers every catalogued code by the table, Kafka with 503 and anything else with a bare 500', () => {
  for (const code of Object.keys(ErrorCodes) as ErrorCode[]) {
    const res = errorResponse(new LifelineError(code, 'the message'))
    const expected = code === 'LL_INTERNAL' ? 500 : HTTP_STATUS_OF_CODE[code] ?? (code.startsWith('LL_KAFKA_') ? 503 : 500)
    assert.equal(res.status, expected, code)
    if (expected === 500) assert.deepEqual(res, { status: 500, code: 'LL_INTERNAL', message: 'internal error (logged by the processor)' }, code)
    else assert.equal(res.code, code)
  }
  assert.equal(errorResponse(new Error('secret driver text')).message.includes('secret'), false)
  assert.equal(errorResponse(new LifelineError('LL_KAFKA_PRODUCE', 'broker text')).message.includes('broker text'), false)
  assert.equal(errorResponse(new LifelineError('LL_KAFKA_PRODUCE', 'broker text'), { showDependencyText: true }).message, 'Kafka: broker text')
})

test('a refusal by state is its own code, never a flag on an argument error', () => {
  assert.deepEqual(errorResponse(dlqConflict('job 3 is done', { id: '3' })), { status: 409, code: 'LL_DLQ_CONFLICT', message: 'job 3 is done' })
  // A `details.conflict` flag (the old convention) no longer changes the status of an argument error.
  assert.equal(errorResponse(invalidArgument('bad', { conflict: true })).status, 400)
})
