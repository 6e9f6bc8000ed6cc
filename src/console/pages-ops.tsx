/**
 * The console's entry pages: sign-in, the error page every route falls back to, and the overview (dead
 * letters per hour, pending groups, parked keys, running jobs, pending approvals, the audit chain).
 *
 * The other operations pages: pages-jobs.tsx (bulk redrive, jobs), pages-approvals.tsx (approvals, audit),
 * pages-keys.tsx (parked keys).
 *
 * @module
 */
import type { AuditVerification } from '../dlq/audit.js'
import { HourlyChart, type HourCount } from './chart.js'
import { age, Head, Notice, Page, when, type PageContext, type Row } from './layout.js'

export function SignInPage(props: { csrf: string; next: string; error?: string | undefined }) {
  return (
    <Page title="Sign in">
      {props.error === undefined ? null : <Notice kind="error">{props.error}</Notice>}
      <form method="post" action="/console/sign-in" class="signin">
        <input type="hidden" name="_csrf" value={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        <div class="field">
          <label for="f-token">API token</label>
          <input id="f-token" name="token" type="password" autocomplete="off" required aria-describedby="token-hint" />
          <small id="token-hint" class="hint">
            A Lifeline token (llt_…) from <code>lifeline dlq token create</code>. It stays on the processor for the session.
          </small>
        </div>
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </Page>
  )
}

export function ErrorPage(props: { ctx?: PageContext | undefined; status: number; message: string }) {
  const title = props.status === 403 ? 'Not allowed' : props.status === 404 ? 'Not found' : props.status === 409 ? 'Conflict' : props.status < 500 ? 'Cannot do that' : 'Something went wrong'
  return (
    <Page title={title} {...(props.ctx === undefined ? {} : { ctx: props.ctx })}>
      <Notice kind="error">{props.message}</Notice>
      <p>
        <a href="/console">Back to the overview</a>
      </p>
    </Page>
  )
}

export interface Overview {
  hours: HourCount[]
  groups: Row[]
  parked: { count: number; oldest: Date | null }
  running: Row[]
  approvals: Row[]
  chain?: AuditVerification | undefined
}

export function OverviewPage(props: { ctx: PageContext; data: Overview; now: number }) {
  const d = props.data
  return (
    <Page title="Overview" ctx={props.ctx} active="/console">
      <section aria-labelledby="h-rate">
        <h2 id="h-rate">Dead letters</h2>
        <HourlyChart hours={d.hours} />
      </section>
      <div class="cards">
        <section aria-labelledby="h-parked" class="card">
          <h2 id="h-parked">Parked keys</h2>
          <p class="big">{d.parked.count}</p>
          <p>{d.parked.oldest === null ? 'none parked' : `oldest parked ${age(props.now - d.parked.oldest.getTime())} ago`}</p>
          <a href="/console/keys">See parked keys</a>
        </section>
        <section aria-labelledby="h-running" class="card">
          <h2 id="h-running">Running jobs</h2>
          <p class="big">{d.running.length}</p>
          <ul>
            {d.running.map((j) => (
              <li>
                <a href={`/console/jobs/${String(j.id)}`}>job {String(j.id)}</a>: {String(j.done)}/{String(j.total)}
              </li>
            ))}
          </ul>
        </section>
        <section aria-labelledby="h-waiting" class="card">
          <h2 id="h-waiting">Approvals waiting</h2>
          <p class="big">{d.approvals.length}</p>
          <a href="/console/approvals">Approvals inbox</a>
        </section>
        {d.chain === undefined ? null : (
          <section aria-labelledby="h-chain" class="card">
            <h2 id="h-chain">Audit chain</h2>
            <p class={`big ${d.chain.ok ? 'ok' : 'bad'}`}>{d.chain.ok ? 'intact' : 'BROKEN'}</p>
            <p>
              {d.chain.checked} rows checked{d.chain.broken === undefined ? '' : `; first broken row ${d.chain.broken.id}: ${d.chain.broken.reason}`}
            </p>
          </section>
        )}
      </div>
      <section aria-labelledby="h-pending">
        <h2 id="h-pending">Pending by error group</h2>
        <table>
          <Head cols={['Error', 'Pending', 'Sample message', 'Last seen']} />
          <tbody>
            {d.groups.map((g) => (
              <tr>
                <td>
                  <a href={`/console/records?status=pending&fingerprint=${encodeURIComponent(String(g.fingerprint))}`}>
                    {String(g.errorClass ?? '?')} {String(g.errorCode ?? '')}
                  </a>
                </td>
                <td>{String(g.pending)}</td>
                <td class="msg">{String(g.sampleMessage ?? '')}</td>
                <td>{when(g.lastSeen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {d.groups.length === 0 ? <p>Nothing pending.</p> : null}
      </section>
    </Page>
  )
}
