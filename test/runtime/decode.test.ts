import assert from 'node:assert/strict'
import { test } from 'node:test'
import Type from 'typebox'
import { DecodeError } from '../../src/retry/classify.js'
import { jsonDecoder, rawDecoder, resolveDecoder, stringDecoder, withSchema, wrapDecode } from '../../src/runtime/decode.js'

const isDecode = (code: string) => (err: unknown) => err instanceof DecodeError && err.code === code

test('json: null passes as null; empty, malformed and invalid UTF-8 are decode errors', () => {
  assert.equal(jsonDecoder.decode(null), null)
  assert.deepEqual(jsonDecoder.decode(Buffer.from('{"a":1}')), { a: 1 })
  assert.throws(() => jsonDecoder.decode(Buffer.alloc(0)), isDecode('LL_DECODE'))
  assert.throws(() => jsonDecoder.decode(Buffer.from('{"a":')), isDecode('LL_DECODE'))
  assert.throws(() => jsonDecoder.decode(Buffer.from([0x7b, 0xc3, 0x28, 0x7d])), isDecode('LL_DECODE'))
})

test('string and raw decoders', () => {
  assert.equal(stringDecoder.decode(Buffer.from('héllo')), 'héllo')
  assert.throws(() => stringDecoder.decode(Buffer.from([0xff])), isDecode('LL_DECODE'))
  const bytes = Buffer.from([0, 255])
  assert.equal(rawDecoder.decode(bytes), bytes)
  assert.equal(resolveDecoder(undefined), jsonDecoder)
  assert.equal(resolveDecoder('raw'), rawDecoder)
})

test('schema validation failures are LL_SCHEMA_INVALID with the JSON pointer of each problem', () => {
  const decoder = withSchema(jsonDecoder, Type.Object({ orderId: Type.String(), amount: Type.Integer({ minimum: 0 }) }))
  assert.deepEqual(decoder.decode(Buffer.from('{"orderId":"o","amount":1}')), { orderId: 'o', amount: 1 })
  assert.throws(() => decoder.decode(Buffer.from('{"amount":-1}')), (err: unknown) => isDecode('LL_SCHEMA_INVALID')(err) && /\/amount must be >= 0/.test((err as Error).message))
  assert.equal(decoder.decode(null), null, 'a tombstone is not validated')
})

test('a custom decoder that throws anything becomes a DecodeError', () => {
  const custom = { name: 'avro', decode: () => { throw 'not an Error' } }
  assert.throws(() => wrapDecode(custom, Buffer.from('x')), (err: unknown) => isDecode('LL_DECODE')(err) && /decoder avro failed/.test((err as Error).message))
})
