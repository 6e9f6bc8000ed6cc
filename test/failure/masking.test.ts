import assert from 'node:assert/strict'
import { createCipheriv, randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { test } from 'node:test'
import fc from 'fast-check'
import { pino } from 'pino'
import Value from 'typebox/value'
import { createDlqIndexer } from '../../src/dlq/indexer.js'
import { isLifelineError } from '../../src/errors.js'
import { ConsumerOptionsSchema } from '../../src/runtime/options.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { KEY_PATH, Masker, parsePath, REDACTED } from '../../src/failure/masking.js'
import { decodeFailureHeaders } from '../../src/failure/headers.js'
import { producer, topic, waitFor } from '../helpers/kafka.js'
import { lifeline, readAll } from '../helpers/lifeline.js'

const keyring = { currentKeyId: 'k2', keys: { k1: randomBytes(32), k2: randomBytes(32).toString('base64') }, hashKey: randomBytes(32) }
const order = { id: 'o-1', customer: { email: 'ada@example.com', name: 'Ada' }, cards: [{ pan: '4111111111111111' }, { pan: '5500000000000004' }], notes: 'call 010-1234-5678', amount: 10 }
const input = (value: unknown, errorMessage = 'charge failed for ada@example.com') => ({ value: Buffer.from(JSON.stringify(value)), errorMessage, errorStack: `Error: ${errorMessage}\n    at charge (billing.ts:1:1)`, headers: [{ key: 'x-user-email', value: Buffer.from('ada@example.com') }, { key: 'trace', value: Buffer.from('t1') }] })

test('masking: redact, hash and encrypt by JSON path, in the value, the message, the stack and named headers', () => {
  const masker = new Masker([{ topics: ['orders'], rules: [{ path: '$.customer.email', action: 'encrypt' }, { path: '$.cards[*].pan', action: 'hash' }, { path: '$.customer.name', action: 'redact' }], patterns: ['\\d{3}-\\d{4}-\\d{4}'], headers: ['x-user-email'] }], keyring)
  assert.equal(masker.covers('orders'), true)
  assert.equal(masker.covers('payments'), false)
  const out = masker.mask('orders', input(order))
  const value = JSON.parse(out.value!.toString()) as typeof order
  assert.match(value.customer.email, /^enc:v2:k2:/)
  assert.equal(value.customer.name, REDACTED)
  assert.match(value.cards[0]!.pan, /^hash:v1:[0-9a-f]{64}$/)
  assert.notEqual(value.cards[0]!.pan, value.cards[1]!.pan)
  assert.equal(masker.mask('orders', input(order)).value!.toString().includes(value.cards[0]!.pan), true, 'hashes are stable')
  assert.equal(value.notes, `call ${REDACTED}`)
  assert.equal(value.amount, 10)
  assert.equal(out.errorMessage, `charge failed for ${REDACTED}`)
  assert.ok(!out.errorStack!.includes('ada@example.com'))
  assert.deepEqual(out.headers.map((h) => h.value?.toString()), [REDACTED, 't1'])
  assert.equal(out.masked, true)
  // Only the keyring's holder gets the clear value back (for a replay), with the original types.
  assert.deepEqual(JSON.parse(masker.unmaskValue(out.value, 'orders')!.toString()).customer.email, 'ada@example.com')
  const tampered = value.customer.email.replace(/:([^:]+)$/, ':AAAAAAAAAAAAAAAAAAAAAA')
  const at = { topic: 'orders', path: '$.customer.email' }
  assert.throws(() => masker.decrypt(tampered, at), { code: 'LL_DECRYPT' })
  assert.throws(() => new Masker([], { ...keyring, currentKeyId: 'k1' }).decrypt(value.customer.email.replace(':k2:', ':k9:'), at), { code: 'LL_DECRYPT', message: /unknown masking key id/ })
  // An old key id still decrypts after rotation.
  const old = new Masker([{ topics: ['*'], rules: [{ path: '$.customer.email', action: 'encrypt' }] }], { ...keyring, currentKeyId: 'k1' })
  const rotated = new Masker([], keyring)
  assert.equal(JSON.parse(rotated.unmaskValue(old.mask('any', input(order)).value, 'any')!.toString()).customer.email, 'ada@example.com')
})

test('masking: deep paths, indexes, the whole value, non-JSON values and untouched topics', () => {
  const masker = new Masker([{ topics: ['*'], rules: [{ path: '$..email', action: 'redact' }, { path: '$.cards[1]', action: 'redact' }] }])
  const v = JSON.parse(masker.mask('t', input({ a: { email: 'x@y.z', b: [{ email: 'p@q.r' }] }, cards: [1, 2] })).value!.toString())
  assert.deepEqual(v, { a: { email: REDACTED, b: [{ email: REDACTED }] }, cards: [1, REDACTED] })
  const whole = new Masker([{ topics: ['t'], rules: [{ path: '$', action: 'encrypt' }] }], keyring)
  const enc = whole.mask('t', input({ secret: 'sesame' }))
  assert.deepEqual(JSON.parse(whole.unmaskValue(enc.value, 't')!.toString()), { secret: 'sesame' })
  const notJson = new Masker([{ topics: ['t'], rules: [{ path: '$.x', action: 'redact' }] }], keyring).mask('t', { value: Buffer.from('name=ada@example.com'), errorMessage: 'bad: name=ada@example.com', headers: [] })
  assert.match(notJson.value!.toString(), /^enc:v2:/)
  assert.equal(notJson.errorMessage, `bad: ${REDACTED}`)
  const none = new Masker([{ topics: ['other'], rules: [{ path: '$.x', action: 'redact' }] }]).mask('t', input(order))
  assert.equal(none.masked, false)
  assert.equal(none.value!.toString(), JSON.stringify(order))
  assert.deepEqual(parsePath("$.a['b c'][2]..d[*]"), [{ kind: 'prop', name: 'a' }, { kind: 'prop', name: 'b c' }, { kind: 'index', index: 2 }, { kind: 'deep', name: 'd' }, { kind: 'any' }])
  assert.throws(() => parsePath('a.b'), { code: 'LL_OPTIONS_INVALID' })
  assert.throws(() => parsePath('$.a[x]'), { code: 'LL_OPTIONS_INVALID' })
  assert.throws(() => new Masker([{ topics: ['t'], rules: [{ path: '$.a', action: 'encrypt' }] }]), { code: 'LL_OPTIONS_INVALID', message: /needs a keyring/ })
  assert.throws(() => new Masker([], { currentKeyId: 'k', keys: { k: Buffer.alloc(16) } }), { code: 'LL_OPTIONS_INVALID', message: /32 bytes/ })
  assert.throws(() => new Masker([{ topics: ['t'], rules: [], patterns: ['('] }]), { code: 'LL_OPTIONS_INVALID' })
})

test('masking never throws and never leaves a masked clear value, whatever the payload', () => {
  const masker = new Masker([{ topics: ['t'], rules: [{ path: '$.secret', action: 'hash' }, { path: '$..pin', action: 'encrypt' }] }], keyring)
  fc.assert(
    fc.property(fc.jsonValue(), fc.string({ minLength: 6, maxLength: 20 }).filter((s) => /^[a-z]+$/.test(s)), (extra, secret) => {
      // A secret that also occurs elsewhere in the payload, unmasked by any rule, is not what this checks.
      if (JSON.stringify(extra).includes(secret)) return true
      const payload = { secret, nested: [{ pin: secret }], extra }
      const out = masker.mask('t', { value: Buffer.from(JSON.stringify(payload)), errorMessage: `failed for ${secret}`, headers: [] })
      const text = out.value!.toString() + out.errorMessage
      return !text.includes(`"${secret}"`) && !out.errorMessage.includes(secret)
    }),
    { numRuns: 200 },
  )
  for (const garbage of [Buffer.from([0xff, 0xfe]), Buffer.alloc(0), Buffer.from('{"unterminated')]) assert.doesNotThrow(() => masker.mask('t', { value: garbage, errorMessage: '', headers: [] }))
})

test('masked fields never appear in clear in the DLQ topic or the logs; the encrypted field decrypts with the keyring', async (t) => {
  const source = await topic(t)
  const lines: string[] = []
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, done) => void (lines.push(chunk.toString()), done()) }))
  await lifeline<typeof order>(t, {
    topics: [source],
    logger,
    retry: { maxAttempts: 1 },
    masking: { policies: [{ topics: [source], rules: [{ path: '$.customer.email', action: 'encrypt' }, { path: '$.cards[*].pan', action: 'hash' }, { path: '$.customer.name', action: 'redact' }], headers: ['x-user-email'] }], keyring },
    handler: ({ value }) => {
      throw new Error(`card ${value.cards[0]!.pan} of ${value.customer.email} was declined`)
    },
  })
  await producer(t).send([{ topic: source, key: 'o-1', value: JSON.stringify(order), headers: [{ key: 'x-user-email', value: Buffer.from('ada@example.com') }] }])
  const [dead] = await readAll(t, `svc.${source}.dlq`, 1)
  const everything = [dead!.value!.toString(), ...dead!.headers.map((h) => `${h.key}=${h.value?.toString() ?? ''}`)].join('\n')
  for (const clear of ['ada@example.com', '4111111111111111', '5500000000000004', '"Ada"']) assert.ok(!everything.includes(clear), `${clear} is not in the DLQ record`)
  const failure = decodeFailureHeaders(dead!.headers)!
  assert.equal(failure.errorMessage, `card ${REDACTED} of ${REDACTED} was declined`)
  assert.equal(dead!.headers.find((h) => h.key === 'lifeline.masked')?.value?.toString(), 'v1')
  const clear = JSON.parse(new Masker([], keyring).unmaskValue(dead!.value, source)!.toString())
  assert.equal(clear.customer.email, 'ada@example.com')
  await waitFor(() => lines.some((l) => l.includes('record dead-lettered')), 'the dead-letter log line')
  const log = lines.join('')
  for (const clear of ['ada@example.com', '4111111111111111']) assert.ok(!log.includes(clear), `${clear} is not in the logs`)
})

// ---- issue 13, finding 1: encryption binds each value to its topic and JSON path ----

/** An `enc:v1:` value as the masker wrote them before associated data (AES-256-GCM of the JSON text, no AAD). */
function v1Token(keyId: string, key: Buffer, clear: unknown): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  const ct = Buffer.concat([cipher.update(JSON.stringify(clear), 'utf8'), cipher.final()])
  return `enc:v1:${keyId}:${iv.toString('base64url')}:${ct.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}`
}

test('enc:v2 binds a value to its topic and JSON path: moved to another topic or field it does not decrypt (LL_DECRYPT) (finding 1)', () => {
  const masker = new Masker([{ topics: ['orders', 'payments'], rules: [{ path: '$.email', action: 'encrypt' }, { path: '$.items[*].pan', action: 'encrypt' }] }], keyring)
  const orders = JSON.parse(masker.mask('orders', input({ email: 'ada@example.com', items: [{ pan: '4111' }, { pan: '5500' }] })).value!.toString())
  assert.match(orders.email, /^enc:v2:k2:/)
  assert.deepEqual(JSON.parse(masker.unmaskValue(Buffer.from(JSON.stringify(orders)), 'orders')!.toString()), { email: 'ada@example.com', items: [{ pan: '4111' }, { pan: '5500' }] })
  const refused = (err: unknown) => isLifelineError(err, 'LL_DECRYPT') && /moved/.test((err as Error).message)
  // Another topic: same field, same shape.
  assert.throws(() => masker.unmaskValue(Buffer.from(JSON.stringify(orders)), 'payments'), refused)
  // Another field of the same record: the e-mail's ciphertext as a note, or one card's in the other's place.
  assert.throws(() => masker.unmaskValue(Buffer.from(JSON.stringify({ ...orders, note: orders.email })), 'orders'), refused)
  assert.throws(() => masker.unmaskValue(Buffer.from(JSON.stringify({ items: [orders.items[1], orders.items[0]] })), 'orders'), refused)
  // A record's value may have been masked under its origin's or its DLQ topic's policy: either decrypts.
  assert.equal(JSON.parse(masker.unmaskValue(Buffer.from(JSON.stringify({ email: orders.email })), ['orders.dlq', 'orders'])!.toString()).email, 'ada@example.com')
  // A value with no encrypted field comes back byte for byte.
  const plain = Buffer.from('{ "a" : 1.50, "big": 12345678901234567890 }')
  assert.equal(masker.unmaskValue(plain, 'orders'), plain)
})

test('enc:v1 values stay readable for replay (bound to nothing) unless the keyring sets acceptV1: false (finding 1)', () => {
  const k1 = keyring.keys.k1
  const old = v1Token('k1', k1, 'ada@example.com')
  const stored = Buffer.from(JSON.stringify({ email: old }))
  assert.equal(JSON.parse(new Masker([], keyring).unmaskValue(stored, 'anything')!.toString()).email, 'ada@example.com')
  assert.throws(() => new Masker([], { ...keyring, acceptV1: false }).unmaskValue(stored, 'orders'), (err) => isLifelineError(err, 'LL_DECRYPT') && /acceptV1/.test((err as Error).message))
  // An edit may keep the record's own v1 value at its path, not bring one from elsewhere.
  const masker = new Masker([], keyring)
  assert.deepEqual(masker.foreignTokens(Buffer.from(JSON.stringify({ email: old, n: 1 })), stored, ['orders']), [])
  assert.deepEqual(masker.foreignTokens(Buffer.from(JSON.stringify({ note: old })), stored, ['orders']), ['$.note'])
  assert.deepEqual(masker.foreignTokens(Buffer.from(JSON.stringify({ email: v1Token('k1', k1, 'eve@example.com') })), stored, ['orders']), ['$.email'])
})

// ---- issue 13, finding 6: masking gaps ----

test('a rule on an object or an array scrubs every value inside it from the message and the stack (finding 6)', () => {
  const masker = new Masker([{ topics: ['t'], rules: [{ path: '$.customer', action: 'encrypt' }, { path: '$.cards', action: 'redact' }] }], keyring)
  const value = { customer: { email: 'ada@example.com', phone: '+44 20 7946 0958', address: { city: 'Londinium' } }, cards: ['4111111111111111', { pan: '5500000000000004' }], amount: 10 }
  const out = masker.mask('t', input(value, 'charge of ada@example.com (+44 20 7946 0958, Londinium) with 4111111111111111 / 5500000000000004 failed'))
  assert.equal(out.errorMessage, `charge of ${REDACTED} (${REDACTED}, ${REDACTED}) with ${REDACTED} / ${REDACTED} failed`)
  const stored = JSON.parse(out.value!.toString())
  assert.match(stored.customer, /^enc:v2:/)
  assert.equal(stored.cards, REDACTED)
  assert.deepEqual(JSON.parse(masker.unmaskValue(out.value, 't')!.toString()).customer, value.customer)
})

test('a patterns-only policy redacts its patterns in a value that is text but not JSON (finding 6)', () => {
  const masker = new Masker([{ topics: ['t'], rules: [], patterns: ['[\\w.]+@example\\.com'] }], keyring)
  const out = masker.mask('t', { value: Buffer.from('name=ada@example.com;plan=gold'), errorMessage: 'bad record name=ada@example.com', headers: [] })
  assert.equal(out.value!.toString(), `name=${REDACTED};plan=gold`)
  assert.equal(out.errorMessage, `bad record name=${REDACTED}`)
  assert.equal(out.masked, true)
  // Binary (not text): the patterns cannot be looked for, so it is masked whole (encrypted: it comes back exact).
  const binary = Buffer.from([0xff, 0x00, 0xfe, 0x41])
  const enc = masker.mask('t', { value: binary, errorMessage: '', headers: [] })
  assert.match(enc.value!.toString(), /^enc:v2:/)
  assert.deepEqual(masker.unmaskValue(enc.value, 't'), binary)
})

test("record keys: a policy's key: 'encrypt' masks the key deterministically, scrubs it from messages, and unmaskKey restores it (finding 6)", () => {
  const masker = new Masker([{ topics: ['t'], rules: [], key: 'encrypt' }], keyring)
  const key = Buffer.from('customer-ada@example.com')
  const out = masker.mask('t', { ...input({ a: 1 }, 'no balance for customer-ada@example.com'), key })
  assert.match(out.key!.toString(), /^enc:v2:k2:/)
  assert.equal(out.errorMessage, `no balance for ${REDACTED}`)
  assert.deepEqual(masker.mask('t', { ...input({ a: 2 }), key }).key, out.key, 'equal keys, equal tokens (grouping, filters and per-key order keep working)')
  assert.notDeepEqual(masker.mask('t', { ...input({ a: 2 }), key: Buffer.from('customer-bob') }).key, out.key)
  assert.deepEqual(masker.unmaskKey(out.key!, 't'), key)
  assert.throws(() => masker.unmaskKey(out.key!, 'other'), { code: 'LL_DECRYPT' })
  assert.equal(masker.mask('t', { ...input({ a: 1 }), key: out.key! }).key, out.key, 'a masked key is not masked again')
  assert.equal(masker.decrypt(out.key!.toString(), { topic: 't', path: KEY_PATH }).toString(), key.toString())
  assert.equal(new Masker([{ topics: ['t'], rules: [] }], keyring).mask('t', { ...input({ a: 1 }), key }).key, key, 'kept without key: encrypt')
})

test('short values, numbers above 2^53 and JSON-escaped strings are scrubbed from messages; big numbers survive masking (finding 6)', () => {
  const masker = new Masker([{ topics: ['t'], rules: [{ path: '$.pin', action: 'redact' }, { path: '$.account', action: 'encrypt' }, { path: '$.note', action: 'hash' }] }], keyring)
  const text = '{"pin":"42","account":12345678901234567890,"note":"he said \\"call me\\" twice","other":98765432109876543210,"amount":1.50}'
  const out = masker.mask('t', { value: Buffer.from(text), errorMessage: `pin 42 for account 12345678901234567890 refused: ${text}`, errorStack: 'at check (pin=42)', headers: [] })
  for (const clear of ['12345678901234567890', 'call me', ' 42 ', 'pin=42']) assert.ok(!out.errorMessage.includes(clear) && !out.errorStack!.includes(clear), `${clear}: ${out.errorMessage} | ${out.errorStack}`)
  assert.ok(out.errorMessage.includes('98765432109876543210'), 'unmasked values stay')
  assert.equal(masker.mask('t', { value: Buffer.from('{"pin":"42"}'), errorMessage: 'pin 420 and 4242 are not it', headers: [] }).errorMessage, 'pin 420 and 4242 are not it', 'short values only where they stand alone')
  const stored = out.value!.toString()
  assert.ok(stored.includes('"other":98765432109876543210') && stored.includes('"amount":1.50'), `untouched numbers are written as they were: ${stored}`)
  assert.equal(JSON.parse(JSON.stringify(masker.unmaskValue(out.value, 't')!.toString())), '{"pin":"[REDACTED]","account":12345678901234567890,"note":' + JSON.stringify(JSON.parse(stored).note) + ',"other":98765432109876543210,"amount":1.50}')
})

test('masking never leaves a masked value in clear, whatever the payload: objects, arrays, numbers, keys, escapes (finding 6)', () => {
  const masker = new Masker([{ topics: ['t'], rules: [{ path: '$.secret', action: 'encrypt' }, { path: '$..pin', action: 'hash' }], key: 'encrypt' }], keyring)
  const leaf = fc.oneof(
    fc.string({ minLength: 4, maxLength: 12 }).filter((s) => /^[A-Za-z0-9 "\\<>é]+$/.test(s) && /[A-Za-z0-9]{4}/.test(s)),
    fc.bigInt({ min: 10n ** 15n, max: 10n ** 25n }).map((n) => ({ big: n.toString() })),
  )
  const secretValue = fc.oneof(leaf, fc.array(leaf, { minLength: 1, maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b', 'c'), leaf, { minKeys: 1 }))
  fc.assert(
    fc.property(secretValue, fc.jsonValue({ maxDepth: 2 }), fc.string({ minLength: 4, maxLength: 16 }).filter((s) => /^[\w@.-]+$/.test(s)), (secret, extra, key) => {
      // JSON text with big numbers written as digits (JSON.stringify cannot write them).
      const toJson = (v: unknown): string => (v !== null && typeof v === 'object' && 'big' in (v as object) ? (v as { big: string }).big : Array.isArray(v) ? `[${v.map(toJson).join(',')}]` : v !== null && typeof v === 'object' ? `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(',')}}` : JSON.stringify(v))
      const leaves: string[] = []
      const collect = (v: unknown): void => void (typeof v === 'string' ? leaves.push(v) : v !== null && typeof v === 'object' && 'big' in (v as object) ? leaves.push((v as { big: string }).big) : Array.isArray(v) ? v.forEach(collect) : v !== null && typeof v === 'object' ? Object.values(v).forEach(collect) : undefined)
      collect(secret)
      const extraText = JSON.stringify(extra)
      if (leaves.some((l) => extraText.includes(l) || key.includes(l) || l.includes(key)) || extraText.includes(key)) return true
      const payload = `{"secret":${toJson(secret)},"nested":[{"pin":${toJson(secret)}}],"extra":${extraText}}`
      const out = masker.mask('t', { value: Buffer.from(payload), errorMessage: `failed for ${payload} and key ${key}`, errorStack: `Error: ${leaves.join(' ')}`, headers: [], key: Buffer.from(key) })
      const stored = out.value!.toString()
      for (const l of leaves) {
        const escaped = JSON.stringify(l).slice(1, -1)
        if (stored.includes(escaped) || out.errorMessage.includes(l) || out.errorMessage.includes(escaped) || out.errorStack!.includes(l)) return false
      }
      if (out.key!.toString().includes(key) || out.errorMessage.includes(key)) return false
      // And the keyring's holder gets the exact value back.
      return JSON.stringify(JSON.parse(masker.unmaskValue(out.value, 't')!.toString()).secret) === JSON.stringify(JSON.parse(payload).secret) && masker.unmaskKey(out.key!, 't')!.toString() === key
    }),
    { numRuns: 300 },
  )
})

// ---- issue 13, finding 10: one key, one purpose ----

test('hash rules need a hash key of their own, never one of the encryption keys (finding 10)', () => {
  const k = randomBytes(32)
  const rules = [{ path: '$.a', action: 'hash' as const }]
  assert.throws(() => new Masker([{ topics: ['t'], rules }], { currentKeyId: 'k', keys: { k } }), { code: 'LL_OPTIONS_INVALID', message: /hashKey/ })
  assert.throws(() => new Masker([{ topics: ['t'], rules }], { currentKeyId: 'k', keys: { k }, hashKey: k.toString('hex') }), { code: 'LL_OPTIONS_INVALID', message: /differ from every encryption key/ })
  const masker = new Masker([{ topics: ['t'], rules }], { currentKeyId: 'k', keys: { k }, hashKey: randomBytes(32) })
  assert.match(JSON.parse(masker.mask('t', input({ a: 'x' })).value!.toString()).a, /^hash:v1:[0-9a-f]{64}$/)
})

test('one masking schema: the consumer and the indexer take a policy with key: encrypt and a keyring with acceptV1, and refuse unknown fields', () => {
  const masking = { policies: [{ topics: ['t'], rules: [{ path: '$.a', action: 'encrypt' as const }], key: 'encrypt' as const }], keyring: { ...keyring, acceptV1: false } }
  assert.equal(Value.Check(ConsumerOptionsSchema.properties.masking, masking), true)
  const db = { transaction: () => undefined } as unknown as SqlExecutor
  assert.doesNotThrow(() => createDlqIndexer({ brokers: ['127.0.0.1:1'], db, topics: ['t.dlq'], masking }))
  const bogus = { policies: [{ topics: ['t'], rules: [], keys: 'encrypt' }] }
  assert.equal(Value.Check(ConsumerOptionsSchema.properties.masking, bogus), false)
  assert.throws(() => createDlqIndexer({ brokers: ['127.0.0.1:1'], db, topics: ['t.dlq'], masking: bogus as never }), { code: 'LL_OPTIONS_INVALID' })
})
