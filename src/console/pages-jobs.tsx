/**
 * The console's bulk redrive pages: the wizard (filter, dry-run count, target, rate, canary) and the jobs,
 * each job with its live progress (console.js follows the page's event stream).
 *
 * @module
 */
import { FilterForm, type FilterParams } from './pages-records.js'
import { Csrf, Field, Head, may, Notice, Page, when, type PageContext, type Row } from './layout.js'

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
