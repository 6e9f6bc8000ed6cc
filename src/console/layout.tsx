/**
 * The console's page frame and small shared pieces (hono JSX: every value is escaped when rendered).
 *
 * @module
 */
import type { Child } from 'hono/jsx'
import { mayPerform, type Action, type Principal } from '../dlq/auth.js'

/** A row of the API's or a store's JSON, as the pages read it. */
export type Row = Record<string, unknown>

export interface PageContext {
  principal: Principal
  csrf: string
}

/** The sections of the console and what each needs (the navigation shows only those the role may open). */
const NAV: Array<{ href: string; label: string; action: Action }> = [
  { href: '/console', label: 'Overview', action: 'read' },
  { href: '/console/groups', label: 'Error groups', action: 'read' },
  { href: '/console/records', label: 'Records', action: 'read' },
  { href: '/console/redrive', label: 'Bulk redrive', action: 'redrive.create' },
  { href: '/console/jobs', label: 'Jobs', action: 'read' },
  { href: '/console/approvals', label: 'Approvals', action: 'read' },
  { href: '/console/keys', label: 'Parked keys', action: 'read' },
  { href: '/console/failures', label: 'Compensation failures', action: 'read' },
  { href: '/console/reconcile', label: 'Reconciliation', action: 'read' },
  { href: '/console/audit', label: 'Audit log', action: 'audit.read' },
]

export const may = (ctx: PageContext, action: Action): boolean => mayPerform(ctx.principal.role, action)

export function Page(props: { title: string; ctx?: PageContext; active?: string; children?: Child }) {
  const ctx = props.ctx
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${props.title} · Lifeline console`}</title>
        <link rel="stylesheet" href="/console/static/console.css" />
        <script src="/console/static/console.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <span class="brand">Lifeline console</span>
          {ctx === undefined ? null : (
            <>
              <nav aria-label="Sections">
                <ul>
                  {NAV.filter((n) => may(ctx, n.action)).map((n) => (
                    <li>
                      <a href={n.href} aria-current={props.active === n.href ? 'page' : undefined}>
                        {n.label}
                      </a>
                    </li>
                  ))}
                </ul>
              </nav>
              <form method="post" action="/console/sign-out" class="signout">
                <Csrf ctx={ctx} />
                <span class="who">
                  {ctx.principal.name} ({ctx.principal.role})
                </span>
                <button type="submit">Sign out</button>
              </form>
            </>
          )}
        </header>
        <main id="main">
          <h1>{props.title}</h1>
          {props.children}
        </main>
      </body>
    </html>
  )
}

export const Csrf = (props: { ctx: PageContext }) => <input type="hidden" name="_csrf" value={props.ctx.csrf} />

/** A message box: `error` for refusals and invalid input, `ok` for what was done. */
export const Notice = (props: { kind: 'error' | 'ok' | 'info'; children?: Child }) => (
  <p class={`notice ${props.kind}`} role={props.kind === 'error' ? 'alert' : 'status'}>
    {props.children}
  </p>
)

/** A time as ISO-8601 UTC to the second ('' for none). */
export function when(value: unknown): string {
  if (value === null || value === undefined || value === '') return ''
  const d = value instanceof Date ? value : new Date(value as string | number)
  return Number.isNaN(d.getTime()) ? String(value) : d.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** A duration in the largest sensible unit (s, min, h, d). */
export function age(ms: number): string {
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`
  return `${Math.round(ms / 86_400_000)} d`
}

/** One labelled field of a form. */
export function Field(props: { name: string; label: string; value?: string | undefined; type?: string; required?: boolean; hint?: string }) {
  const id = `f-${props.name}`
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input id={id} name={props.name} type={props.type ?? 'text'} value={props.value ?? ''} required={props.required} aria-describedby={props.hint === undefined ? undefined : `${id}-hint`} />
      {props.hint === undefined ? null : (
        <small id={`${id}-hint`} class="hint">
          {props.hint}
        </small>
      )}
    </div>
  )
}

/** A select of `options` (value, label). */
export function Select(props: { name: string; label: string; value?: string | undefined; options: Array<[string, string]> }) {
  const id = `f-${props.name}`
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <select id={id} name={props.name}>
        {props.options.map(([v, l]) => (
          <option value={v} selected={v === (props.value ?? '')}>
            {l}
          </option>
        ))}
      </select>
    </div>
  )
}

/** A form posting to `action` with a required reason and one button (discard, resolve, reject, release). */
export function ReasonForm(props: { ctx: PageContext; action: string; label: string; name: string; extra?: Child }) {
  const id = `reason-${props.name}`
  return (
    <form method="post" action={props.action} class="reason-form">
      <Csrf ctx={props.ctx} />
      {props.extra}
      <label for={id}>Reason ({props.label.toLowerCase()})</label>
      <input id={id} name="reason" type="text" required maxlength={2000} />
      <button type="submit" class={props.name === 'discard' || props.name === 'reject' ? 'danger' : undefined}>
        {props.label}
      </button>
    </form>
  )
}

/** A `next page` link for keyset pagination (afterId), keeping the other query parameters. */
export function NextPage(props: { base: string; params: Record<string, string | undefined>; nextAfterId: unknown }) {
  if (props.nextAfterId === null || props.nextAfterId === undefined) return null
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(props.params)) if (v !== undefined && v !== '' && k !== 'afterId') q.set(k, v)
  q.set('afterId', String(props.nextAfterId))
  return (
    <nav aria-label="Pages" class="pager">
      <a href={`${props.base}?${q.toString()}`} rel="next">
        Next page
      </a>
    </nav>
  )
}

/** A table's head row of column headers. */
export const Head = (props: { cols: string[] }) => (
  <thead>
    <tr>
      {props.cols.map((c) => (
        <th scope="col">{c}</th>
      ))}
    </tr>
  </thead>
)
