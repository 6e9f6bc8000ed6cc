import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LifelineError } from '../../src/errors.js'
import { againOnConflict, classifyDriverError, wrapDriverError } from '../../src/store/driver-error.js'

/** The shape both pg and PGlite give server errors. */
function serverError(code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`server says ${code}`), { code, severity: 'ERROR', ...extra })
}

describe('classifyDriverError', () => {
  const cases: [string, unknown, 'connect' | 'query', string, boolean][] = [
    ['unique violation', serverError('23505'), 'query', 'LL_DB_QUERY', false],
    ['syntax error', serverError('42601'), 'query', 'LL_DB_QUERY', false],
    ['serialization failure', serverError('40001'), 'query', 'LL_DB_QUERY', true],
    ['deadlock', serverError('40P01'), 'query', 'LL_DB_QUERY', true],
    ['admin shutdown mid-query', serverError('57P01'), 'query', 'LL_DB_CONNECT', true],
    ['connection failure class 08', serverError('08006'), 'query', 'LL_DB_CONNECT', true],
    ['refused socket', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), 'query', 'LL_DB_CONNECT', true],
    ['any error while connecting', new Error('timeout exceeded when trying to connect'), 'connect', 'LL_DB_CONNECT', true],
    ['bad password', serverError('28P01'), 'connect', 'LL_DB_CONNECT', false],
    ['missing database', serverError('3D000'), 'connect', 'LL_DB_CONNECT', false],
    ['an error without a code', new TypeError('bad parameter'), 'query', 'LL_DB_QUERY', false],
    ['a 5-letter errno is not a SQLSTATE', Object.assign(new Error('pipe'), { code: 'EPIPE' }), 'query', 'LL_DB_CONNECT', true],
  ]
  for (const [label, err, phase, code, retriable] of cases) {
    it(`${label} → ${code}${retriable ? ' (retriable)' : ''}`, () => {
      assert.deepEqual(classifyDriverError(err, phase), { code, retriable })
    })
  }
})

describe('wrapDriverError', () => {
  it('keeps the SQLSTATE and constraint in details and the driver error as cause', () => {
    const cause = serverError('23505', { constraint: 'jobs_pkey', table: 'jobs', detail: 'Key (id)=(secret) already exists.' })
    const err = wrapDriverError(cause, { phase: 'query', kind: 'postgres', statement: 'insert into jobs\n  values ($1)' })
    assert.equal(err.code, 'LL_DB_QUERY')
    assert.equal(err.cause, cause)
    assert.deepEqual(err.details, {
      kind: 'postgres',
      sqlState: '23505',
      constraint: 'jobs_pkey',
      table: 'jobs',
      statement: 'insert into jobs values ($1)',
    })
  })

  it('passes a LifelineError through unchanged', () => {
    const original = new LifelineError('LL_DB_CLOSED', 'closed')
    assert.equal(wrapDriverError(original, { phase: 'query', kind: 'pglite' }), original)
  })
})

describe('againOnConflict', () => {
  const failure = (sqlState: string) => new LifelineError('LL_DB_QUERY', `postgres statement failed [${sqlState}]`, { details: { sqlState } })
  it('runs a transaction again after a deadlock or a serialization failure, up to its limit', async () => {
    let runs = 0
    assert.equal(await againOnConflict(async () => (++runs < 3 ? Promise.reject(failure(runs === 1 ? '40P01' : '40001')) : 'done')), 'done')
    assert.equal(runs, 3)
    runs = 0
    await assert.rejects(againOnConflict(async () => (runs++, Promise.reject(failure('40P01'))), 2), (err) => err instanceof LifelineError && err.details.sqlState === '40P01')
    assert.equal(runs, 2)
  })
  it('never runs again after any other failure', async () => {
    let runs = 0
    await assert.rejects(againOnConflict(async () => (runs++, Promise.reject(failure('23505')))))
    await assert.rejects(againOnConflict(async () => (runs++, Promise.reject(new Error('not a database error')))))
    assert.equal(runs, 2)
  })
})
