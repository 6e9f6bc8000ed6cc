/** What crosses between the main thread and the database thread (src/store/thread-messages.ts, pure). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isLifelineError, LifelineError } from '../../src/errors.js'
import { deserializeError, fromTransfer, serializeError, toTransfer } from '../../src/store/thread-messages.js'

describe('thread messages', () => {
  it('sends only a view\'s own bytes and gives Buffers back, in parameters and in rows', () => {
    const pooled = Buffer.from('abc') // a slice of Node's 8 KiB pool
    assert.notEqual(pooled.buffer.byteLength, 3)
    const params = toTransfer(['x', pooled, [pooled, null], 7])
    assert.equal((params[1] as Uint8Array).buffer.byteLength, 3)
    assert.equal(((params[2] as unknown[])[0] as Uint8Array).buffer.byteLength, 3)
    const plain = structuredClone(params) // what postMessage does: Buffers arrive as Uint8Arrays
    const back = fromTransfer(plain)
    assert.ok(Buffer.isBuffer(back[1]) && Buffer.isBuffer((back[2] as unknown[])[0]))
    assert.deepEqual(back, ['x', Buffer.from('abc'), [Buffer.from('abc'), null], 7])
    const rows = fromTransfer(structuredClone(toTransfer({ rows: [{ b: pooled, a: [pooled], n: '1', j: { k: 1 } }], rowCount: 1 })))
    assert.ok(Buffer.isBuffer(rows.rows[0]!.b))
    assert.deepEqual(rows.rows[0], { b: Buffer.from('abc'), a: [Buffer.from('abc')], n: '1', j: { k: 1 } })
  })

  it('brings a LifelineError back with its code, retriable flag, details and cause', () => {
    const cause = Object.assign(new Error('duplicate key'), { code: '23505' })
    const err = new LifelineError('LL_DB_QUERY', 'insert failed', { cause, details: { sqlState: '23505', kind: 'postgres' } })
    const back = deserializeError(structuredClone(serializeError(err)))
    assert.ok(isLifelineError(back, 'LL_DB_QUERY'))
    assert.equal(back.message, 'insert failed')
    assert.equal(back.retriable, err.retriable)
    assert.deepEqual(back.details, { sqlState: '23505', kind: 'postgres' })
    assert.equal((back.cause as Error & { code?: string }).code, '23505')
    const plain = deserializeError(serializeError('not an error'))
    assert.equal(plain.message, 'not an error')
  })
})

