import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isLifelineError } from '../../src/errors.js'
import { sameSecret, SessionStore } from '../../src/console/sessions.js'

test('a session ends after its idle time without use, and its idle clock restarts on every use', () => {
  let now = 1_000_000
  const store = new SessionStore({ idleMs: 1000, absoluteMs: 10_000, now: () => now })
  const s = store.open('llt_token', 'olga')
  assert.match(s.id, /^[A-Za-z0-9_-]{43}$/)
  assert.notEqual(s.id, s.csrf)
  now += 900
  assert.equal(store.touch(s.id)?.id, s.id)
  now += 900
  assert.equal(store.touch(s.id)?.id, s.id, 'used 900 ms ago: still live')
  now += 1001
  assert.equal(store.touch(s.id), undefined, 'idle too long')
  assert.equal(store.touch(s.id), undefined, 'and it stays ended')
  assert.equal(store.size, 0)
})

test('a session ends at its absolute expiry however often it is used', () => {
  let now = 0
  const store = new SessionStore({ idleMs: 1000, absoluteMs: 3000, now: () => now })
  const s = store.open('llt_token', 'olga')
  for (let i = 0; i < 6; i++) {
    now += 500
    assert.ok(store.touch(s.id))
  }
  now += 1
  assert.equal(store.touch(s.id), undefined)
})

test('sign-out and the session cap end sessions; unknown ids are no session', () => {
  const store = new SessionStore({ maxSessions: 2 })
  const a = store.open('llt_a', 'a')
  const b = store.open('llt_b', 'b')
  store.touch(a.id) // a is now the most recently used
  const c = store.open('llt_a', 'a')
  assert.equal(store.touch(b.id), undefined, 'the least recently used session made room')
  assert.equal(store.touch(a.id)?.id, a.id)
  assert.equal(store.touch(c.id)?.id, c.id)
  assert.equal(store.size, 2)
  assert.equal(store.touch(undefined), undefined)
  assert.equal(store.touch('nope'), undefined)
  const d = store.open('llt_d', 'd')
  store.end(d.id)
  assert.equal(store.touch(d.id), undefined)
})

test('session options are validated, and secrets compare by content', () => {
  assert.throws(() => new SessionStore({ idleMs: 0 }), (err: unknown) => isLifelineError(err, 'LL_OPTIONS_INVALID') && /console\.sessions\.idleMs/.test(err.message))
  assert.throws(() => new SessionStore({ absoluteMs: 1.5 }), (err: unknown) => isLifelineError(err, 'LL_OPTIONS_INVALID'))
  assert.equal(sameSecret('abc', 'abc'), true)
  assert.equal(sameSecret('abc', 'abd'), false)
  assert.equal(sameSecret('abc', 'abcd'), false)
})
