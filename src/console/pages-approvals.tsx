/**
 * The console's four-eyes pages: the approvals inbox (approve, or reject with a reason; a payload is never
 * shown in the list) and the audit log that records every decision.
 *
 * @module
 */
import type { Child } from 'hono/jsx'
import { Csrf, Field, Head, may, NextPage, Notice, Page, ReasonForm, when, type PageContext, type Row } from './layout.js'

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
