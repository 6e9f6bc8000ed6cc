import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LifelineError } from '../../src/errors.js'
import { fingerprint, normaliseFrame, stackFrames } from '../../src/failure/fingerprint.js'
import { classifyError, DecodeError, isDatabaseOutage, MAX_CAUSE_DEPTH, NonRetriableError, type ClassifyOptions } from '../../src/retry/classify.js'

class MyAppError extends Error {}

function wrap(inner: unknown, depth: number): unknown {
  let err = inner
  for (let i = 0; i < depth; i++) err = new Error(`wrapper ${i}`, { cause: err })
  return err
}

const table: Array<{ name: string; err: unknown; options?: ClassifyOptions; kind: 'retriable' | 'permanent'; rule: string; errorClass: string; code: string; message?: string }> = [
  { name: 'plain Error', err: new Error('boom'), kind: 'retriable', rule: 'default', errorClass: 'Error', code: 'UNKNOWN', message: 'boom' },
  { name: 'TypeError', err: new TypeError('x is undefined'), kind: 'retriable', rule: 'default', errorClass: 'TypeError', code: 'UNKNOWN' },
  { name: 'subclass without its own name', err: new MyAppError('m'), kind: 'retriable', rule: 'default', errorClass: 'MyAppError', code: 'UNKNOWN' },
  { name: 'NonRetriableError', err: new NonRetriableError('nope'), kind: 'permanent', rule: 'non-retriable-error', errorClass: 'NonRetriableError', code: 'UNKNOWN', message: 'nope' },
  { name: 'NonRetriableError with code', err: new NonRetriableError('nope', { code: 'ORDER_ORPHANED' }), kind: 'permanent', rule: 'non-retriable-error', errorClass: 'NonRetriableError', code: 'ORDER_ORPHANED' },
  { name: 'NonRetriableError from another copy of the package (by name)', err: Object.assign(new Error('x'), { name: 'NonRetriableError' }), kind: 'permanent', rule: 'non-retriable-error', errorClass: 'NonRetriableError', code: 'UNKNOWN' },
  { name: 'DecodeError', err: new DecodeError('bad json'), kind: 'permanent', rule: 'decode', errorClass: 'DecodeError', code: 'LL_DECODE' },
  { name: 'DecodeError for a schema', err: new DecodeError('missing id', { code: 'LL_SCHEMA_INVALID' }), kind: 'permanent', rule: 'decode', errorClass: 'DecodeError', code: 'LL_SCHEMA_INVALID' },
  { name: 'LL_DECODE code on any error', err: Object.assign(new Error('x'), { code: 'LL_DECODE' }), kind: 'permanent', rule: 'decode', errorClass: 'Error', code: 'LL_DECODE' },
  { name: 'permanent code', err: Object.assign(new Error('dup'), { code: '23505' }), options: { permanentCodes: ['23505'] }, kind: 'permanent', rule: 'permanent-code', errorClass: 'Error', code: '23505' },
  { name: 'numeric code', err: Object.assign(new Error('grpc'), { code: 3 }), options: { permanentCodes: ['3'] }, kind: 'permanent', rule: 'permanent-code', errorClass: 'Error', code: '3' },
  { name: 'code not in the list', err: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), options: { permanentCodes: ['23505'] }, kind: 'retriable', rule: 'default', errorClass: 'Error', code: 'ECONNREFUSED' },
  { name: 'LifelineError non-retriable by catalogue', err: new LifelineError('LL_DB_QUERY', 'syntax error'), kind: 'permanent', rule: 'lifeline-error', errorClass: 'LifelineError', code: 'LL_DB_QUERY' },
  { name: 'LifelineError retriable by catalogue', err: new LifelineError('LL_KAFKA_PRODUCE', 'timeout'), kind: 'retriable', rule: 'default', errorClass: 'LifelineError', code: 'LL_KAFKA_PRODUCE' },
  { name: 'LifelineError retriable overridden false', err: new LifelineError('LL_KAFKA_PRODUCE', 'too large', { retriable: false }), kind: 'permanent', rule: 'lifeline-error', errorClass: 'LifelineError', code: 'LL_KAFKA_PRODUCE' },
  { name: 'NonRetriableError 3 causes deep', err: wrap(new NonRetriableError('deep'), 3), kind: 'permanent', rule: 'non-retriable-error', errorClass: 'Error', code: 'UNKNOWN', message: 'wrapper 2' },
  { name: `NonRetriableError exactly ${MAX_CAUSE_DEPTH} causes deep`, err: wrap(new NonRetriableError('deep'), MAX_CAUSE_DEPTH), kind: 'permanent', rule: 'non-retriable-error', errorClass: 'Error', code: 'UNKNOWN' },
  { name: `NonRetriableError ${MAX_CAUSE_DEPTH + 1} causes deep is out of reach`, err: wrap(new NonRetriableError('deep'), MAX_CAUSE_DEPTH + 1), kind: 'retriable', rule: 'default', errorClass: 'Error', code: 'UNKNOWN' },
  { name: 'permanent code in a cause', err: wrap(Object.assign(new Error('dup'), { code: '23505' }), 2), options: { permanentCodes: ['23505'] }, kind: 'permanent', rule: 'permanent-code', errorClass: 'Error', code: 'UNKNOWN' },
  { name: 'DecodeError in a cause', err: wrap(new DecodeError('bad'), 1), kind: 'permanent', rule: 'decode', errorClass: 'Error', code: 'UNKNOWN' },
  { name: 'non-retriable LifelineError only as a cause (top-level rule only)', err: wrap(new LifelineError('LL_DB_QUERY', 'x'), 1), kind: 'retriable', rule: 'default', errorClass: 'Error', code: 'UNKNOWN' },
  { name: 'thrown string', err: 'just a string', kind: 'retriable', rule: 'default', errorClass: 'string', code: 'UNKNOWN', message: 'just a string' },
  { name: 'thrown undefined', err: undefined, kind: 'retriable', rule: 'default', errorClass: 'undefined', code: 'UNKNOWN', message: 'undefined' },
  { name: 'thrown null', err: null, kind: 'retriable', rule: 'default', errorClass: 'null', code: 'UNKNOWN', message: 'null' },
  { name: 'thrown number', err: 42, kind: 'retriable', rule: 'default', errorClass: 'number', code: 'UNKNOWN', message: '42' },
  { name: 'thrown symbol', err: Symbol('s'), kind: 'retriable', rule: 'default', errorClass: 'symbol', code: 'UNKNOWN', message: 'Symbol(s)' },
  { name: 'thrown plain object with a code', err: { code: 'E_BAD', message: 'from a promise library' }, options: { permanentCodes: ['E_BAD'] }, kind: 'permanent', rule: 'permanent-code', errorClass: 'Object', code: 'E_BAD', message: 'from a promise library' },
  { name: 'thrown plain object without message', err: { status: 500 }, kind: 'retriable', rule: 'default', errorClass: 'Object', code: 'UNKNOWN', message: '{ status: 500 }' },
  { name: 'thrown null-prototype object', err: Object.create(null) as object, kind: 'retriable', rule: 'default', errorClass: 'Object', code: 'UNKNOWN' },
]

for (const row of table) {
  test(`classifies: ${row.name}`, () => {
    const c = classifyError(row.err, row.options)
    assert.equal(c.kind, row.kind)
    assert.equal(c.rule, row.rule)
    assert.equal(c.errorClass, row.errorClass)
    assert.equal(c.code, row.code)
    if (row.message !== undefined) assert.equal(c.message, row.message)
    assert.equal(typeof c.message, 'string')
  })
}

test('the user classifier goes first; undefined means no opinion', () => {
  const nonRetriable = new NonRetriableError('x')
  assert.equal(classifyError(nonRetriable, { classifier: () => 'retry' }).kind, 'retriable')
  assert.equal(classifyError(nonRetriable, { classifier: () => 'retry' }).rule, 'classifier')
  assert.equal(classifyError(new Error('x'), { classifier: () => 'permanent' }).kind, 'permanent')
  assert.equal(classifyError(nonRetriable, { classifier: () => undefined }).rule, 'non-retriable-error')
  const seen: unknown[] = []
  classifyError('thrown', { classifier: (err) => (seen.push(err), undefined) })
  assert.deepEqual(seen, ['thrown'])
})

test('a cyclic cause chain terminates', () => {
  const a = new Error('a')
  const b = new Error('b', { cause: a })
  Object.defineProperty(a, 'cause', { value: b })
  assert.equal(classifyError(a).kind, 'retriable')
})

test('throwing getters and proxy traps cannot make classification throw', () => {
  const hostile = new Proxy(
    {},
    {
      get() {
        throw new Error('trap')
      },
      getPrototypeOf() {
        return null
      },
    },
  )
  const c = classifyError(hostile)
  assert.equal(c.kind, 'retriable')
  assert.equal(c.code, 'UNKNOWN')
  const trapEverything = new Proxy(
    {},
    {
      get() {
        throw new Error('trap')
      },
      getPrototypeOf() {
        throw new Error('trap')
      },
      ownKeys() {
        throw new Error('trap')
      },
      getOwnPropertyDescriptor() {
        throw new Error('trap')
      },
    },
  )
  const t = classifyError(trapEverything, { permanentCodes: ['X'] })
  assert.equal(t.kind, 'retriable')
  assert.equal(typeof t.message, 'string')
  const getter = Object.defineProperty(new Error('g'), 'code', {
    get() {
      throw new Error('getter')
    },
  })
  assert.equal(classifyError(getter).code, 'UNKNOWN')
})

test('classification carries the stack of Errors only', () => {
  const err = new Error('s')
  assert.equal(classifyError(err).stack, err.stack)
  assert.equal(classifyError('s').stack, undefined)
})

test('a classification reads the stack only when asked for it, once', () => {
  let reads = 0
  const err = new Error('lazy')
  const stack = err.stack
  Object.defineProperty(err, 'stack', { get: () => (reads++, stack) })
  const c = classifyError(err)
  assert.equal(c.kind, 'retriable')
  assert.equal(reads, 0, 'classifying formats no stack')
  assert.equal(c.stack, stack)
  assert.equal(c.stack, stack)
  assert.equal(reads, 1)
  const hostile = Object.defineProperty(new Error('h'), 'stack', { get: () => { throw new Error('no') } })
  assert.equal(classifyError(hostile).stack, undefined)
})

test('NonRetriableError and DecodeError keep cause, code and details', () => {
  const cause = new Error('root')
  const n = new NonRetriableError('n', { code: 'C', cause })
  assert.equal(n.name, 'NonRetriableError')
  assert.equal(n.code, 'C')
  assert.equal(n.cause, cause)
  assert.ok(n instanceof Error)
  const d = new DecodeError('d', { cause, details: { field: 'id' } })
  assert.equal(d.name, 'DecodeError')
  assert.equal(d.code, 'LL_DECODE')
  assert.equal(d.cause, cause)
  assert.deepEqual(d.details, { field: 'id' })
  assert.ok(Object.isFrozen(d.details))
  assert.equal(new NonRetriableError('x').cause, undefined)
})

function throwIt(code: string): never {
  throw new NonRetriableError('order 6f1c2a9e-2b7d-4c1e-9a51-3f0d6b8e7c21 failed at 1700000000000', { code })
}

function capture(fn: () => void): Error {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('did not throw')
}

function callSites(which: number, code: string): Error {
  // The same throw reached from call sites on different lines.
  if (which === 0) return capture(() => throwIt(code))
  if (which === 1) {
    return capture(() => throwIt(code))
  }
  return capture(() => throwIt(code))
}

const fp = (err: Error): string => fingerprint(err.name, (err as NonRetriableError).code ?? 'UNKNOWN', err.stack)

test('fingerprint: the same error thrown from different lines is one fingerprint; another code is another', () => {
  const a = callSites(0, 'A')
  const b = callSites(1, 'A')
  const c = callSites(2, 'A')
  assert.notEqual(a.stack, b.stack, 'the stacks do differ (line numbers)')
  assert.equal(fp(a), fp(b))
  assert.equal(fp(a), fp(c))
  assert.notEqual(fp(a), fp(callSites(0, 'B')))
  assert.match(fp(a), /^[0-9a-f]{16}$/)
})

test('fingerprint ignores the message, the deploy root and line numbers, but not the class or the code', () => {
  const stackAt = (root: string, line: number, message: string): string =>
    [
      `Error: ${message}`,
      `    at handle (${root}/src/orders/handler.ts:${line}:13)`,
      `    at async Runner.run (file://${root}/src/runtime/runner.ts:${line + 7}:5)`,
      `    at Object.query (${root}/node_modules/pg/lib/client.js:${line * 3}:20)`,
    ].join('\n')
  const base = fingerprint('Error', 'X', stackAt('/srv/app', 10, 'id 42'))
  assert.equal(fingerprint('Error', 'X', stackAt('/home/ci/build', 99, 'id 0xdeadbeef')), base)
  assert.notEqual(fingerprint('TypeError', 'X', stackAt('/srv/app', 10, 'id 42')), base)
  assert.notEqual(fingerprint('Error', 'Y', stackAt('/srv/app', 10, 'id 42')), base)
  assert.equal(fingerprint('Error', 'X', undefined), fingerprint('Error', 'X', 'Error: no frames'))
  assert.notEqual(fingerprint('Error', 'X', undefined), fingerprint('Error', 'Y', undefined))
})

test('fingerprint covers the top five frames only', () => {
  const frames = (bottom: string): string =>
    ['Error: x', ...[1, 2, 3, 4, 5].map((i) => `    at f${i} (/app/src/f.ts:${i}:1)`), `    at ${bottom} (/app/src/g.ts:1:1)`].join('\n')
  assert.equal(fingerprint('Error', 'X', frames('a')), fingerprint('Error', 'X', frames('b')))
  assert.equal(stackFrames(frames('a')).length, 5)
})

test('normaliseFrame', () => {
  const cases: Array<[string, string]> = [
    ['    at handle (/srv/app/src/orders/handler.ts:42:13)', 'at handle (orders/handler.ts)'],
    ['at handle (file:///srv/app/src/orders/handler.ts:42:13)', 'at handle (orders/handler.ts)'],
    ['at handle (file:///srv/app/src/orders/handler.ts?t=123:42:13)', 'at handle (orders/handler.ts)'],
    ['at handle (C:\\Users\\me\\app\\src\\handler.ts:42:13)', 'at handle (src/handler.ts)'],
    ['at /srv/app/src/main.js:1:1', 'at src/main.js'],
    ['at Client.query (/srv/app/node_modules/pg/lib/client.js:526:17)', 'at Client.query (node_modules/pg)'],
    ['at x (/srv/app/node_modules/a/node_modules/@scope/pkg/dist/index.js:1:2)', 'at x (node_modules/@scope/pkg)'],
    ['at process.processTicksAndRejections (node:internal/process/task_queues:95:5)', 'at process.processTicksAndRejections (node:internal/process/task_queues)'],
    ['at new Promise (<anonymous>)', 'at new Promise (<anonymous>)'],
    ['at Array.map (native)', 'at Array.map (native)'],
    ['at async Promise.all (index 0)', 'at async Promise.all (index 0)'],
    ['at fn [as alias] (/a/b/c.js:1:2)', 'at fn [as alias] (b/c.js)'],
    ['at f (/Users/Jane Doe/app/src/x.ts:3:4)', 'at f (src/x.ts)'],
    ['at eval (eval at run (/srv/app/src/x.js:10:3), <anonymous>:1:1)', 'at eval (eval at run (src/x.js), <anonymous>)'],
  ]
  for (const [input, expected] of cases) assert.equal(normaliseFrame(input), expected, input)
})

test('isDatabaseOutage: a retriable LL_DB_CONNECT on the error or a cause, nothing else', () => {
  const connect = new LifelineError('LL_DB_CONNECT', 'could not open the postgres database: connect ECONNREFUSED')
  assert.equal(isDatabaseOutage(connect), true)
  assert.equal(isDatabaseOutage(new Error('the handler failed', { cause: connect })), true)
  assert.equal(isDatabaseOutage(new LifelineError('LL_DB_CONNECT', 'bad password [28P01]', { retriable: false })), false, 'wrong credentials do not fix themselves')
  assert.equal(isDatabaseOutage(new LifelineError('LL_DB_QUERY', 'syntax error [42601]')), false)
  assert.equal(isDatabaseOutage(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), false, "a driver's own error is the handler's business (a breaker covers it)")
  assert.equal(isDatabaseOutage(null), false)
  const cyclic = new Error('a') as Error & { cause?: unknown }
  cyclic.cause = cyclic
  assert.equal(isDatabaseOutage(cyclic), false)
})
