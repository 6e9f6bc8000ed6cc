/**
 * The console's sessions: sign-in (a token checked by the API, a double-submit CSRF cookie before there is
 * a session), sign-out, and the gate every later route passes — a live session, its token still valid
 * (checked by the API on every request), and the session's CSRF token on every POST.
 *
 * Registered before the page routes: hono runs the gate for the routes registered after it.
 *
 * @module
 */
import type { Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { randomBytes } from 'node:crypto'
import type { Principal, Role } from '../dlq/auth.js'
import { callApi, isHttps, query, SESSION_COOKIE, SIGNIN_COOKIE } from './http.js'
import type { RouteKit } from './kit.js'
import { ErrorPage, SignInPage } from './pages-ops.js'
import { sameSecret, type SessionStore } from './sessions.js'

/** Where to go after signing in: a console path only (never another site). */
const safeNext = (next: string | undefined) => (next !== undefined && /^\/console(?:[/?#]|$)/.test(next) && !next.startsWith('//') ? next : '/console')
const cookieOptions = (c: Context) => ({ httpOnly: true, sameSite: 'Strict' as const, secure: isHttps(c), path: '/console' })

export function registerSessionRoutes(kit: RouteKit, sessions: SessionStore): void {
  const { app, api, render, message } = kit

  app.get('/sign-in', (c) => {
    let pre = getCookie(c, SIGNIN_COOKIE)
    if (pre === undefined || !/^[A-Za-z0-9_-]{43}$/.test(pre)) {
      pre = randomBytes(32).toString('base64url')
      setCookie(c, SIGNIN_COOKIE, pre, { ...cookieOptions(c), maxAge: 3600 })
    }
    const expired = c.req.query('expired') === '1' ? 'Your session has ended: sign in again.' : undefined
    return render(c, <SignInPage csrf={pre} next={safeNext(c.req.query('next'))} error={expired} />)
  })

  app.post('/sign-in', async (c) => {
    const form = (await c.req.parseBody()) as Record<string, string>
    const pre = getCookie(c, SIGNIN_COOKIE)
    if (pre === undefined || typeof form._csrf !== 'string' || !sameSecret(pre, form._csrf)) return render(c, <ErrorPage status={403} message="The sign-in form expired or did not come from this console: load it again." />, 403)
    const token = typeof form.token === 'string' ? form.token.trim() : ''
    // The API checks the token (and audits a refusal, sampled, as it does for any bad token).
    const who = await callApi(api, c, token, 'GET', '/v1/whoami')
    if (who.status !== 200) return render(c, <SignInPage csrf={pre} next={safeNext(form.next)} error={who.status === 401 ? message(who) : `The API answered ${who.status}: ${message(who)}`} />, 401)
    const session = sessions.open(token, String(who.body.name))
    setCookie(c, SESSION_COOKIE, session.id, { ...cookieOptions(c), maxAge: Math.floor(sessions.absoluteMs / 1000) })
    deleteCookie(c, SIGNIN_COOKIE, { path: '/console' })
    return c.redirect(safeNext(form.next), 303)
  })

  app.post('/sign-out', async (c) => {
    const id = getCookie(c, SESSION_COOKIE)
    const session = sessions.touch(id)
    const form = (await c.req.parseBody()) as Record<string, string>
    if (session !== undefined && typeof form._csrf === 'string' && sameSecret(session.csrf, form._csrf)) sessions.end(session.id)
    else if (session !== undefined) return render(c, <ErrorPage status={403} message="The form did not come from this console." />, 403)
    deleteCookie(c, SESSION_COOKIE, { path: '/console' })
    return c.redirect('/console/sign-in', 303)
  })

  // --- every other page: a live session, the token still valid, CSRF on every POST ---

  app.use('*', async (c, next) => {
    const session = sessions.touch(getCookie(c, SESSION_COOKIE))
    const toSignIn = (expired: boolean) => {
      deleteCookie(c, SESSION_COOKIE, { path: '/console' })
      return c.redirect(`/console/sign-in${query({ next: c.req.method === 'GET' ? c.req.path + new URL(c.req.url).search : undefined, expired: expired ? '1' : undefined })}`, 303)
    }
    if (session === undefined) return toSignIn(getCookie(c, SESSION_COOKIE) !== undefined)
    const who = await callApi(api, c, session.token, 'GET', '/v1/whoami')
    if (who.status === 401) {
      sessions.end(session.id)
      return toSignIn(true)
    }
    if (who.status !== 200) return render(c, <ErrorPage status={who.status} message={message(who)} />, who.status)
    const principal: Principal = { name: String(who.body.name), role: who.body.role as Role, owner: String(who.body.owner), tokenId: '' }
    c.set('session', session)
    c.set('ctx', { principal, csrf: session.csrf })
    if (c.req.method === 'POST') {
      const form = (await c.req.parseBody()) as Record<string, string>
      if (typeof form._csrf !== 'string' || !sameSecret(session.csrf, form._csrf)) return render(c, <ErrorPage ctx={c.get('ctx')} status={403} message="The form did not come from this console (missing or wrong CSRF token): load the page again." />, 403)
      c.set('form', form)
    }
    await next()
  })
}
