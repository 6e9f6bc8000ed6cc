/**
 * The console's HTTP behaviour in process (`app.request()`, the real API and database, no browser): cookie
 * attributes over http and https, headers on every response, the sign-in's redirect target.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { createConsole } from '../../src/console/app.js'
import { createDlqApi } from '../../src/dlq/api.js'
import { createToken, revokeToken } from '../../src/dlq/auth.js'
import { createProducer } from '../../src/kafka/index.js'
import { createParkedKeys } from '../../src/ordering/state-store.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { freshDatabase } from '../helpers/db.js'
import { brokers } from '../helpers/kafka.js'

async function consoleApp(t: TestContext) {
  const db = await freshDatabase(t, 'pglite')
  await migrateLifeline(db)
  const deps = { db, producer: createProducer({ brokers: brokers() }), kafka: { brokers: brokers() } }
  const api = createDlqApi({ db, deps })
  const ui = createConsole({ db, api: api.fetch, deps, parkedKeys: createParkedKeys(db) })
  const { token } = await createToken(db, { name: 'olga-op', role: 'operator', owner: 'olga' })
  return { ui, token, db }
}

/** Signs in at `origin` with `next`; returns the sign-in form's and the answer's Set-Cookie and the redirect. */
async function signIn(ui: Awaited<ReturnType<typeof consoleApp>>['ui'], origin: string, token: string, next: string) {
  const form = await ui.request(`${origin}/console/sign-in`)
  const formCookie = form.headers.get('set-cookie') ?? ''
  const pre = /ll_console_signin=([^;]+)/.exec(formCookie)![1]!
  const res = await ui.request(`${origin}/console/sign-in`, {
    method: 'POST',
    headers: { cookie: `ll_console_signin=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _csrf: pre, token, next }).toString(),
  })
  return { formCookie, res, cookies: res.headers.getSetCookie() }
}

test('session cookies: HttpOnly, SameSite=Strict, Path=/console; Secure over https only', async (t) => {
  const { ui, token } = await consoleApp(t)
  const https = await signIn(ui, 'https://console.example', token, '/console')
  assert.equal(https.res.status, 303)
  const session = https.cookies.find((c) => c.startsWith('ll_console='))!
  for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/console', 'Secure']) assert.ok(session.includes(attr), `${attr} in ${session}`)
  assert.match(https.formCookie, /Secure/)
  const http = await signIn(ui, 'http://127.0.0.1', token, '/console')
  const plain = http.cookies.find((c) => c.startsWith('ll_console='))!
  assert.ok(plain.includes('HttpOnly') && plain.includes('SameSite=Strict'))
  assert.ok(!plain.includes('Secure'), plain)
})

test('sign-in sends back only to a console page: never to another site', async (t) => {
  const { ui, token } = await consoleApp(t)
  for (const [next, to] of [
    ['/console/records?key=k1', '/console/records?key=k1'],
    ['//evil.example/console', '/console'],
    ['https://evil.example/console', '/console'],
    ['/consolex', '/console'],
    ['/v1/records', '/console'],
  ] as const) {
    const { res } = await signIn(ui, 'http://127.0.0.1', token, next)
    assert.equal(res.headers.get('location'), to, next)
  }
  const bad = await signIn(ui, 'http://127.0.0.1', 'llt_not-a-token', '/console')
  assert.equal(bad.res.status, 401)
  assert.equal(bad.cookies.some((c) => c.startsWith('ll_console=')), false, 'no session for a bad token')
})

test('every console response carries the CSP and the other security headers; pages need a session', async (t) => {
  const { ui } = await consoleApp(t)
  for (const [path, status] of [['/console/sign-in', 200], ['/console/static/console.js', 200], ['/console/static/nope.js', 404], ['/console/records', 303], ['/console/nope', 303]] as const) {
    const res = await ui.request(`http://127.0.0.1${path}`)
    assert.equal(res.status, status, path)
    assert.match(res.headers.get('content-security-policy') ?? '', /^default-src 'self'; script-src 'self'; style-src 'self';/, path)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
    assert.equal(res.headers.get('x-frame-options'), 'DENY', path)
    if (status === 303) assert.match(res.headers.get('location') ?? '', /^\/console\/sign-in\?next=/, path)
  }
  const forged = await ui.request('http://127.0.0.1/console/records/1/discard', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'reason=x' })
  assert.equal(forged.status, 303, 'no session: to sign-in, nothing done')
})

test('a session whose token is revoked ends at its next request: sent to sign-in', async (t) => {
  const { ui, token, db } = await consoleApp(t)
  const { cookies } = await signIn(ui, 'http://127.0.0.1', token, '/console')
  const session = cookies.find((c) => c.startsWith('ll_console='))!.split(';')[0]!
  assert.equal((await ui.request('http://127.0.0.1/console/jobs', { headers: { cookie: session } })).status, 200)
  await revokeToken(db, 'olga-op')
  const after = await ui.request('http://127.0.0.1/console/jobs', { headers: { cookie: session } })
  assert.equal(after.status, 303)
  assert.equal(after.headers.get('location'), '/console/sign-in?next=%2Fconsole%2Fjobs&expired=1')
  assert.equal((await ui.request('http://127.0.0.1/console/jobs', { headers: { cookie: session } })).headers.get('location'), '/console/sign-in?next=%2Fconsole%2Fjobs&expired=1', 'the session is gone')
})
