/**
 * The console's plumbing: its security headers, its cookies, and its one way to the API — an in-process
 * request to the API app with the session's token, so that every rule the API enforces (roles, four-eyes,
 * masking, audit) holds for the console unchanged.
 *
 * @module
 */
import type { Context } from 'hono'

/** `Content-Security-Policy` of every console response: nothing inline, nothing from elsewhere. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  'report-uri /console/csp-report',
].join('; ')

/** Headers every console response carries. */
export function securityHeaders(c: Context): void {
  c.header('content-security-policy', CONSOLE_CSP)
  c.header('x-content-type-options', 'nosniff')
  c.header('referrer-policy', 'no-referrer')
  c.header('x-frame-options', 'DENY')
  c.header('cache-control', 'no-store')
}

export const SESSION_COOKIE = 'll_console'
/** A sign-in form's double-submit token (before there is a session to hold one). */
export const SIGNIN_COOKIE = 'll_console_signin'

/** Whether the request came over https (directly, or as the URL says: the node server sets it from the socket). */
export const isHttps = (c: Context): boolean => new URL(c.req.url).protocol === 'https:'

export interface ApiAnswer {
  status: number
  body: Record<string, unknown> & { error?: { code: string; message: string } }
}

/** What the console calls the API with: its app's fetch. */
export type ApiFetch = (req: Request, env?: unknown) => Response | Promise<Response>

/** Calls the API in process as `token` (the request's env passed on: the API audits the peer's address). */
export async function callApi(api: ApiFetch, c: Context, token: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await api(new Request(`http://console.internal${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }), c.env)
  const text = await res.text()
  let parsed: ApiAnswer['body'] = {}
  if (text !== '') {
    try {
      parsed = JSON.parse(text) as ApiAnswer['body']
    } catch {
      parsed = { error: { code: 'LL_INTERNAL', message: `the API answered ${res.status} with something that is not JSON` } }
    }
  }
  return { status: res.status, body: parsed }
}

/** A query string of the set, non-empty values (a list repeats its name). */
export function query(params: Record<string, string | string[] | number | undefined | null>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue
    if (Array.isArray(v)) for (const x of v) q.append(k, x)
    else q.append(k, String(v))
  }
  const s = q.toString()
  return s === '' ? '' : `?${s}`
}
