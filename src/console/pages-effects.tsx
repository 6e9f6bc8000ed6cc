/**
 * The console's pages over the effects layer: compensation failures (settle them) and reconciliation runs
 * with their findings.
 *
 * @module
 */
import type { FailureRecord } from '../effects/compensation.js'
import type { ReconcileFinding, ReconcileRun } from '../effects/reconcile.js'
import { Csrf, Head, may, Notice, Page, when, type PageContext } from './layout.js'

const keyText = (key: Buffer | null) => (key === null ? '(null)' : key.toString('utf8'))

export function FailuresPage(props: { ctx: PageContext; failures: FailureRecord[]; status: string; consumer: string | undefined; notice?: { kind: 'ok' | 'error'; text: string } | undefined }) {
  const { ctx } = props
  return (
    <Page title="Compensation failures" ctx={ctx} active="/console/failures">
      {props.notice === undefined ? null : <Notice kind={props.notice.kind}>{props.notice.text}</Notice>}
      <p class="tabs">
        {['PENDING', 'RESOLVED', 'IGNORED'].map((s) => (
          <>
            <a href={`/console/failures?status=${s}`} aria-current={props.status === s ? 'page' : undefined}>
              {s}
            </a>{' '}
          </>
        ))}
      </p>
      <table>
        <caption>Events that failed for good and what their compensations did, newest first</caption>
        <Head cols={['Id', 'Consumer', 'Event', 'Key', 'Error', 'Compensations', 'Status', 'Settle']} />
        <tbody>
          {props.failures.map((f) => (
            <tr>
              <td>{f.id}</td>
              <td>{f.consumer}</td>
              <td>
                {f.topic} [{String(f.partition)}] @ {String(f.offset)}
                {f.eventId === null ? '' : ` (${f.eventId})`}
              </td>
              <td class="key">{keyText(f.key)}</td>
              <td class="msg">
                {f.errorCode}: {f.errorMessage}
              </td>
              <td>
                <ul>
                  {f.compensations.map((c) => (
                    <li>
                      {c.name}: {c.status} after {String(c.attempts.length)} attempt(s)
                      {c.attempts.length > 0 && c.attempts[c.attempts.length - 1]!.error !== undefined ? ` (${c.attempts[c.attempts.length - 1]!.error ?? ''})` : ''}
                    </li>
                  ))}
                </ul>
              </td>
              <td>
                {f.status}
                {f.reason === null ? '' : `: ${f.reason} (${f.resolvedBy ?? ''}, ${when(f.resolvedAt)})`}
              </td>
              <td>
                {f.status === 'PENDING' && may(ctx, 'failure.settle') ? (
                  <form method="post" action={`/console/failures/${f.id}/settle`} class="reason-form">
                    <Csrf ctx={ctx} />
                    <label for={`settle-${f.id}`}>Reason</label>
                    <input id={`settle-${f.id}`} name="reason" type="text" required maxlength={2000} />
                    <button type="submit" name="status" value="RESOLVED">
                      Resolve
                    </button>
                    <button type="submit" name="status" value="IGNORED">
                      Ignore
                    </button>
                  </form>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.failures.length === 0 ? <p>No {props.status.toLowerCase()} failure.</p> : null}
    </Page>
  )
}

export function RunsPage(props: { ctx: PageContext; runs: ReconcileRun[] }) {
  return (
    <Page title="Reconciliation" ctx={props.ctx} active="/console/reconcile">
      <table>
        <caption>Reconciliation runs, newest first</caption>
        <Head cols={['Run', 'Name', 'Status', 'Checked', 'Missing', 'Extra', 'Different', 'Repaired', 'Started', 'Finished']} />
        <tbody>
          {props.runs.map((r) => (
            <tr>
              <td>
                <a href={`/console/reconcile/${r.id}`}>run {r.id}</a>
              </td>
              <td>{r.name}</td>
              <td>
                {r.status}
                {r.error === null ? '' : ` (${r.errorCode ?? ''}: ${r.error})`}
              </td>
              <td>{String(r.checked)}</td>
              <td>{String(r.missing)}</td>
              <td>{String(r.extra)}</td>
              <td>{String(r.different)}</td>
              <td>
                {String(r.repaired)}
                {r.repairFailed > 0 ? ` (${r.repairFailed} failed)` : ''}
              </td>
              <td>{when(r.startedAt)}</td>
              <td>{when(r.finishedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.runs.length === 0 ? <p>No reconciliation has run.</p> : null}
    </Page>
  )
}

export function RunPage(props: { ctx: PageContext; run: ReconcileRun; findings: ReconcileFinding[] }) {
  const r = props.run
  return (
    <Page title={`Reconciliation run ${r.id}: ${r.name}`} ctx={props.ctx} active="/console/reconcile">
      <p>
        {r.status}, {r.repair ? 'repairing' : 'report only'}: {r.checked} checked, {r.missing} missing, {r.extra} extra, {r.different} different, {r.repaired} repaired. Started {when(r.startedAt)}
        {r.finishedAt === null ? '' : `, finished ${when(r.finishedAt)}`}.
      </p>
      <table>
        <caption>Findings (the first 200)</caption>
        <Head cols={['Kind', 'Key', 'Difference', 'Source', 'Target', 'Repaired']} />
        <tbody>
          {props.findings.map((f) => (
            <tr>
              <td>{f.kind}</td>
              <td class="key">{f.key}</td>
              <td class="msg">{typeof f.diff === 'string' ? f.diff : JSON.stringify(f.diff)}</td>
              <td class="msg">
                <code>{JSON.stringify(f.source)}</code>
              </td>
              <td class="msg">
                <code>{JSON.stringify(f.target)}</code>
              </td>
              <td>{f.repaired ? `yes (${when(f.repairedAt)})` : f.repairError === null ? 'no' : `failed: ${f.repairError}`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.findings.length === 0 ? <p>No finding.</p> : null}
    </Page>
  )
}
