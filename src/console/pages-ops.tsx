/**
 * The console's operations pages: sign-in, overview, bulk redrive wizard, jobs, approvals, audit log and
 * parked keys.
 *
 * @module
 */
import type { Child } from 'hono/jsx'
import type { AuditVerification } from '../dlq/audit.js'
import { HourlyChart, type HourCount } from './chart.js'
import { age, Csrf, Field, Head, may, NextPage, Notice, Page, ReasonForm, when, type PageContext } from './layout.js'
import { FilterForm, type FilterParams } from './pages-records.js'

type Row = Record<string, unknown>

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

const filterHidden = (filter: FilterParams) => Object.entries(filter).map(([k, v]) => (v === undefined || v === '' ? null : <input type="hidden" name={k} value={v} />))

export function RedrivePage(props: { ctx: PageContext; filter: FilterParams; preview?: Row | undefined; error?: string | undefined; form?: Record<string, string> }) {
  const { ctx, preview } = props
  const form = props.form ?? {}
  return (
    <Page title="Bulk redrive" ctx={ctx} active="/console/redrive">
      {props.error === undefined ? null : <Notice kind="error">{props.error}</Notice>}
      <h2>1. Which records</h2>
      <FilterForm action="/console/redrive" filter={props.filter} submit="Count (dry run)" ctx={ctx} hidden={<input type="hidden" name="step" value="count" />} />
      {preview === undefined ? null : (
        <>
          <h2>2. Dry run</h2>
          <p id="dry-run-count" class="big">
            {String(preview.replayable)} record(s) would be redriven
          </p>
          <p>
            {String(preview.count ?? preview.total ?? '')} match; {String(preview.keys ?? '?')} distinct key(s).
            {preview.needsApproval === true ? ` Over the approval threshold (${String(preview.bulkThreshold ?? '?')} per hour, ${String(preview.windowCount)} already this window): it will wait for an approver.` : ''}
          </p>
          <h2>3. Target, rate and canary</h2>
          <form method="post" action="/console/redrive" class="wizard">
            <Csrf ctx={ctx} />
            <input type="hidden" name="step" value="create" />
            {filterHidden(props.filter)}
            <Field name="targetTopic" label="Target topic (empty: each record's origin)" value={form.targetTopic} />
            <Field name="ratePerSec" label="Rate (records per second)" type="number" value={form.ratePerSec} />
            <Field name="canary" label="Canary (records first, then a check)" type="number" value={form.canary} />
            <button type="submit" class="primary">
              {preview.needsApproval === true ? 'Request approval' : 'Start the redrive'}
            </button>
          </form>
        </>
      )}
    </Page>
  )
}

const FINAL_JOB = new Set(['completed', 'cancelled', 'failed'])

export function JobsPage(props: { ctx: PageContext; jobs: Row[] }) {
  return (
    <Page title="Redrive jobs" ctx={props.ctx} active="/console/jobs">
      <table>
        <Head cols={['Job', 'Status', 'Progress', 'Requested by', 'Approved by', 'Created']} />
        <tbody>
          {props.jobs.map((j) => (
            <tr>
              <td>
                <a href={`/console/jobs/${String(j.id)}`}>job {String(j.id)}</a>
              </td>
              <td>{String(j.status)}</td>
              <td>
                {String(j.done)}/{String(j.total)}
              </td>
              <td>{String(j.requestedBy)}</td>
              <td>{String(j.approvedBy ?? '')}</td>
              <td>{when(j.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.jobs.length === 0 ? <p>No job yet.</p> : null}
    </Page>
  )
}

export function JobPage(props: { ctx: PageContext; job: Row; notice?: string | undefined }) {
  const { ctx, job } = props
  const id = String(job.id)
  const status = String(job.status)
  const button = (verb: 'pause' | 'resume' | 'cancel', label: string) =>
    may(ctx, `job.${verb}`) ? (
      <form method="post" action={`/console/jobs/${id}/${verb}`}>
        <Csrf ctx={ctx} />
        <button type="submit" class={verb === 'cancel' ? 'danger' : undefined}>
          {label}
        </button>
      </form>
    ) : null
  return (
    <Page title={`Redrive job ${id}`} ctx={ctx} active="/console/jobs">
      {props.notice === undefined ? null : <Notice kind="info">{props.notice}</Notice>}
      <div class="job" data-job-events={FINAL_JOB.has(status) ? undefined : `/console/jobs/${id}/events`} data-ended={FINAL_JOB.has(status) ? 'true' : undefined}>
        <p>
          Status: <strong data-job-field="status">{status}</strong>
          {job.statusReason === null || job.statusReason === undefined ? '' : ` (${String(job.statusReason)})`}
        </p>
        <label for="job-progress">Progress</label>
        <progress id="job-progress" max={Math.max(1, Number(job.total))} value={Number(job.done)}></progress>
        <p aria-live="polite" data-job-field="summary">
          {String(job.done)} of {String(job.total)} done: {String(job.succeeded)} sent, {String(job.failed)} failed, {String(job.skipped)} skipped
        </p>
      </div>
      <dl class="facts">
        <dt>Target</dt>
        <dd>{JSON.stringify(job.target)}</dd>
        <dt>Rate</dt>
        <dd>{String(job.ratePerSec ?? '')} per second</dd>
        <dt>Canary</dt>
        <dd>{String(job.canary ?? 'none')}</dd>
        <dt>Requested by</dt>
        <dd>{String(job.requestedBy)}</dd>
        <dt>Approved by</dt>
        <dd>{String(job.approvedBy ?? '')}</dd>
        <dt>Filter</dt>
        <dd>
          <code>{JSON.stringify(job.filter)}</code>
        </dd>
      </dl>
      <div class="actions">
        {status === 'running' || status === 'ready' ? button('pause', 'Pause') : null}
        {status === 'paused' ? button('resume', 'Resume') : null}
        {FINAL_JOB.has(status) ? null : button('cancel', 'Cancel')}
      </div>
    </Page>
  )
}

export function ApprovalsPage(props: { ctx: PageContext; approvals: Row[]; status: string; notice?: { kind: 'ok' | 'error'; text: string } | undefined }) {
  const { ctx } = props
  const decide = may(ctx, 'approval.decide')
  return (
    <Page title="Approvals" ctx={ctx} active="/console/approvals">
      {props.notice === undefined ? null : <Notice kind={props.notice.kind}>{props.notice.text}</Notice>}
      <p class="tabs">
        {['pending', 'executed', 'rejected', 'expired', 'void'].map((s) => (
          <>
            <a href={`/console/approvals?status=${s}`} aria-current={props.status === s ? 'page' : undefined}>
              {s}
            </a>{' '}
          </>
        ))}
      </p>
      {props.approvals.length === 0 ? <p>No {props.status} approval.</p> : null}
      {props.approvals.map((a) => {
        const mine = a.owner === ctx.principal.owner
        return (
          <article class="approval" aria-labelledby={`ap-${String(a.id)}`}>
            <h2 id={`ap-${String(a.id)}`}>
              Approval {String(a.id)}: {String(a.action)}
            </h2>
            <dl class="facts">
              <dt>Requested by</dt>
              <dd>
                {String(a.requestedBy)} (owner {String(a.owner)})
              </dd>
              <dt>Asked at</dt>
              <dd>{when(a.createdAt)}</dd>
              <dt>Expires</dt>
              <dd>{when(a.expiresAt)}</dd>
              <dt>What</dt>
              <dd>
                <Summary summary={a.summary as Row} />
              </dd>
              {a.decidedBy === null ? null : (
                <>
                  <dt>Decided by</dt>
                  <dd>
                    {String(a.decidedBy)}
                    {a.reason === null ? '' : `: ${String(a.reason)}`}
                  </dd>
                </>
              )}
            </dl>
            {decide && a.status === 'pending' ? (
              mine ? (
                <p>Your own request: another person decides it.</p>
              ) : (
                <div class="actions">
                  <form method="post" action={`/console/approvals/${String(a.id)}/approve`}>
                    <Csrf ctx={ctx} />
                    <button type="submit" class="primary">
                      Approve
                    </button>
                  </form>
                  <ReasonForm ctx={ctx} action={`/console/approvals/${String(a.id)}/reject`} label="Reject" name={`reject-${String(a.id)}`} />
                </div>
              )
            ) : null}
          </article>
        )
      })}
    </Page>
  )
}

function Summary(props: { summary: Row }) {
  const s = props.summary
  const items: Child[] = []
  if (s.jobId !== undefined) items.push(<a href={`/console/jobs/${String(s.jobId)}`}>job {String(s.jobId)}</a>, ` of ${String(s.count)} record(s)`)
  if (s.record !== undefined) items.push(<a href={`/console/records/${String(s.record)}`}>record {String(s.record)}</a>)
  if (s.target !== undefined) items.push(`, target ${JSON.stringify(s.target)}`)
  if (Array.isArray(s.reasons)) items.push(`; needs approval for: ${(s.reasons as string[]).join(', ')}`)
  return <>{items}</>
}

export function AuditPage(props: { ctx: PageContext; entries: Row[]; filter: Record<string, string | undefined>; nextAfterId: unknown; error?: string | undefined }) {
  const f = props.filter
  return (
    <Page title="Audit log" ctx={props.ctx} active="/console/audit">
      {props.error === undefined ? null : <Notice kind="error">{props.error}</Notice>}
      <form method="get" action="/console/audit" class="filters" aria-label="Filter">
        <Field name="actor" label="Actor" value={f.actor} />
        <Field name="action" label="Action" value={f.action} />
        <Field name="target" label="Target" value={f.target} hint="exact, e.g. record:42" />
        <Field name="from" label="From" value={f.from} />
        <Field name="to" label="Before" value={f.to} />
        <button type="submit">Filter</button>
      </form>
      <table>
        <Head cols={['Id', 'At', 'Actor', 'Action', 'Target', 'Detail']} />
        <tbody>
          {props.entries.map((e) => (
            <tr>
              <td>{String(e.id)}</td>
              <td>{when(e.at)}</td>
              <td>
                {String(e.actor)}
                {e.role === null ? '' : ` (${String(e.role)})`}
              </td>
              <td>{String(e.action)}</td>
              <td>{String(e.target ?? '')}</td>
              <td class="msg">
                <code>{JSON.stringify(e.detail)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <NextPage base="/console/audit" params={{ ...f, order: 'desc' }} nextAfterId={props.nextAfterId} />
    </Page>
  )
}

export function KeysPage(props: { ctx: PageContext; keys: Row[]; group: string | undefined; shown?: { key: Row; records: Row[] } | undefined; notice?: { kind: 'ok' | 'error'; text: string } | undefined }) {
  const { ctx } = props
  const keyRef = (k: Row) => `group=${encodeURIComponent(String(k.group))}&topic=${encodeURIComponent(String(k.topic))}&key=${encodeURIComponent(Buffer.from(k.key as Buffer).toString('base64url'))}`
  return (
    <Page title="Parked keys" ctx={ctx} active="/console/keys">
      {props.notice === undefined ? null : <Notice kind={props.notice.kind}>{props.notice.text}</Notice>}
      <form method="get" action="/console/keys" class="filters" aria-label="Filter">
        <Field name="group" label="Consumer group" value={props.group} />
        <button type="submit">Show</button>
      </form>
      <table>
        <Head cols={['Group', 'Topic', 'Key', 'Head', 'Waiting', 'Parked at']} />
        <tbody>
          {props.keys.map((k) => (
            <tr>
              <td>{String(k.group)}</td>
              <td>
                {String(k.topic)} [{String(k.partition)}]
              </td>
              <td class="key">
                <a href={`/console/keys?${keyRef(k)}`}>{k.keyText === null ? `(binary ${Buffer.from(k.key as Buffer).toString('hex')})` : String(k.keyText)}</a>
              </td>
              <td>
                offset {String(k.headOffset)} in {String(k.headLocation)} {String(k.headErrorCode ?? '')}
              </td>
              <td>{String(k.parkedRecords)}</td>
              <td>{when(k.parkedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.keys.length === 0 ? <p>No parked key.</p> : null}
      {props.shown === undefined ? null : (
        <section aria-labelledby="h-key">
          <h2 id="h-key">Key {props.shown.key.keyText === null ? '(binary)' : String(props.shown.key.keyText)}</h2>
          <p>
            Parked behind offset {String(props.shown.key.headOffset)} ({String(props.shown.key.headErrorMessage ?? '')}); {props.shown.records.length} record(s) waiting:
          </p>
          <ol>
            {props.shown.records.map((r) => (
              <li>offset {String(r.offset)}</li>
            ))}
          </ol>
          {may(ctx, 'key.release') ? (
            <ReasonForm
              ctx={ctx}
              action="/console/keys/release"
              label="Release"
              name="release"
              extra={
                <>
                  <input type="hidden" name="group" value={String(props.shown.key.group)} />
                  <input type="hidden" name="topic" value={String(props.shown.key.topic)} />
                  <input type="hidden" name="key" value={Buffer.from(props.shown.key.key as Buffer).toString('base64url')} />
                </>
              }
            />
          ) : null}
        </section>
      )}
    </Page>
  )
}
